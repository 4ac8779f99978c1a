import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigText } from '../src/config/load.js';

const FILE = '/tmp/switchyard-test.yaml';

function errorsOf(text: string): string[] {
  const r = loadConfigText(text, FILE);
  assert.equal(r.ok, false, 'expected the config to be rejected');
  return r.ok ? [] : r.errors;
}

const VALID = `
global:
  grace: 2s
  timeouts: { sniff: 250ms, connect: 1500 }
listeners:
  - name: edge
    bind: [":8080", "[::1]:8081"]
    routes:
      - match: { protocol: grpc, service: helloworld.Greeter }
        pool: greeters
      - match: { protocol: tcp, source: ["127.0.0.0/8"] }
        pool: echo
pools:
  greeters:
    protocol: h2
    balance: hash
    hash: { on: "header:X-User-Id" }
    health: { type: grpc, interval: 2s, rise: 1 }
    servers:
      - { name: g1, address: 127.0.0.1:50051, weight: 100 }
      - { address: 127.0.0.1:50052, backup: true }
  echo:
    protocol: tcp
    servers: [{ address: 127.0.0.1:7001 }]
`;

test('a valid config is normalised with defaults filled in one place', () => {
  const r = loadConfigText(VALID, FILE);
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  const c = r.config;
  assert.equal(c.global.grace, 2000);
  assert.equal(c.global.timeouts.sniff, 250);
  assert.equal(c.global.timeouts.connect, 1500);
  assert.equal(c.global.timeouts.tunnel, 3_600_000);
  const l = c.listeners[0];
  assert.deepEqual(l.binds, [
    { host: '', port: 8080 },
    { host: '::1', port: 8081 },
  ]);
  assert.equal(l.timeouts.sniff, 250, 'listener timeouts inherit global ones');
  assert.deepEqual(l.protocols, ['http1', 'h2', 'thrift', 'tls', 'tcp']);
  assert.equal(l.routes[0].name, 'edge/routes[0]');
  const g = c.pools.get('greeters')!;
  assert.deepEqual(g.hash, { kind: 'header', name: 'x-user-id' });
  assert.equal(g.health.interval, 2000);
  assert.equal(g.health.rise, 1);
  assert.equal(g.health.fall, 3, 'unset health keys take defaults');
  assert.equal(g.servers[1].name, '127.0.0.1:50052', 'server name defaults to its address');
  assert.equal(g.servers[1].weight, 1);
  assert.equal(g.servers[1].backup, true);
  const e = c.pools.get('echo')!;
  assert.equal(e.balance, 'roundrobin');
  assert.deepEqual(
    {
      type: e.health.type,
      interval: e.health.interval,
      timeout: e.health.timeout,
      rise: e.health.rise,
      fall: e.health.fall,
    },
    { type: 'tcp', interval: 2000, timeout: 1000, rise: 2, fall: 3 },
  );
});

test('every error is reported with FILE:LINE:COL', () => {
  const errors = errorsOf(`global:
  grase: 1s
  timeouts: { sniff: 2x }
listeners:
  - name: edge
    bind: [":8080"]
    routes:
      - match: { protocol: tcp, source: ["10.0.0.0/33"] }
        pool: nope
pools:
  echo:
    protocol: tcp
    balance: fastest
    servers:
      - { address: "127.0.0.1", weight: 300 }
`);
  const has = (re: RegExp) =>
    assert.ok(
      errors.some((e) => re.test(e)),
      `no error matching ${re} in:\n${errors.join('\n')}`,
    );
  has(/^\/tmp\/switchyard-test\.yaml:2:3: unknown key "grase"$/);
  has(/:3:22: .*invalid duration/);
  has(/:8:42: .*invalid CIDR/);
  has(/:9:15: unknown pool "nope"/);
  has(/:13:14: .*balance/);
  has(/:15:20: .*invalid address "127.0.0.1"/);
  has(/:15:41: .*256/);
  for (const e of errors) assert.match(e, /^\/tmp\/switchyard-test\.yaml:\d+:\d+: /);
});

test('duplicate names and conflicting binds are errors', () => {
  const errors = errorsOf(`listeners:
  - name: a
    bind: ":9000"
    routes: [{ pool: p }]
  - name: a
    bind: "127.0.0.1:9000"
    routes: [{ pool: p }]
pools:
  p:
    protocol: tcp
    servers: [{ name: s, address: "127.0.0.1:1" }, { name: s, address: "127.0.0.1:2" }]
`);
  assert.ok(
    errors.some((e) => /:5:11: duplicate listener name "a"/.test(e)),
    errors.join('\n'),
  );
  assert.ok(
    errors.some((e) => /:6:11: bind "127.0.0.1:9000" conflicts/.test(e)),
    errors.join('\n'),
  );
  assert.ok(
    errors.some((e) => /duplicate server name "s"/.test(e)),
    errors.join('\n'),
  );
});

test('YAML syntax errors carry a position', () => {
  const errors = errorsOf('listeners: [\n  { name: a\n');
  assert.match(errors[0], /^\/tmp\/switchyard-test\.yaml:\d+:\d+: /);
});

test('routes need a pool or deny, health must fit the pool protocol, admin off loopback needs auth', () => {
  const errors = errorsOf(`admin: { bind: "0.0.0.0:9901" }
listeners:
  - name: a
    bind: ":9000"
    routes: [{ match: { protocol: tcp } }]
pools:
  p:
    protocol: tcp
    health: { type: grpc }
    servers: [{ address: "127.0.0.1:1" }]
`);
  assert.ok(
    errors.some((e) => /needs "pool" or "deny: true"/.test(e)),
    errors.join('\n'),
  );
  assert.ok(
    errors.some((e) => /health type "grpc" does not fit protocol "tcp"/.test(e)),
    errors.join('\n'),
  );
  assert.ok(
    errors.some((e) => /:1:16: an admin bind that is not loopback needs admin.auth/.test(e)),
    errors.join('\n'),
  );
});

test('gRPC and Thrift routes need a pool speaking their protocol', () => {
  const errors = errorsOf(`listeners:
  - name: a
    bind: ":9000"
    routes:
      - { match: { protocol: grpc }, pool: web }
      - { match: { protocol: thrift }, pool: g }
      - { match: { protocol: http }, pool: web }
pools:
  web: { protocol: h1, servers: [{ address: "127.0.0.1:1" }] }
  g: { protocol: h2, servers: [{ address: "127.0.0.1:2" }] }
`);
  assert.ok(
    errors.some((e) => /:5:44: grpc calls need a "h2" pool; "web" is h1/.test(e)),
    errors.join('\n'),
  );
  assert.ok(
    errors.some((e) => /:6:46: thrift calls need a "thrift" pool; "g" is h2/.test(e)),
    errors.join('\n'),
  );
  assert.equal(errors.length, 2, errors.join('\n'));
});
