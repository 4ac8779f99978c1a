// End-to-end: real Apache Thrift (npm) clients and servers through the gateway.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import thrift from 'thrift';
import { startThriftGateway, type ThriftGateway } from './fixtures/thrift/gateway.js';
import {
  type CalcServer,
  call,
  connectClient,
  decodeReply,
  encodeMessage,
  i32Fields,
  type Protocol,
  RawClient,
  startCalcServer,
  stringField,
  type Transport,
  types,
} from './fixtures/thrift/helpers.js';

const serverLines = (list: CalcServer[]): string =>
  list.map((s) => `      - { name: ${s.name}, address: "127.0.0.1:${s.port}" }`).join('\n');

async function servers(
  t: { after(fn: () => unknown): void },
  prefix: string,
  n: number,
  transport: Transport,
  protocol: Protocol,
  multiplex = false,
): Promise<CalcServer[]> {
  const list = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      startCalcServer({ name: `${prefix}${i + 1}`, transport, protocol, multiplex }),
    ),
  );
  t.after(() => Promise.all(list.map((s) => s.close())));
  return list;
}

async function gateway(t: { after(fn: () => unknown): void }, yaml: string): Promise<ThriftGateway> {
  const gw = await startThriftGateway(yaml);
  t.after(() => gw.stop());
  return gw;
}

const LISTENER = `
global: { grace: 2s }
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
`;

test('framed/unframed x binary/compact clients through one port reach one binary framed pool', async (t) => {
  const calc = await servers(t, 'c', 2, 'framed', 'binary');
  const gw = await gateway(
    t,
    `${LISTENER}    routes:
      - match: { protocol: thrift }
        pool: calc
pools:
  calc:
    protocol: thrift
    thrift: { transport: framed, protocol: binary }
    health: { type: none }
    servers:
${serverLines(calc)}
`,
  );
  const kinds: [Transport, Protocol][] = [
    ['framed', 'binary'],
    ['unframed', 'binary'],
    ['framed', 'compact'],
    ['unframed', 'compact'],
  ];
  for (const [transport, protocol] of kinds) {
    const c = await connectClient({ port: gw.port(), transport, protocol });
    try {
      assert.equal(await call<number>((cb) => c.calc.add(20, 22, cb)), 42, `${transport}/${protocol}`);
      const w = new types.Work({ num1: 7, num2: 6, op: types.Operation.MULTIPLY });
      assert.equal(await call<number>((cb) => c.calc.calculate(1, w, cb)), 42);
      const long = 'é'.repeat(3000);
      assert.equal(await call<string>((cb) => c.calc.echo(long, cb)), long);
      assert.deepEqual(c.errors, []);
    } finally {
      c.close();
    }
  }
  const recs = gw.access();
  assert.equal(recs.length, 12);
  for (const r of recs) {
    assert.equal(r.proto, 'thrift');
    assert.equal(r.outcome, 'ok');
    assert.equal(r.thrift_type, 'reply');
    assert.equal(r.pool, 'calc');
    assert.match(String(r.server), /^c[12]$/);
    assert.ok(Number(r.bytes_in) > 0 && Number(r.bytes_out) > 0);
  }
  assert.deepEqual(
    recs.slice(0, 3).map((r) => r.method),
    ['add', 'calculate', 'echo'],
  );
});

test('a binary client reaches a compact unframed pool (transport and protocol converted both ways)', async (t) => {
  const calc = await servers(t, 'u', 1, 'unframed', 'compact');
  const gw = await gateway(
    t,
    `${LISTENER}    routes:
      - match: { protocol: thrift }
        pool: calc
pools:
  calc:
    protocol: thrift
    thrift: { transport: unframed, protocol: compact }
    health: { type: none }
    servers:
${serverLines(calc)}
`,
  );
  const c = await connectClient({ port: gw.port(), transport: 'framed', protocol: 'binary' });
  t.after(() => c.close());
  assert.equal(await call<number>((cb) => c.calc.add(-5, 3, cb)), -2);
  // A declared exception converted back: InvalidOperation with its fields.
  const w = new types.Work({ num1: 1, num2: 0, op: types.Operation.DIVIDE });
  await assert.rejects(
    call<number>((cb) => c.calc.calculate(1, w, cb)),
    (e: unknown) => {
      assert.ok(e instanceof types.InvalidOperation);
      assert.equal((e as unknown as { why: string }).why, 'Cannot divide by 0');
      return true;
    },
  );
  assert.equal(calc[0].calls.get('calculate'), 1);
});

test('multiplexed services route to different pools; strip_service serves plain servers', async (t) => {
  const calc = await servers(t, 'calc', 2, 'framed', 'binary', true);
  const weather = await servers(t, 'wx', 1, 'framed', 'binary', true);
  const plain = await servers(t, 'plain', 1, 'framed', 'binary', false);
  const gw = await gateway(
    t,
    `${LISTENER}    routes:
      - match: { protocol: thrift, service: Weather }
        pool: weather
      - match: { protocol: thrift, service: Plain* }
        pool: plain
      - match: { protocol: thrift, service: Calculator, method: "admin*" }
        deny: true
      - match: { protocol: thrift, service: Calculator }
        pool: calc
pools:
  calc:
    protocol: thrift
    health: { type: none }
    servers:
${serverLines(calc)}
  weather:
    protocol: thrift
    health: { type: none }
    servers:
${serverLines(weather)}
  plain:
    protocol: thrift
    thrift: { strip_service: true }
    health: { type: none }
    servers:
${serverLines(plain)}
`,
  );
  // One connection, two services (the Node multiplexer matches replies by seqid).
  const c = await connectClient({
    port: gw.port(),
    transport: 'framed',
    protocol: 'binary',
    service: 'Calculator',
  });
  t.after(() => c.close());
  const who = new Set<string>();
  for (let i = 0; i < 6; i++) who.add(await call<string>((cb) => c.calc.whoami(cb)));
  assert.deepEqual([...who].sort(), ['calc1', 'calc2']);
  assert.equal(await call<string>((cb) => c.weather!.forecast('Oslo', cb)), 'wx1: sunny in Oslo');
  // Concurrent calls to both services on the one connection.
  const both = await Promise.all([
    call<number>((cb) => c.calc.add(1, 2, cb)),
    call<string>((cb) => c.weather!.forecast('Rome', cb)),
    call<number>((cb) => c.calc.add(3, 4, cb)),
  ]);
  assert.deepEqual(both, [3, 'wx1: sunny in Rome', 7]);
  // strip_service: "PlainCalc:add" reaches a non-multiplexed server as "add".
  const p = await connectClient({
    port: gw.port(),
    transport: 'framed',
    protocol: 'binary',
    service: 'PlainCalc',
  });
  t.after(() => p.close());
  assert.equal(await call<number>((cb) => p.calc.add(5, 5, cb)), 10);
  assert.equal(await call<string>((cb) => p.calc.whoami(cb)), 'plain1');
  const recs = gw.access();
  const strip = recs.filter((r) => r.pool === 'plain');
  assert.deepEqual(
    strip.map((r) => [r.service, r.method, r.outcome]),
    [
      ['PlainCalc', 'add', 'ok'],
      ['PlainCalc', 'whoami', 'ok'],
    ],
  );
  assert.ok(recs.some((r) => r.pool === 'weather' && r.service === 'Weather' && r.method === 'forecast'));
  // deny: a TApplicationException with the client's seqid; no server sees the call.
  const raw = await RawClient.connect(gw.port(), 'framed');
  t.after(() => raw.close());
  raw.send(encodeMessage('framed', 'binary', 'Calculator:adminReset', 1, 4242, i32Fields()));
  const denied = decodeReply('binary', await raw.next());
  assert.equal(denied.seqid, 4242);
  assert.equal(denied.name, 'adminReset');
  assert.equal(denied.exception?.type, thrift.Thrift.TApplicationExceptionType.INTERNAL_ERROR);
  assert.match(denied.exception?.message ?? '', /denied/);
  // No route (a service nothing matches): UNKNOWN_METHOD.
  raw.send(encodeMessage('framed', 'binary', 'Nope:x', 1, 5, i32Fields()));
  const none = decodeReply('binary', await raw.next());
  assert.equal(none.seqid, 5);
  assert.equal(none.exception?.type, thrift.Thrift.TApplicationExceptionType.UNKNOWN_METHOD);
  const outcomes = gw.access().map((r) => r.outcome);
  assert.ok(outcomes.includes('denied') && outcomes.includes('no_route'));
  for (const s of [...calc, ...weather, ...plain]) assert.equal(s.calls.get('adminReset'), undefined);
});

test('300 calls on one client connection spread over 3 servers, replies in request order', async (t) => {
  const calc = await servers(t, 's', 3, 'framed', 'binary');
  const gw = await gateway(
    t,
    `${LISTENER}    routes:
      - match: { protocol: thrift }
        pool: calc
pools:
  calc:
    protocol: thrift
    balance: p2c
    health: { type: none }
    servers:
${serverLines(calc)}
`,
  );
  const c = await connectClient({ port: gw.port(), transport: 'framed', protocol: 'binary' });
  t.after(() => c.close());
  const counts = new Map<string, number>();
  // Batches of 10 calls in flight (pipelined on the one connection).
  for (let batch = 0; batch < 30; batch++) {
    const names = await Promise.all(
      Array.from({ length: 10 }, () => call<string>((cb) => c.calc.whoami(cb))),
    );
    for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
  }
  assert.equal(
    [...counts.values()].reduce((a, b) => a + b, 0),
    300,
  );
  for (const s of calc) assert.ok((counts.get(s.name) ?? 0) >= 60, `${s.name}: ${counts.get(s.name)} of 300`);
  // In order: a slow call followed by fast ones; the raw client sees replies in call order.
  const raw = await RawClient.connect(gw.port(), 'framed');
  t.after(() => raw.close());
  const slowArgs = (p: thrift.TProtocol) => i32Fields([1, 150])(p);
  raw.send(
    Buffer.concat([
      encodeMessage('framed', 'binary', 'slow', 1, 100, slowArgs),
      encodeMessage('framed', 'binary', 'add', 1, 101, i32Fields([1, 1], [2, 1])),
      encodeMessage('framed', 'binary', 'add', 1, 102, i32Fields([1, 2], [2, 2])),
    ]),
  );
  const order = [];
  for (let i = 0; i < 3; i++) order.push(decodeReply('binary', await raw.next()));
  assert.deepEqual(
    order.map((r) => r.seqid),
    [100, 101, 102],
  );
  assert.match(String(order[0].success), /^s[123]:150$/);
  assert.deepEqual([order[1].success, order[2].success], [2, 4]);
});

test('oneway calls are forwarded and never waited on', async (t) => {
  const calc = await servers(t, 'o', 1, 'framed', 'binary');
  const gw = await gateway(
    t,
    `${LISTENER}    routes:
      - match: { protocol: thrift }
        pool: calc
pools:
  calc:
    protocol: thrift
    health: { type: none }
    servers:
${serverLines(calc)}
`,
  );
  const c = await connectClient({ port: gw.port(), transport: 'framed', protocol: 'binary' });
  t.after(() => c.close());
  for (let i = 0; i < 5; i++) c.calc.zip(`note-${i}`, () => {});
  assert.equal(await call<number>((cb) => c.calc.add(1, 1, cb)), 2);
  const until = Date.now() + 3000;
  while (calc[0].zips.length < 5 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(calc[0].zips, ['note-0', 'note-1', 'note-2', 'note-3', 'note-4']);
  // Raw: a oneway then a call; the only reply is the call's.
  const raw = await RawClient.connect(gw.port(), 'framed');
  t.after(() => raw.close());
  raw.send(
    Buffer.concat([
      encodeMessage('framed', 'binary', 'zip', 4, 77, stringField('raw')),
      encodeMessage('framed', 'binary', 'add', 1, 78, i32Fields([1, 2], [2, 3])),
    ]),
  );
  const r = decodeReply('binary', await raw.next());
  assert.deepEqual([r.seqid, r.success], [78, 5]);
  await new Promise((res) => setTimeout(res, 50));
  assert.equal(raw.pending.length, 0, 'nothing else came back');
  const oneway = gw.access().filter((x) => x.thrift_type === 'oneway');
  assert.equal(oneway.length, 6);
  assert.ok(oneway.every((x) => x.outcome === 'ok' && x.method === 'zip' && x.bytes_out === 0));
});

test('declared exceptions and server TApplicationExceptions pass through unchanged', async (t) => {
  const calc = await servers(t, 'e', 1, 'framed', 'compact');
  const gw = await gateway(
    t,
    `${LISTENER}    routes:
      - match: { protocol: thrift }
        pool: calc
pools:
  calc:
    protocol: thrift
    thrift: { protocol: compact }
    health: { type: none }
    servers:
${serverLines(calc)}
`,
  );
  const c = await connectClient({ port: gw.port(), transport: 'framed', protocol: 'compact' });
  t.after(() => c.close());
  const w = new types.Work({ num1: 1, num2: 0, op: types.Operation.DIVIDE });
  await assert.rejects(
    call<number>((cb) => c.calc.calculate(9, w, cb)),
    (e: unknown) => {
      assert.ok(e instanceof types.InvalidOperation);
      assert.equal((e as unknown as { whatOp: number }).whatOp, types.Operation.DIVIDE);
      return true;
    },
  );
  const raw = await RawClient.connect(gw.port(), 'framed');
  t.after(() => raw.close());
  raw.send(encodeMessage('framed', 'compact', 'noSuchMethod', 1, 300, i32Fields()));
  const r = decodeReply('compact', await raw.next());
  assert.equal(r.seqid, 300);
  assert.equal(r.type, thrift.Thrift.MessageType.EXCEPTION);
  // The server's own text (the Node library's compact writer leaves out the type field).
  assert.equal(r.exception?.message, 'Unknown function noSuchMethod');
  const recs = gw.access();
  assert.deepEqual(
    recs.map((x) => [x.method, x.thrift_type, x.outcome]),
    [
      ['calculate', 'reply', 'ok'],
      ['noSuchMethod', 'exception', 'ok'],
    ],
  );
});

test('THeader clients get their replies in THeader, binary and compact', async (t) => {
  const calc = await servers(t, 'h', 1, 'framed', 'binary');
  const gw = await gateway(
    t,
    `${LISTENER}    routes:
      - match: { protocol: thrift }
        pool: calc
pools:
  calc:
    protocol: thrift
    health: { type: none }
    servers:
${serverLines(calc)}
`,
  );
  const c = await connectClient({ port: gw.port(), transport: 'header', protocol: 'header' });
  t.after(() => c.close());
  assert.equal(await call<number>((cb) => c.calc.add(2, 40, cb)), 42);
  assert.equal(await call<string>((cb) => c.calc.whoami(cb)), 'h1');
  // A compact THeader frame by hand: protocol id 2.
  const payload = encodeMessage('unframed', 'compact', 'add', 1, 9, i32Fields([1, 4], [2, 5]));
  const head = Buffer.alloc(18);
  head.writeInt32BE(14 + payload.length, 0);
  head.writeUInt16BE(0x0fff, 4);
  head.writeUInt16BE(0, 6);
  head.writeInt32BE(31, 8);
  head.writeUInt16BE(1, 12);
  head[14] = 2;
  const raw = await RawClient.connect(gw.port(), 'framed');
  t.after(() => raw.close());
  raw.send(Buffer.concat([head, payload]));
  const frame = await raw.next();
  assert.equal(frame.readUInt16BE(0), 0x0fff);
  assert.equal(frame.readInt32BE(4), 31, 'THeader sequence echoed');
  assert.equal(frame[10], 2, 'compact protocol id');
  const r = decodeReply('compact', frame.subarray(14));
  assert.deepEqual([r.seqid, r.success], [9, 9]);
});

test('hash on thrift-method keeps each method on one server', async (t) => {
  const calc = await servers(t, 'k', 3, 'framed', 'binary');
  const gw = await gateway(
    t,
    `${LISTENER}    routes:
      - match: { protocol: thrift }
        pool: calc
pools:
  calc:
    protocol: thrift
    balance: hash
    hash: { on: thrift-method }
    health: { type: none }
    servers:
${serverLines(calc)}
`,
  );
  const c = await connectClient({ port: gw.port(), transport: 'framed', protocol: 'binary' });
  t.after(() => c.close());
  const who = new Set<string>();
  for (let i = 0; i < 12; i++) who.add(await call<string>((cb) => c.calc.whoami(cb)));
  assert.equal(who.size, 1);
  for (let i = 0; i < 12; i++) await call<number>((cb) => c.calc.add(i, i, cb));
  const addServers = new Set(
    gw
      .access()
      .filter((r) => r.method === 'add')
      .map((r) => r.server),
  );
  assert.equal(addServers.size, 1);
});

test('pipelining pools: many calls in flight on one connection per server, late replies dropped', async (t) => {
  const calc = await servers(t, 'p', 2, 'framed', 'binary');
  const gw = await gateway(
    t,
    `${LISTENER}    routes:
      - match: { protocol: thrift }
        pool: calc
pools:
  calc:
    protocol: thrift
    thrift: { pipelining: true }
    timeouts: { request: 150ms }
    health: { type: none }
    servers:
${serverLines(calc)}
`,
  );
  const clients = await Promise.all(
    [0, 1, 2, 3].map(() => connectClient({ port: gw.port(), transport: 'framed', protocol: 'binary' })),
  );
  t.after(() => {
    for (const c of clients) c.close();
  });
  const sums = await Promise.all(
    clients.flatMap((c, k) =>
      Array.from({ length: 25 }, (_, i) => call<number>((cb) => c.calc.add(k * 1000, i, cb))),
    ),
  );
  assert.deepEqual(
    sums,
    clients.flatMap((_, k) => Array.from({ length: 25 }, (_, i) => k * 1000 + i)),
  );
  assert.deepEqual(
    calc.map((s) => s.connections),
    [1, 1],
    '100 calls over one connection per server',
  );
  // A timed-out call leaves its connection in use; its late reply is dropped.
  const c = clients[0];
  await assert.rejects(
    call<string>((cb) => c.calc.slow(300, cb)),
    /no reply within 150 ms/,
  );
  assert.equal(await call<number>((cb) => c.calc.add(1, 1, cb)), 2);
  await new Promise((r) => setTimeout(r, 350));
  const more = await Promise.all(
    Array.from({ length: 6 }, (_, i) => call<number>((cb) => c.calc.add(i, i, cb))),
  );
  assert.deepEqual(more, [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(
    calc.map((s) => s.connections),
    [1, 1],
  );
});
