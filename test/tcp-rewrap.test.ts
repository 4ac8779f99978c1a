// A bulk transfer re-wraps the accepted client socket to read with `onread`: bytes, half-close,
// backpressure, access counters and the gateway's connection bookkeeping must not change.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { rewrapStats } from '../src/proxy/tcp/tunnel.js';
import { startGateway } from './helpers/gateway.js';

const MiB = 1024 * 1024;

function listen(server: net.Server): Promise<number> {
  return new Promise((r) =>
    server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port)),
  );
}

function close(server: net.Server): Promise<void> {
  return new Promise((r) => server.close(() => r()));
}

/** A sink that answers, after the client's FIN, with "<bytes> <sha256>" and then its own FIN. */
function sinkServer(): net.Server {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    const h = crypto.createHash('sha256');
    let n = 0;
    s.on('data', (d: Buffer) => {
      n += d.length;
      h.update(d);
    });
    s.on('end', () => s.end(`${n} ${h.digest('hex')}`));
  });
  return server;
}

function echoServer(): net.Server {
  return net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
}

function config(port: number, extra = ''): string {
  return `global:
  grace: 300ms
  timeouts: { sniff: 100ms }
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]${extra}
    routes:
      - match: { protocol: tcp }
        pool: p
pools:
  p:
    protocol: tcp
    health: { type: none }
    servers:
      - { name: s, address: "127.0.0.1:${port}" }
`;
}

/** Deterministic, non-repeating-looking payload. */
function payload(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = 12345;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Writes `data` in 256 KiB pieces honouring backpressure, then half-closes. */
async function sendAll(s: net.Socket, data: Buffer): Promise<void> {
  for (let o = 0; o < data.length; o += 256 * 1024) {
    if (!s.write(data.subarray(o, o + 256 * 1024))) await new Promise((r) => s.once('drain', r));
  }
  s.end();
}

function collect(s: net.Socket, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const t = setTimeout(() => reject(new Error('no end from the tunnel')), timeoutMs);
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => {
      clearTimeout(t);
      resolve(Buffer.concat(parts));
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

test('a bulk upload is re-wrapped, arrives intact, half-close answers come back, counters stay right', async (t) => {
  const sink = sinkServer();
  const port = await listen(sink);
  const gw = await startGateway(config(port));
  t.after(async () => {
    await gw.stop();
    await close(sink);
  });
  const data = payload(16 * MiB);
  const before = rewrapStats.rewrapped;
  const c = net.connect(gw.port(), '127.0.0.1');
  const reply = collect(c);
  await new Promise((r) => c.once('connect', r));
  await sendAll(c, data);
  const text = (await reply).toString();
  assert.equal(text, `${data.length} ${crypto.createHash('sha256').update(data).digest('hex')}`);
  assert.ok(rewrapStats.rewrapped > before, 'the bulk tunnel was re-wrapped to onread');
  await new Promise((r) => (c.destroyed ? r(null) : c.once('close', r)));
  const rec = await gw.waitFor((r) => r.type === 'access' && r.proto === 'tcp');
  assert.equal(rec.outcome, 'ok');
  assert.equal(rec.bytes_in, data.length);
  assert.equal(rec.bytes_out, text.length);
  const until = Date.now() + 2000;
  while (gw.gateway.view().listeners[0].connections.active !== 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(gw.gateway.view().listeners[0].connections.active, 0, 'the accepted socket was released');
});

test('bulk both ways with a slow reader: every byte echoed in order after the re-wrap', async (t) => {
  const echo = echoServer();
  const port = await listen(echo);
  const gw = await startGateway(config(port));
  t.after(async () => {
    await gw.stop();
    await close(echo);
  });
  const data = payload(12 * MiB);
  // Echoed bytes pending on the client socket at the first big read make it stay on 'data'
  // (the fallback); either way the tunnel must have tried, and carried every byte.
  const before = rewrapStats.rewrapped + rewrapStats.fallback;
  const c = net.connect(gw.port(), '127.0.0.1');
  c.on('error', () => {});
  const parts: Buffer[] = [];
  let got = 0;
  let pausedOnce = false;
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`echo stalled at ${got}`)), 20_000);
    c.on('data', (d: Buffer) => {
      parts.push(d);
      got += d.length;
      // Stop reading for a while mid-way: backpressure must reach the client's writes.
      if (!pausedOnce && got > 4 * MiB) {
        pausedOnce = true;
        c.pause();
        setTimeout(() => c.resume(), 200);
      }
    });
    c.on('end', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  await new Promise((r) => c.once('connect', r));
  await sendAll(c, data);
  await done;
  assert.ok(Buffer.concat(parts).equals(data), 'echo equals what was sent');
  assert.ok(rewrapStats.rewrapped + rewrapStats.fallback > before, 'a re-wrap was tried');
  c.destroy();
});

test('after a re-wrap, maxconn still counts the tunnel, and a graceful stop cuts it', async (t) => {
  const echo = echoServer();
  const port = await listen(echo);
  const gw = await startGateway(config(port, '\n    maxconn: 1'));
  let stopped = false;
  t.after(async () => {
    if (!stopped) await gw.stop();
    await close(echo);
  });
  const before = rewrapStats.rewrapped;
  const c = net.connect(gw.port(), '127.0.0.1');
  c.on('error', () => {});
  let echoed = 0;
  const big = payload(2 * MiB);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no echo')), 10_000);
    c.on('data', (d: Buffer) => {
      echoed += d.length;
      if (echoed >= big.length) {
        clearTimeout(timer);
        resolve();
      }
    });
    c.write(big);
  });
  assert.ok(rewrapStats.rewrapped > before, 'the tunnel was re-wrapped');
  assert.equal(gw.gateway.view().listeners[0].connections.active, 1);
  // The listener is full: a second client is refused, not tunnelled.
  const second = net.connect(gw.port(), '127.0.0.1');
  second.on('error', () => {});
  await new Promise((r) => second.once('close', r));
  assert.ok(gw.gateway.view().listeners[0].connections.refused >= 1);
  const closed = new Promise((r) => c.once('close', r));
  await gw.stop();
  stopped = true;
  await closed;
  const rec = await gw.waitFor((r) => r.type === 'access' && r.proto === 'tcp');
  assert.equal(rec.outcome, 'cut');
  assert.equal(rec.bytes_in, big.length);
  assert.equal(rec.bytes_out, big.length);
});

test('a client socket with writes still queued stays on data events (fallback) and carries both directions', async (t) => {
  // More than loopback's socket buffers can hold (tcp_rmem allows up to 32 MiB here), so
  // the gateway's writes to the non-reading client must queue. 1 MiB blocks, each stamped
  // with its index so reordering shows.
  const block = payload(MiB);
  const down = Buffer.allocUnsafe(96 * MiB);
  for (let i = 0; i < 96; i++) {
    block.copy(down, i * MiB);
    down.writeUInt32BE(i, i * MiB);
  }
  const up = payload(4 * MiB).reverse();
  let backend: net.Socket | null = null;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    backend = s;
    s.on('error', () => {});
    const h = crypto.createHash('sha256');
    let n = 0;
    s.on('data', (d: Buffer) => {
      n += d.length;
      h.update(d);
    });
    s.on('end', () => s.end(`|${n} ${h.digest('hex')}`));
    s.write(down);
  });
  const port = await listen(server);
  const gw = await startGateway(config(port));
  t.after(async () => {
    await gw.stop();
    await close(server);
  });
  const c = net.connect({ port: gw.port(), host: '127.0.0.1', allowHalfOpen: true });
  c.on('error', () => {});
  c.pause(); // not reading: the gateway's writes to this client queue up
  await new Promise((r) => c.once('connect', r));
  // The backend is stalled once the gateway stops reading it, which it does only while its
  // write buffer towards this client holds bytes: wait until the backend's queue stops
  // moving (5 polls 50 ms apart), bounded.
  const until = Date.now() + 15_000;
  let last = -1;
  let still = 0;
  while (still < 5 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    const q = backend === null ? 0 : (backend as net.Socket).writableLength;
    still = q > 0 && q === last ? still + 1 : 0;
    last = q;
  }
  assert.equal(still, 5, 'the backend is stalled behind the non-reading client');
  const rewrapped = rewrapStats.rewrapped;
  const fallback = rewrapStats.fallback;
  const parts: Buffer[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no end')), 20_000);
    c.on('data', (d: Buffer) => parts.push(d));
    c.on('end', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  // The upload flows while this client still reads nothing: the gateway's first full-size
  // read of it finds its writes to the client pending.
  await sendAll(c, up);
  c.resume();
  await ended;
  const all = Buffer.concat(parts);
  assert.ok(all.subarray(0, down.length).equals(down), 'every downloaded byte, in order');
  assert.equal(
    all.subarray(down.length).toString(),
    `|${up.length} ${crypto.createHash('sha256').update(up).digest('hex')}`,
  );
  assert.equal(rewrapStats.rewrapped, rewrapped, 'no re-wrap while writes were queued');
  assert.ok(rewrapStats.fallback > fallback, 'the tunnel stayed on data events');
  c.destroy();
});

test('the idle timer moves to the re-wrapped socket: a silent tunnel is closed after timeouts.tunnel', async (t) => {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.resume(); // takes everything, answers nothing
    s.on('end', () => s.end());
  });
  const port = await listen(server);
  const gw = await startGateway(
    config(port).replace('timeouts: { sniff: 100ms }', 'timeouts: { sniff: 100ms, tunnel: 300ms }'),
  );
  t.after(async () => {
    await gw.stop();
    await close(server);
  });
  const before = rewrapStats.rewrapped;
  const c = net.connect(gw.port(), '127.0.0.1');
  c.on('error', () => {});
  const closed = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the silent tunnel was never closed')), 10_000);
    c.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  c.write(payload(2 * MiB));
  await closed;
  assert.ok(rewrapStats.rewrapped > before, 'the tunnel was re-wrapped');
  const rec = await gw.waitFor((r) => r.type === 'access' && r.proto === 'tcp');
  assert.equal(rec.outcome, 'timeout');
  assert.equal(rec.bytes_in, 2 * MiB);
  const until = Date.now() + 2000;
  while (gw.gateway.view().listeners[0].connections.active !== 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(gw.gateway.view().listeners[0].connections.active, 0);
});
