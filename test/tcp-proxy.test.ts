// The TCP proxy behind a minimal harness: a real net.Server that sniffs each connection
// with classify() and hands it to the proxy, real backends, the real balancer Pool built
// from a real config; only the router is a small inline table.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import tls from 'node:tls';
import pino from 'pino';
import { Pool } from '../src/balancer/pool.js';
import { loadConfigText } from '../src/config/load.js';
import type { PoolConfig } from '../src/config/runtime.js';
import type { GatewayContext, ListenerState, ProtocolProxy } from '../src/core/proxy.js';
import type { AccessRecord, RouteKey } from '../src/core/types.js';
import { createTcpProxy } from '../src/proxy/tcp/index.js';
import type { CompiledRoute, Router } from '../src/router/types.js';
import { classify } from '../src/sniff/classify.js';

// ---------------------------------------------------------------------------------------
// Harness

interface Backend {
  server: net.Server;
  port: number;
  sockets: Set<net.Socket>;
  close(): Promise<void>;
}

async function backend(onConn: (s: net.Socket) => void): Promise<Backend> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onConn(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as net.AddressInfo).port,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

const echo = (s: net.Socket) => s.pipe(s);

/** A port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  s.close();
  await once(s, 'close');
  return port;
}

function poolConfigs(yamlPools: string): Map<string, PoolConfig> {
  const text = `listeners:\n  - name: edge\n    bind: ["127.0.0.1:0"]\n    routes: [{ match: { protocol: tcp }, pool: ${
    yamlPools.match(/^ {2}(\w[\w-]*):/m)?.[1]
  } }]\npools:\n${yamlPools}`;
  const r = loadConfigText(text, '/tmp/tcp-proxy-test.yaml');
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return r.config.pools;
}

interface Harness {
  port: number;
  records: AccessRecord[];
  proxy: ProtocolProxy;
  pools: Map<string, Pool>;
  /** Resolves with the next access record (in order). */
  nextRecord(): Promise<AccessRecord>;
  close(): Promise<void>;
}

interface HarnessOpts {
  pools: string; // YAML of the `pools:` map body
  /** Route table: first entry whose predicate matches wins. */
  routes: { name: string; when?: (k: RouteKey) => boolean; pool?: string; deny?: boolean }[];
  tunnelMs?: number;
  sniffMs?: number;
}

async function harness(opts: HarnessOpts): Promise<Harness> {
  const configs = poolConfigs(opts.pools);
  const pools = new Map<string, Pool>();
  for (const [name, cfg] of configs) pools.set(name, new Pool(cfg));
  const table: CompiledRoute[] = opts.routes.map((r, index) => ({
    name: r.name,
    index,
    pool: r.pool ? pools.get(r.pool) : undefined,
    poolConfig: r.pool ? configs.get(r.pool) : undefined,
    deny: r.deny ?? false,
  }));
  const keys: RouteKey[] = [];
  const router: Router = {
    route(key) {
      keys.push(key);
      const i = opts.routes.findIndex((r) => r.when === undefined || r.when(key));
      return i < 0 ? undefined : table[i];
    },
    accepts: () => true,
  };
  const anyPool = [...configs.values()][0];
  const timeouts = { ...anyPool.timeouts, sniff: opts.sniffMs ?? 200, tunnel: opts.tunnelMs ?? 60_000 };
  const listener: ListenerState = {
    name: 'edge',
    connections: { active: 0, total: 0, refused: 0, sniffTimeouts: 0 },
    current: {
      // Only name/timeouts/limits are read by the tcp proxy; the rest of the listener config
      // is irrelevant here.
      config: { name: 'edge' } as ListenerState['current']['config'],
      router,
      timeouts,
      limits: { sniffBytes: 4096 } as ListenerState['current']['limits'],
      pools: new Map([...pools].map(([n, p]) => [n, { pool: p, config: configs.get(n)! }])),
    },
  };
  const records: AccessRecord[] = [];
  const waiters: ((r: AccessRecord) => void)[] = [];
  let consumed = 0;
  const ctx: GatewayContext = {
    logger: pino({ level: 'silent' }),
    finish(r) {
      records.push(r);
      const w = waiters.shift();
      if (w) {
        consumed++;
        w(r);
      }
    },
    draining: false,
  };
  const proxy = createTcpProxy(ctx);
  const clients = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => {
    clients.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => clients.delete(socket));
    void classify(socket, { timeoutMs: timeouts.sniff, maxBytes: 4096 }).then((sniff) => {
      proxy.handle({
        socket,
        sniff,
        listener,
        clientIp: socket.remoteAddress ?? '',
        clientAddr: `${socket.remoteAddress}:${socket.remotePort}`,
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    records,
    proxy,
    pools,
    nextRecord() {
      if (consumed < records.length) return Promise.resolve(records[consumed++]);
      return new Promise((r) => waiters.push(r));
    },
    close: async () => {
      for (const s of clients) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

function connect(port: number): Promise<net.Socket> {
  const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  c.on('error', () => {});
  return once(c, 'connect').then(() => c);
}

/** Everything the socket sends until it ends (or closes). */
function readAll(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => {
    let done = false;
    const fin = () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks));
    };
    s.on('end', fin);
    s.on('close', fin);
  });
}

function readN(s: net.Socket, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise((resolve, reject) => {
    const onData = (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= n) {
        s.off('data', onData);
        s.off('close', onClose);
        resolve(Buffer.concat(chunks));
      }
    };
    const onClose = () => reject(new Error(`closed after ${got} of ${n} bytes`));
    s.on('data', onData);
    s.on('close', onClose);
  });
}

/** Closed, or ended by the peer (these clients are half-open capable and would wait). */
const closed = (s: net.Socket) =>
  s.destroyed || s.readableEnded
    ? Promise.resolve()
    : new Promise<void>((r) => {
        s.once('close', () => r());
        s.once('end', () => r());
        s.resume();
      });

const tcpRoute = [{ name: 'all', pool: 'echo' }];
const twoServers = (a: number, b: number, extra = '') => `  echo:
    protocol: tcp
    balance: first
    health: { type: none }
    retries: { attempts: 1 }${extra}
    servers:
      - { name: s1, address: "127.0.0.1:${a}" }
      - { name: s2, address: "127.0.0.1:${b}" }
`;
const oneServer = (a: number) => `  echo:
    protocol: tcp
    health: { type: none }
    servers: [{ name: s1, address: "127.0.0.1:${a}" }]
`;

// ---------------------------------------------------------------------------------------

test('echo through the proxy: sniffed head first, then both directions; one ok record', async (t) => {
  const b = await backend(echo);
  const h = await harness({ pools: oneServer(b.port), routes: tcpRoute });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  const c = await connect(h.port);
  // Not a protocol: decided at once, so "hello " is the sniffed head and the rest flows after.
  c.write('hello ');
  assert.equal((await readN(c, 6)).toString(), 'hello ');
  c.write('world');
  assert.equal((await readN(c, 5)).toString(), 'world');
  assert.equal(h.proxy.activeConnections, 1);
  assert.equal(h.pools.get('echo')!.members[0].active, 1);
  c.end();
  await readAll(c);
  const r = await h.nextRecord();
  assert.equal(r.outcome, 'ok');
  assert.equal(r.proto, 'tcp');
  assert.equal(r.listener, 'edge');
  assert.equal(r.route, 'all');
  assert.equal(r.pool, 'echo');
  assert.equal(r.server, 's1');
  assert.equal(r.bytes_in, 11);
  assert.equal(r.bytes_out, 11);
  assert.equal(r.retries, undefined);
  const m = h.pools.get('echo')!.members[0];
  assert.equal(m.active, 0);
  assert.equal(m.bytesIn, 11);
  assert.equal(m.bytesOut, 11);
  assert.equal(h.proxy.activeConnections, 0);
});

test('half-close: the client ends, the server still answers, then ends', async (t) => {
  const b = await backend((s) => {
    let n = 0;
    s.on('data', (d: Buffer) => {
      n += d.length;
    });
    s.on('end', () => {
      // The request is complete only at the client's FIN; answer after it.
      setTimeout(() => s.end(`got ${n} bytes`), 20);
    });
  });
  const h = await harness({ pools: oneServer(b.port), routes: tcpRoute });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  const c = await connect(h.port);
  const reply = readAll(c);
  c.write('GET key\r\n');
  c.end('more');
  assert.equal((await reply).toString(), 'got 13 bytes');
  await closed(c);
  const r = await h.nextRecord();
  assert.equal(r.outcome, 'ok');
  assert.equal(r.bytes_in, 13);
  assert.equal(r.bytes_out, 12);
});

test('a FIN during sniffing is forwarded after the head; the reply still arrives', async (t) => {
  const b = await backend((s) => {
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.on('end', () => s.end(`[${Buffer.concat(got)}]`));
  });
  const h = await harness({ pools: oneServer(b.port), routes: tcpRoute, sniffMs: 5000 });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  // Download-only client: shuts its write side at once, then reads.
  const c1 = await connect(h.port);
  const r1 = readAll(c1);
  c1.end();
  assert.equal((await r1).toString(), '[]');
  assert.equal((await h.nextRecord()).outcome, 'ok');
  // Two bytes that could still become framed Thrift, then FIN: undecided, so tcp.
  const c2 = await connect(h.port);
  const r2 = readAll(c2);
  c2.end(Buffer.from([0, 0]));
  assert.deepEqual(await r2, Buffer.from([0x5b, 0, 0, 0x5d]));
  assert.equal((await h.nextRecord()).bytes_in, 2);
});

test('a server that speaks first reaches a silent client after the sniff timeout', async (t) => {
  const b = await backend((s) => {
    s.write('220 ready\r\n');
    s.on('data', (d: Buffer) => s.end(`250 ${d}`));
  });
  const h = await harness({ pools: oneServer(b.port), routes: tcpRoute, sniffMs: 50 });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  const c = await connect(h.port);
  assert.equal((await readN(c, 11)).toString(), '220 ready\r\n');
  c.write('HELO');
  assert.equal((await readAll(c)).toString(), '250 HELO');
  c.end();
  assert.equal((await h.nextRecord()).outcome, 'ok');
});

test('8 MiB each way, byte-exact, with backpressure', async (t) => {
  const b = await backend(echo);
  const h = await harness({ pools: oneServer(b.port), routes: tcpRoute });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  const data = randomBytes(8 * 1024 * 1024);
  const c = await connect(h.port);
  const back = readAll(c);
  // Written in uneven pieces so chunk boundaries differ on every hop.
  let off = 0;
  let size = 1;
  while (off < data.length) {
    const piece = data.subarray(off, off + size);
    off += piece.length;
    size = (size * 7 + 13) % 200_000;
    if (!c.write(piece)) await once(c, 'drain');
  }
  c.end();
  const got = await back;
  assert.equal(got.length, data.length);
  assert.equal(
    createHash('sha256').update(got).digest('hex'),
    createHash('sha256').update(data).digest('hex'),
  );
  const r = await h.nextRecord();
  assert.equal(r.outcome, 'ok');
  assert.equal(r.bytes_in, data.length);
  assert.equal(r.bytes_out, data.length);
});

test('a slow reader: the backend is paused, nothing is lost', async (t) => {
  const data = randomBytes(6 * 1024 * 1024);
  const b = await backend((s) => {
    let off = 0;
    const pump = () => {
      while (off < data.length) {
        const piece = data.subarray(off, off + 300_000);
        off += piece.length;
        if (!s.write(piece)) return;
      }
      s.end();
    };
    s.on('drain', pump);
    s.on('data', () => {});
    pump();
  });
  const h = await harness({ pools: oneServer(b.port), routes: tcpRoute, sniffMs: 20 });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  const c = await connect(h.port);
  // Read in stalls so every buffer on the way fills up and drains, again and again.
  const chunks: Buffer[] = [];
  let got = 0;
  c.on('data', (d: Buffer) => {
    chunks.push(d);
    got += d.length;
    if (got % 5 === 0) {
      c.pause();
      setTimeout(() => c.resume(), 2);
    }
  });
  c.pause();
  await new Promise((r) => setTimeout(r, 200));
  c.resume();
  await new Promise((r) => c.once('end', r));
  const all = Buffer.concat(chunks);
  assert.equal(all.length, data.length);
  assert.ok(all.equals(data), 'byte-exact');
  c.end();
  assert.equal((await h.nextRecord()).outcome, 'ok');
});

test('connect refused: released as a connect failure, retried on the next server', async (t) => {
  const dead = await deadPort();
  const b = await backend(echo);
  const h = await harness({ pools: twoServers(dead, b.port), routes: tcpRoute });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  const c = await connect(h.port);
  c.write('ping');
  assert.equal((await readN(c, 4)).toString(), 'ping');
  c.end();
  await readAll(c);
  const r = await h.nextRecord();
  assert.equal(r.outcome, 'ok');
  assert.equal(r.server, 's2');
  assert.equal(r.retries, 1);
  const [s1, s2] = h.pools.get('echo')!.members;
  assert.equal(s1.errors, 1);
  assert.equal(s1.active, 0);
  assert.equal(s2.active, 0);
});

test('every server refused: the client is closed and the record says connect_failure', async (t) => {
  const h = await harness({ pools: twoServers(await deadPort(), await deadPort()), routes: tcpRoute });
  t.after(() => h.close());
  const c = await connect(h.port);
  c.write('ping');
  const got = await readAll(c);
  assert.equal(got.length, 0);
  const r = await h.nextRecord();
  assert.equal(r.outcome, 'connect_failure');
  assert.equal(r.retries, 1);
  assert.equal(r.server, undefined);
  assert.match(String(r.detail), /ECONNREFUSED/);
  for (const m of h.pools.get('echo')!.members) {
    assert.equal(m.errors, 1);
    assert.equal(m.active, 0);
  }
});

test('an idle tunnel is closed after timeouts.tunnel, activity keeps it open', async (t) => {
  const b = await backend(echo);
  const h = await harness({ pools: oneServer(b.port), routes: tcpRoute, tunnelMs: 300 });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  const c = await connect(h.port);
  // Traffic every 100 ms for 600 ms: twice the idle timeout, never idle that long.
  for (let i = 0; i < 6; i++) {
    c.write(`x${i}`);
    assert.equal((await readN(c, 2)).toString(), `x${i}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(c.destroyed, false);
  await readAll(c);
  const r = await h.nextRecord();
  assert.equal(r.outcome, 'timeout');
  assert.equal(b.sockets.size, 0, 'the backend connection is closed too');
});

test('no route and deny close the client with their outcome', async (t) => {
  const b = await backend(echo);
  const h = await harness({
    pools: oneServer(b.port),
    routes: [
      { name: 'blocked', when: (k) => k.source === '127.0.0.1' && k.proto === 'tls', deny: true },
      { name: 'never', when: () => false, pool: 'echo' },
    ],
  });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  const c1 = await connect(h.port);
  c1.write('data');
  await readAll(c1);
  assert.equal((await h.nextRecord()).outcome, 'no_route');

  const c2 = tls.connect({ port: h.port, host: '127.0.0.1', servername: 'x.test' });
  c2.on('error', () => {});
  await closed(c2);
  const r = await h.nextRecord();
  assert.equal(r.outcome, 'denied');
  assert.equal(r.proto, 'tls');
  assert.equal(b.sockets.size, 0);
});

test('TLS passthrough is routed on the SNI and forwarded untouched', async (t) => {
  const got: Buffer[] = [];
  const a = await backend((s) => {
    s.on('data', (d: Buffer) => {
      got.push(d);
      s.destroy();
    });
  });
  const other = await backend((s) => s.destroy());
  const h = await harness({
    pools: `${oneServer(a.port)}  other:\n    protocol: tcp\n    health: { type: none }\n    servers: [{ address: "127.0.0.1:${other.port}" }]\n`,
    routes: [
      { name: 'db', when: (k) => k.proto === 'tls' && k.sni === 'db.internal', pool: 'echo' },
      { name: 'rest', pool: 'other' },
    ],
  });
  t.after(async () => {
    await h.close();
    await a.close();
    await other.close();
  });
  const c = tls.connect({ port: h.port, host: '127.0.0.1', servername: 'db.internal' });
  c.on('error', () => {});
  await closed(c);
  const r = await h.nextRecord();
  assert.equal(r.proto, 'tls');
  assert.equal(r.route, 'db');
  assert.equal(r.server, 's1');
  const bytes = Buffer.concat(got);
  assert.equal(bytes[0], 0x16, 'the backend sees the ClientHello itself');
  assert.equal(r.bytes_in, bytes.length);
  assert.equal(bytes.readUInt16BE(3) + 5, bytes.length, 'exactly the ClientHello record');
});

test('a client reset closes the backend connection and is logged as client_reset', async (t) => {
  const b = await backend(echo);
  const h = await harness({ pools: oneServer(b.port), routes: tcpRoute });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  const c = await connect(h.port);
  c.write('abc');
  await readN(c, 3);
  c.resetAndDestroy();
  const r = await h.nextRecord();
  assert.equal(r.outcome, 'client_reset');
  for (let i = 0; i < 100 && b.sockets.size > 0; i++) await new Promise((res) => setTimeout(res, 10));
  assert.equal(b.sockets.size, 0);
});

test('a server reset closes the client and is released as a failure', async (t) => {
  const b = await backend((s) => s.on('data', () => s.resetAndDestroy()));
  const h = await harness({ pools: oneServer(b.port), routes: tcpRoute });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  const c = await connect(h.port);
  c.write('boom');
  await closed(c);
  const r = await h.nextRecord();
  assert.equal(r.outcome, 'server_reset');
  assert.equal(h.pools.get('echo')!.members[0].errors, 1);
});

test('drain waits for tunnels, then cuts what is left at the deadline', async (t) => {
  const b = await backend(echo);
  const h = await harness({ pools: oneServer(b.port), routes: tcpRoute });
  t.after(async () => {
    await h.close();
    await b.close();
  });
  const quick = await connect(h.port);
  const stuck = await connect(h.port);
  quick.write('q');
  stuck.write('s');
  await readN(quick, 1);
  await readN(stuck, 1);
  const drained = h.proxy.drain(Date.now() + 300);
  // One peer finishes on its own during the grace period.
  quick.end();
  await readAll(quick);
  assert.equal((await h.nextRecord()).outcome, 'ok');
  await drained;
  const r = await h.nextRecord();
  assert.equal(r.outcome, 'cut');
  await closed(stuck);
  assert.equal(h.proxy.activeConnections, 0);
});
