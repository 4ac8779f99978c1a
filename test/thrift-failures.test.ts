// End-to-end: failures become Thrift replies, shared backend connections keep seqids,
// limits, health, drain.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import thrift from 'thrift';
import { startThriftGateway, type ThriftGateway } from './fixtures/thrift/gateway.js';
import {
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
} from './fixtures/thrift/helpers.js';

type T = { after(fn: () => unknown): void };
const serverLines = (list: { name: string; port: number }[]): string =>
  list.map((s) => `      - { name: ${s.name}, address: "127.0.0.1:${s.port}" }`).join('\n');
const INTERNAL_ERROR = thrift.Thrift.TApplicationExceptionType.INTERNAL_ERROR;

async function servers(t: T, prefix: string, n: number, transport: Transport, protocol: Protocol) {
  const list = await Promise.all(
    Array.from({ length: n }, (_, i) => startCalcServer({ name: `${prefix}${i + 1}`, transport, protocol })),
  );
  t.after(() => Promise.all(list.map((s) => s.close())));
  return list;
}

async function gateway(t: T, yaml: string): Promise<ThriftGateway> {
  const gw = await startThriftGateway(yaml);
  t.after(() => gw.stop());
  return gw;
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function pool(name: string, list: { name: string; port: number }[], extra = ''): string {
  return `  ${name}:
    protocol: thrift
${extra}    servers:
${serverLines(list)}
`;
}

function config(
  pools: string,
  listenerExtra = '',
  routes = '      - match: { protocol: thrift }\n        pool: calc\n',
) {
  return `
global: { grace: 2s }
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
${listenerExtra}    routes:
${routes}pools:
${pools}`;
}

test('client connections share backend connections; every client keeps its own seqids', async (t) => {
  const calc = await servers(t, 'b', 2, 'framed', 'binary');
  const gw = await gateway(t, config(pool('calc', calc, '    health: { type: none }\n')));
  const seqids = [7, 7, -1, 2147483647];
  const clients = await Promise.all(Array.from({ length: 10 }, () => RawClient.connect(gw.port(), 'framed')));
  t.after(() => {
    for (const c of clients) c.close();
  });
  // Every client pipelines the same seqids (7 twice); the sums tell the calls apart.
  clients.forEach((c, k) => {
    c.send(
      Buffer.concat(
        seqids.map((seq, i) =>
          encodeMessage('framed', 'binary', 'add', 1, seq, i32Fields([1, k * 100], [2, i])),
        ),
      ),
    );
  });
  await Promise.all(
    clients.map(async (c, k) => {
      for (let i = 0; i < seqids.length; i++) {
        const r = decodeReply('binary', await c.next());
        assert.deepEqual(
          [r.seqid, r.success, r.name],
          [seqids[i], k * 100 + i, 'add'],
          `client ${k} call ${i}`,
        );
      }
    }),
  );
  // Sequential clients now reuse the pooled connections: the servers see no new ones.
  const before = calc.map((s) => s.connections);
  for (let k = 0; k < 10; k++) {
    const c = await RawClient.connect(gw.port(), 'framed');
    c.send(encodeMessage('framed', 'binary', 'add', 1, 1, i32Fields([1, k], [2, k])));
    const r = decodeReply('binary', await c.next());
    assert.deepEqual([r.seqid, r.success], [1, 2 * k]);
    c.close();
  }
  assert.deepEqual(
    calc.map((s) => s.connections),
    before,
  );
  assert.ok(
    before.reduce((a, b) => a + b, 0) <= 40,
    `${before} backend connections for 40 calls from 10 clients`,
  );
});

test('compact seqids of every varint length come back byte for byte (unframed client, framed pool)', async (t) => {
  const calc = await servers(t, 'v', 1, 'framed', 'compact');
  const gw = await gateway(
    t,
    config(pool('calc', calc, '    thrift: { protocol: compact }\n    health: { type: none }\n')),
  );
  const seqids = [0, 127, 128, 16384, 2 ** 28, -1, 300];
  const c = await RawClient.connect(gw.port(), 'unframed');
  t.after(() => c.close());
  const calls = seqids.map((seq, i) =>
    encodeMessage('unframed', 'compact', 'add', 1, seq, i32Fields([1, i], [2, i])),
  );
  c.send(Buffer.concat(calls));
  for (let i = 0; i < seqids.length; i++) {
    const bytes = await c.next({ protocol: 'compact' });
    const r = decodeReply('compact', bytes);
    assert.deepEqual([r.seqid, r.success], [seqids[i], 2 * i]);
    // The seqid varint is the one the client wrote (bytes 2.. of both headers).
    const len = calls[i].indexOf(3, 2) - 2; // name length 3 ("add") follows the seqid
    assert.deepEqual(bytes.subarray(2, 2 + len), calls[i].subarray(2, 2 + len));
  }
});

test('no server up, connect failures: a TApplicationException with the client seqid; retries only unsent calls', async (t) => {
  const dead1 = { name: 'dead1', port: await deadPort() };
  const dead2 = { name: 'dead2', port: await deadPort() };
  const live = await servers(t, 'live', 1, 'framed', 'binary');
  const gw = await gateway(
    t,
    config(
      pool(
        'calc',
        [dead1, dead2],
        '    health: { type: none }\n    retries: { attempts: 1, on: [connect-failure] }\n',
      ) +
        pool('mixed', [dead1, live[0]], '    health: { type: none }\n    thrift: { strip_service: true }\n') +
        pool(
          'down',
          [dead2],
          '    health: { type: thrift, method: ping, interval: 50ms, timeout: 200ms, fall: 1, rise: 1 }\n',
        ),
      '',
      `      - match: { protocol: thrift, service: Mixed }
        pool: mixed
      - match: { protocol: thrift, service: Down }
        pool: down
      - match: { protocol: thrift }
        pool: calc
`,
    ),
  );
  // Both servers refuse: one retry on the other, then the exception.
  const c = await connectClient({ port: gw.port(), transport: 'unframed', protocol: 'compact' });
  t.after(() => c.close());
  await assert.rejects(
    call<number>((cb) => c.calc.add(1, 2, cb)),
    (e: unknown) => {
      const x = e as { type: number; message: string };
      assert.equal(x.type, INTERNAL_ERROR);
      assert.match(x.message, /^switchyard: server dead[12]: connect failed \(ECONNREFUSED\)$/);
      return true;
    },
  );
  const rec = gw.access().at(-1)!;
  assert.deepEqual([rec.outcome, rec.retries, rec.thrift_type], ['connect_failure', 1, 'exception']);
  // The connection still works for the next call (and the Node client matched the seqid).
  await assert.rejects(call<number>((cb) => c.calc.add(1, 2, cb)));
  // One dead server of two: every call succeeds (the refused connect is retried elsewhere).
  const m = await connectClient({
    port: gw.port(),
    transport: 'framed',
    protocol: 'binary',
    service: 'Mixed',
  });
  t.after(() => m.close());
  for (let i = 0; i < 6; i++) assert.equal(await call<string>((cb) => m.calc.whoami(cb)), 'live1');
  assert.ok(gw.access().some((r) => r.pool === 'mixed' && r.retries === 1 && r.outcome === 'ok'));
  // Health checks took the only server of `down` out: "no server available".
  await gw.waitFor((r) => r.event === 'server_state' && r.pool === 'down' && r.to === 'down');
  const raw = await RawClient.connect(gw.port(), 'framed');
  t.after(() => raw.close());
  raw.send(encodeMessage('framed', 'binary', 'Down:add', 1, 99, i32Fields([1, 1], [2, 1])));
  const r = decodeReply('binary', await raw.next());
  assert.deepEqual([r.seqid, r.name, r.exception?.type], [99, 'add', INTERNAL_ERROR]);
  assert.equal(r.exception?.message, 'switchyard: no server available in pool down');
  assert.equal(gw.access().at(-1)!.outcome, 'no_server');
});

test('a backend that dies mid-call: exception to the client, the call is not retried', async (t) => {
  let received = 0;
  const dying = net.createServer((s) => {
    s.on('data', () => {
      received++;
      s.destroy();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => dying.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => dying.close(r)));
  const port = (dying.address() as net.AddressInfo).port;
  const gw = await gateway(
    t,
    config(
      pool(
        'calc',
        [{ name: 'dying', port }],
        '    health: { type: none }\n    retries: { attempts: 3, on: [connect-failure, reset] }\n',
      ),
    ),
  );
  const c = await connectClient({ port: gw.port(), transport: 'framed', protocol: 'binary' });
  t.after(() => c.close());
  await assert.rejects(
    call<number>((cb) => c.calc.add(1, 2, cb)),
    (e: unknown) => {
      const x = e as { type: number; message: string };
      assert.equal(x.type, INTERNAL_ERROR);
      assert.match(x.message, /server dying: server closed the connection before replying/);
      return true;
    },
  );
  assert.equal(received, 1, 'sent once, never replayed');
  const rec = gw.access().at(-1)!;
  assert.deepEqual([rec.outcome, rec.server], ['server_reset', 'dying']);
});

test('timeouts.request: the client gets an exception and its connection goes on', async (t) => {
  const calc = await servers(t, 'slow', 1, 'framed', 'binary');
  const gw = await gateway(
    t,
    config(pool('calc', calc, '    health: { type: none }\n    timeouts: { request: 150ms }\n')),
  );
  const c = await connectClient({ port: gw.port(), transport: 'framed', protocol: 'binary' });
  t.after(() => c.close());
  await assert.rejects(
    call<string>((cb) => c.calc.slow(600, cb)),
    (e: unknown) => {
      const x = e as { type: number; message: string };
      assert.equal(x.type, INTERNAL_ERROR);
      assert.equal(x.message, 'switchyard: no reply within 150 ms');
      return true;
    },
  );
  assert.equal(await call<number>((cb) => c.calc.add(2, 2, cb)), 4);
  assert.equal(await call<string>((cb) => c.calc.slow(10, cb)), 'slow1:10');
  assert.deepEqual(
    gw.access().map((r) => r.outcome),
    ['timeout', 'ok', 'ok'],
  );
});

test('frame-size limit: an oversized frame or unframed message closes the connection with a log', async (t) => {
  const calc = await servers(t, 'f', 1, 'framed', 'binary');
  const gw = await gateway(
    t,
    config(pool('calc', calc, '    health: { type: none }\n'), '    limits: { thrift_frame: 1024 }\n'),
  );
  // Under the limit: fine.
  const ok = await RawClient.connect(gw.port(), 'framed');
  t.after(() => ok.close());
  ok.send(encodeMessage('framed', 'binary', 'echo', 1, 1, stringField('x'.repeat(900))));
  assert.equal(decodeReply('binary', await ok.next()).success, 'x'.repeat(900));
  // A frame length over the limit: closed from the length word alone.
  const big = await RawClient.connect(gw.port(), 'framed');
  t.after(() => big.close());
  big.send(encodeMessage('framed', 'binary', 'echo', 1, 2, stringField('y'.repeat(2000))));
  await big.waitClosed();
  assert.equal(big.pending.length, 0);
  const log = await gw.waitFor((r) => r.event === 'thrift_too_large');
  assert.match(String(log.detail), /over the 1024-byte limit/);
  // Unframed, sent in small pieces: closed once the message passes the limit.
  const un = await RawClient.connect(gw.port(), 'unframed');
  t.after(() => un.close());
  const msg = encodeMessage('unframed', 'compact', 'echo', 1, 3, stringField('z'.repeat(100_000)));
  for (let i = 0; i < msg.length && !un.closed; i += 512) {
    un.send(msg.subarray(i, i + 512));
    await new Promise((r) => setTimeout(r, 1));
  }
  await un.waitClosed();
  assert.equal(calc[0].calls.get('echo'), 1, 'only the small call reached the server');
});

test('a server killed mid-run is taken out by the thrift health check', async (t) => {
  const calc = await servers(t, 'h', 3, 'framed', 'binary');
  const gw = await gateway(
    t,
    config(
      pool(
        'calc',
        calc,
        '    health: { type: thrift, method: ping, interval: 100ms, timeout: 300ms, fall: 2, rise: 1 }\n',
      ),
    ),
  );
  const c = await connectClient({ port: gw.port(), transport: 'framed', protocol: 'binary' });
  t.after(() => c.close());
  const seen = new Set<string>();
  for (let i = 0; i < 30; i++) seen.add(await call<string>((cb) => c.calc.whoami(cb)));
  assert.equal(seen.size, 3);
  await calc[1].kill();
  // Calls keep going while the checks notice.
  let errors = 0;
  const until = Date.now() + 5000;
  let down = false;
  while (!down && Date.now() < until) {
    try {
      await call<string>((cb) => c.calc.whoami(cb));
    } catch (e) {
      errors++;
      assert.equal((e as { type: number }).type, INTERNAL_ERROR, 'failures are Thrift exceptions');
    }
    down = gw.records.some((r) => r.event === 'server_state' && r.server === 'h2' && r.to === 'down');
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(down, 'h2 marked down');
  assert.ok(errors <= 1, `${errors} calls failed while h2 went down`);
  const after = new Map<string, number>();
  for (let i = 0; i < 40; i++) {
    const n = await call<string>((cb) => c.calc.whoami(cb));
    after.set(n, (after.get(n) ?? 0) + 1);
  }
  assert.deepEqual([...after.keys()].sort(), ['h1', 'h3']);
  // The health checks that kept h1 and h3 up were real calls of ping.
  assert.ok((calc[0].calls.get('ping') ?? 0) >= 1);
});

test('graceful drain: in-flight calls finish, connections close between calls', async (t) => {
  const calc = await servers(t, 'd', 1, 'framed', 'binary');
  const gw = await startThriftGateway(config(pool('calc', calc, '    health: { type: none }\n')));
  let stopped = false;
  t.after(() => (stopped ? undefined : gw.stop()));
  const idle = await RawClient.connect(gw.port(), 'framed');
  const busy = await RawClient.connect(gw.port(), 'framed');
  t.after(() => {
    idle.close();
    busy.close();
  });
  idle.send(encodeMessage('framed', 'binary', 'add', 1, 1, i32Fields([1, 1], [2, 1])));
  assert.equal(decodeReply('binary', await idle.next()).success, 2);
  busy.send(encodeMessage('framed', 'binary', 'slow', 1, 5, i32Fields([1, 200])));
  await new Promise((r) => setTimeout(r, 50));
  const stopping = gw.stop().then(() => {
    stopped = true;
  });
  await idle.waitClosed(1000);
  assert.equal(busy.closed, false, 'the busy connection stays while its call runs');
  const r = decodeReply('binary', await busy.next());
  assert.deepEqual([r.seqid, r.success], [5, 'd1:200']);
  await busy.waitClosed(2000);
  await stopping;
  assert.ok(stopped);
});

test('bad input closes only that connection, with a log', async (t) => {
  const calc = await servers(t, 'x', 1, 'framed', 'binary');
  const gw = await gateway(t, config(pool('calc', calc, '    health: { type: none }\n')));
  const good = await RawClient.connect(gw.port(), 'framed');
  const bad = await RawClient.connect(gw.port(), 'framed');
  const liar = await RawClient.connect(gw.port(), 'framed');
  t.after(() => {
    good.close();
    bad.close();
    liar.close();
  });
  // A valid call, then a ThriftMux-like frame (version 0x7f00).
  bad.send(encodeMessage('framed', 'binary', 'add', 1, 1, i32Fields([1, 1], [2, 2])));
  assert.equal(decodeReply('binary', await bad.next()).success, 3);
  bad.send(Buffer.from('0000000c7f0000010000000378797a00', 'hex'));
  await bad.waitClosed();
  const log = await gw.waitFor((r) => r.event === 'thrift_protocol_error');
  assert.match(String(log.detail), /not a strict binary or compact Thrift message/);
  // A client that sends a REPLY instead of a call.
  liar.send(encodeMessage('framed', 'binary', 'add', 2, 1, i32Fields([0, 3])));
  await liar.waitClosed();
  // Everyone else is unaffected.
  good.send(encodeMessage('framed', 'binary', 'add', 1, 8, i32Fields([1, 20], [2, 22])));
  const r = decodeReply('binary', await good.next());
  assert.deepEqual([r.seqid, r.success], [8, 42]);
});

test('reload: open connections and calls in flight survive; the next call follows the new routes', async (t) => {
  const a = await servers(t, 'a', 1, 'framed', 'binary');
  const b = await servers(t, 'b', 1, 'unframed', 'compact');
  const gw = await gateway(t, config(pool('calc', a, '    health: { type: none }\n')));
  if (gw.reload === undefined) {
    t.skip('reload needs the real gateway');
    return;
  }
  const c = await connectClient({ port: gw.port(), transport: 'framed', protocol: 'binary' });
  t.after(() => c.close());
  assert.equal(await call<string>((cb) => c.calc.whoami(cb)), 'a1');
  const inflight = call<string>((cb) => c.calc.slow(200, cb));
  await new Promise((r) => setTimeout(r, 50));
  const r = await gw.reload(
    config(
      pool('calc', b, '    thrift: { transport: unframed, protocol: compact }\n    health: { type: none }\n'),
    ),
  );
  assert.equal(r.ok, true);
  assert.equal(await inflight, 'a1:200', 'the call in flight finished on the old pool');
  assert.equal(await call<string>((cb) => c.calc.whoami(cb)), 'b1', 'same connection, new pool and protocol');
  assert.deepEqual(c.errors, []);
});

test('idle timeouts: client_idle closes an idle client connection, server_idle an idle backend one', async (t) => {
  const calc = await servers(t, 'i', 1, 'framed', 'binary');
  const gw = await gateway(
    t,
    config(
      pool('calc', calc, '    health: { type: none }\n    timeouts: { server_idle: 300ms }\n'),
      '    timeouts: { client_idle: 300ms }\n',
    ),
  );
  const c = await RawClient.connect(gw.port(), 'framed');
  t.after(() => c.close());
  // Busy for longer than client_idle: calls keep the connection open.
  for (let i = 0; i < 4; i++) {
    c.send(encodeMessage('framed', 'binary', 'add', 1, i, i32Fields([1, i], [2, 1])));
    assert.equal(decodeReply('binary', await c.next()).success, i + 1);
    await new Promise((r) => setTimeout(r, 120));
  }
  // A call longer than client_idle is not cut either.
  c.send(encodeMessage('framed', 'binary', 'slow', 1, 9, i32Fields([1, 450])));
  assert.equal(decodeReply('binary', await c.next()).success, 'i1:450');
  assert.equal(calc[0].open, 1);
  // Then idle: both connections are closed (within timeout + one 500 ms sweep).
  await c.waitClosed(2000);
  const until = Date.now() + 2000;
  while (calc[0].open > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  assert.equal(calc[0].open, 0, 'the idle backend connection was closed');
});
