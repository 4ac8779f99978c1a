// The HTTP/1 proxy writes to client and server sockets below node's Writable
// (src/core/direct-write.ts). These tests drive both of its paths — writes the kernel takes
// at once and writes left queued in libuv while a peer does not read — and check that every
// byte arrives in order, backpressure is released, and a peer vanishing with writes queued
// harms nothing else.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type net from 'node:net';
import { test } from 'node:test';
import { directWriteAvailable, directWriteStats } from '../src/core/direct-write.js';
import { connectRaw, harnessFor, startBackend } from './http1-harness.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Reads `n` content-length responses off `sock` (already flowing) and returns their bodies. */
function readBodies(sock: net.Socket, n: number, ms: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    // Bytes before a head is complete (small), then the body's chunks as they come.
    let head: Buffer = Buffer.alloc(0);
    let body: Buffer[] = [];
    let left = -1;
    const timer = setTimeout(() => done(new Error(`timeout: ${out.length}/${n} responses`)), ms);
    const done = (err: Error | null) => {
      clearTimeout(timer);
      sock.removeListener('data', onData);
      if (err === null) resolve(out);
      else reject(err);
    };
    const onData = (c: Buffer) => {
      let rest: Buffer | null = c;
      while (rest !== null && rest.length > 0) {
        if (left === -1) {
          head = head.length === 0 ? rest : Buffer.concat([head, rest]);
          rest = null;
          const end = head.indexOf('\r\n\r\n');
          if (end === -1) return;
          const m = /\r\ncontent-length: (\d+)/i.exec(head.subarray(0, end).toString('latin1'));
          if (m === null) return done(new Error('response without content-length'));
          left = Number(m[1]);
          rest = head.subarray(end + 4);
          head = Buffer.alloc(0);
          body = [];
          if (left === 0) {
            out.push(Buffer.alloc(0));
            left = -1;
            if (out.length === n) return done(null);
            continue;
          }
        }
        const take: Buffer = rest.length > left ? rest.subarray(0, left) : rest;
        body.push(take);
        left -= take.length;
        rest = rest.length > take.length ? rest.subarray(take.length) : null;
        if (left === 0) {
          out.push(Buffer.concat(body));
          left = -1;
          if (out.length === n) return done(null);
        }
      }
    };
    sock.on('data', onData);
  });
}

/** Waits (at most `ms`) until a write has been left queued since the count was `before`. */
async function queuedSince(before: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (directWriteStats.queued === before && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('direct writes are available on this node', () => {
  assert.equal(directWriteAvailable, true);
});

test('big responses to clients that stop reading queue in libuv and arrive byte-exact, in order', async (t) => {
  const bodies = new Map<string, Buffer>();
  const be = await startBackend('b', undefined, (req, res) => {
    const body = bodies.get(req.url ?? '');
    if (body === undefined) return false;
    res.setHeader('content-length', body.length);
    // Several writes per response: the proxy forwards every upstream read as it comes.
    for (let p = 0; p < body.length; p += 100_000) res.write(body.subarray(p, p + 100_000));
    res.end();
    return true;
  });
  const h = await harnessFor(t, 'p', be);
  const before = { ...directWriteStats };
  const CONNS = 3;
  const PER_CONN = 2;
  await Promise.all(
    Array.from({ length: CONNS }, async (_, c) => {
      const urls = Array.from({ length: PER_CONN }, (_, i) => {
        const url = `/c${c}/r${i}`;
        bodies.set(url, randomBytes(16_000_000 + ((c * 7 + i * 13) % 5) * 1_000_000));
        return url;
      });
      const sock = await connectRaw(h.port);
      try {
        // Not reading fills the kernel buffers (a few MB on loopback; the responses are
        // larger than even generous socket buffer limits): the proxy's writes must queue.
        sock.pause();
        sock.write(urls.map((u) => `GET ${u} HTTP/1.1\r\nhost: t\r\n\r\n`).join(''));
        await queuedSince(before.queued, 5000);
        const answers = readBodies(sock, PER_CONN, 30_000);
        sock.resume();
        const got = await answers;
        assert.deepEqual(
          got.map(sha),
          urls.map((u) => sha(bodies.get(u)!)),
          `connection ${c}`,
        );
      } finally {
        sock.destroy();
      }
    }),
  );
  assert.ok(directWriteStats.queued > before.queued, 'some writes were left queued in libuv');
  assert.ok(directWriteStats.direct > before.direct, 'some writes were taken at once');
});

test('an upload to a backend that does not read queues and arrives byte-exact', async (t) => {
  const be = await startBackend('u', undefined, (req, res) => {
    if (req.method !== 'POST') return false;
    const hash = createHash('sha256');
    req.pause();
    setTimeout(() => {
      req.on('data', (c: Buffer) => hash.update(c));
      req.on('end', () => res.end(hash.digest('hex')));
      req.resume();
    }, 300);
    return true;
  });
  const h = await harnessFor(t, 'p', be);
  const before = directWriteStats.queued;
  const body = randomBytes(32 * 1024 * 1024);
  const sock = await connectRaw(h.port);
  try {
    const answer = readBodies(sock, 1, 30_000);
    sock.write(`POST /up HTTP/1.1\r\nhost: t\r\ncontent-length: ${body.length}\r\n\r\n`);
    for (let p = 0; p < body.length; p += 256 * 1024) sock.write(body.subarray(p, p + 256 * 1024));
    assert.equal((await answer)[0].toString(), sha(body));
  } finally {
    sock.destroy();
  }
  assert.ok(directWriteStats.queued > before, 'the upload writes were left queued in libuv');
});

test('a client vanishing with writes queued is logged and leaves the proxy serving', async (t) => {
  const big = randomBytes(32 * 1024 * 1024);
  const be = await startBackend('v', undefined, (req, res) => {
    if (req.url !== '/big') return false;
    res.setHeader('content-length', big.length);
    res.end(big);
    return true;
  });
  const h = await harnessFor(t, 'p', be);
  const before = directWriteStats.queued;
  const sock = await connectRaw(h.port);
  sock.pause();
  sock.write('GET /big HTTP/1.1\r\nhost: t\r\n\r\n');
  await queuedSince(before, 5000);
  assert.ok(directWriteStats.queued > before, 'the response writes queued');
  sock.destroy();
  const deadline = Date.now() + 5000;
  while (h.records.length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(h.records.length, 1);
  assert.equal(h.records[0].outcome, 'client_reset');
  // The proxy goes on serving, on new connections and with the response whole.
  const next = await connectRaw(h.port);
  try {
    const answers = readBodies(next, 2, 10_000);
    next.write('GET /small HTTP/1.1\r\nhost: t\r\n\r\nGET /big HTTP/1.1\r\nhost: t\r\n\r\n');
    const [small, whole] = await answers;
    assert.equal(small.toString(), 'v:GET:/small');
    assert.equal(sha(whole), sha(big));
  } finally {
    next.destroy();
  }
});
