import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { Pool } from '../src/balancer/pool.js';
import { loadConfigText } from '../src/config/load.js';
import { type ConnectError, connect, connectWithRetry } from '../src/upstream/connector.js';

async function deadPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  s.close();
  await once(s, 'close');
  return port;
}

function pool(servers: string[], extra = ''): Pool {
  const text = `listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes: [{ match: { protocol: tcp }, pool: p }]
pools:
  p:
    protocol: tcp
    balance: first
    health: { type: none }${extra}
    servers:
${servers.map((a, i) => `      - { name: s${i + 1}, address: "${a}" }`).join('\n')}
`;
  const r = loadConfigText(text, '/tmp/connector-test.yaml');
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return new Pool(r.config.pools.get('p')!);
}

test('connect: resolves a connected socket with no listeners of ours left', async (t) => {
  const server = net.createServer((s) => s.end('hi'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const s = await connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }, 1000);
  t.after(() => s.destroy());
  assert.equal(s.listenerCount('error'), 0);
  assert.equal(s.listenerCount('connect'), 0);
  s.on('error', () => {});
  const [data] = await once(s, 'data');
  assert.equal(String(data), 'hi');
});

test('connect: a refused connect rejects with ECONNREFUSED', async () => {
  const port = await deadPort();
  await assert.rejects(
    connect({ host: '127.0.0.1', port }, 1000),
    (e: ConnectError) => e.code === 'ECONNREFUSED',
  );
});

test('connect: a connect that hangs rejects with ETIMEDOUT at the deadline', async (t) => {
  // A listener whose process is stopped with a full accept queue: the kernel drops further
  // SYNs, so a connect neither succeeds nor fails until our deadline.
  const child = spawn(
    process.execPath,
    [
      '-e',
      "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>console.log(s.address().port))",
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  t.after(() => child.kill('SIGKILL'));
  const [line] = await once(child.stdout!, 'data');
  const port = Number(String(line).trim());
  child.kill('SIGSTOP');
  const fillers: net.Socket[] = [];
  t.after(() => {
    for (const f of fillers) f.destroy();
  });
  for (let i = 0; i < 4; i++) {
    const f = net.connect(port, '127.0.0.1');
    f.on('error', () => {});
    fillers.push(f);
  }
  await new Promise((r) => setTimeout(r, 100));
  const started = Date.now();
  await assert.rejects(
    connect({ host: '127.0.0.1', port }, 200),
    (e: ConnectError) => e.code === 'ETIMEDOUT',
  );
  assert.ok(Date.now() - started < 2000);
});

test('connectWithRetry: refused servers are released as connect failures and avoided', async (t) => {
  const server = net.createServer((s) => s.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const live = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const p = pool([`127.0.0.1:${await deadPort()}`, `127.0.0.1:${await deadPort()}`, live]);
  const r = await connectWithRetry(p, {}, 2, 1000);
  assert.equal(r.ok, true);
  if (!r.ok) return;
  t.after(() => r.socket.destroy());
  assert.equal(r.tried, 3);
  assert.equal(r.pick.member.name, 's3');
  const [s1, s2, s3] = p.members;
  assert.deepEqual([s1.errors, s1.active, s2.errors, s2.active, s3.active], [1, 0, 1, 0, 1]);
  r.pick.release({ ok: true });
  assert.equal(s3.active, 0);
});

test('connectWithRetry: attempts bound the retries; then connect_failure', async () => {
  const p = pool([
    `127.0.0.1:${await deadPort()}`,
    `127.0.0.1:${await deadPort()}`,
    `127.0.0.1:${await deadPort()}`,
  ]);
  const r = await connectWithRetry(p, {}, 1, 1000);
  assert.deepEqual(
    { ok: r.ok, tried: r.tried, reason: r.ok ? '' : r.reason },
    {
      ok: false,
      tried: 2,
      reason: 'connect_failure',
    },
  );
  assert.equal(p.members[2].errors, 0, 'the third server was never tried');
});

test('connectWithRetry: nothing usable is no_server; after a failure it is connect_failure', async () => {
  const p = pool([`127.0.0.1:${await deadPort()}`]);
  p.setAdmin('s1', 'maint');
  const none = await connectWithRetry(p, {}, 2, 1000);
  assert.deepEqual(none, { ok: false, reason: 'no_server', tried: 0 });
  p.setAdmin('s1', 'ready');
  const failed = await connectWithRetry(p, {}, 2, 1000);
  assert.equal(failed.ok, false);
  if (failed.ok) return;
  assert.equal(failed.reason, 'connect_failure');
  assert.equal(failed.tried, 1, 'the only server is avoided, so there is nothing to retry on');
  assert.match(String(failed.error), /s1: ECONNREFUSED/);
});

test('connectWithRetry: a pool at maxconn is full', async (t) => {
  const server = net.createServer((s) => s.on('error', () => {}));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const text = `listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes: [{ match: { protocol: tcp }, pool: p }]
pools:
  p:
    protocol: tcp
    health: { type: none }
    servers: [{ name: s1, address: "127.0.0.1:${port}", maxconn: 1 }]
`;
  const cfg = loadConfigText(text, '/tmp/connector-test.yaml');
  assert.ok(cfg.ok);
  const p = new Pool(cfg.config.pools.get('p')!);
  const first = await connectWithRetry(p, {}, 0, 1000);
  assert.equal(first.ok, true);
  if (!first.ok) return;
  t.after(() => first.socket.destroy());
  const second = await connectWithRetry(p, {}, 0, 1000);
  assert.deepEqual(second, { ok: false, reason: 'full', tried: 0 });
  first.pick.release({ ok: true });
});
