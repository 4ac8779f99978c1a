// Client reads of every HTTP/1 session land in one shared buffer (session.ts, CLIENT_BUF).
// These tests drive many connections at once through the states where client bytes
// outlive a read — heads split across reads, pipelined requests, body bytes read before
// the upstream is ready, uploads to a backend that reads slowly — and check that every
// request reaches the backend byte-exact and every answer goes back to its own client.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { clientReadStats } from '../src/proxy/http1/session.js';
import { connectRaw, harnessFor, startBackend } from './http1-harness.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** One request to send and what the backend must answer for it. */
interface Planned {
  bytes: Buffer;
  expect: string;
}

function plan(conn: number, i: number): Planned {
  const url = `/c${conn}/r${i}`;
  const kind = (conn + i) % 3;
  if (kind === 0) {
    return {
      bytes: Buffer.from(
        `GET ${url} HTTP/1.1\r\nhost: t\r\nx-pad: ${'p'.repeat((conn * 37 + i * 11) % 300)}\r\n\r\n`,
      ),
      expect: `GET ${url} ${sha('')}`,
    };
  }
  const body = randomBytes(200 + ((conn * 131 + i * 17) % 3000));
  if (kind === 1) {
    return {
      bytes: Buffer.concat([
        Buffer.from(`POST ${url} HTTP/1.1\r\nhost: t\r\ncontent-length: ${body.length}\r\n\r\n`),
        body,
      ]),
      expect: `POST ${url} ${sha(body)}`,
    };
  }
  const a = body.subarray(0, 100);
  const b = body.subarray(100);
  return {
    bytes: Buffer.concat([
      Buffer.from(`PUT ${url} HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n`),
      Buffer.from(`${a.length.toString(16)}\r\n`),
      a,
      Buffer.from(`\r\n${b.length.toString(16)}\r\n`),
      b,
      Buffer.from('\r\n0\r\n\r\n'),
    ]),
    expect: `PUT ${url} ${sha(body)}`,
  };
}

/** Reads `n` content-length responses off `sock` and returns their bodies. */
function readResponses(sock: net.Socket, n: number, ms: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const out: string[] = [];
    const timer = setTimeout(() => done(new Error(`timeout: ${out.length}/${n} responses`)), ms);
    const done = (err: Error | null) => {
      clearTimeout(timer);
      sock.removeListener('data', onData);
      sock.removeListener('error', done);
      if (err === null) resolve(out);
      else reject(err);
    };
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.subarray(0, end).toString('latin1');
        const m = /\r\ncontent-length: (\d+)/i.exec(head);
        if (m === null) return done(new Error(`no content-length: ${head}`));
        const len = Number(m[1]);
        if (buf.length < end + 4 + len) return;
        out.push(buf.subarray(end + 4, end + 4 + len).toString());
        buf = buf.subarray(end + 4 + len);
        if (out.length === n) return done(null);
      }
    };
    sock.on('data', onData);
    sock.on('error', done);
  });
}

/** Writes `data` in pieces of 1-`max` bytes, each on its own turn of the event loop. */
async function dribble(sock: net.Socket, data: Buffer, max: number, seed: number): Promise<void> {
  let pos = 0;
  let x = seed;
  while (pos < data.length) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const n = 1 + (x % max);
    sock.write(data.subarray(pos, pos + n));
    pos += n;
    await new Promise((r) => setImmediate(r));
  }
}

test('many connections: split heads, pipelined and bodied requests reach the backend byte-exact', async (t) => {
  const be = await startBackend('e', undefined, (req, res) => {
    const hash = createHash('sha256');
    req.on('data', (c: Buffer) => hash.update(c));
    req.on('end', () => {
      const text = `${req.method} ${req.url} ${hash.digest('hex')}`;
      // Some answers wait, so that later requests of the connection queue as pipelined bytes.
      setTimeout(() => res.end(text), (req.url?.length ?? 0) % 4 === 0 ? 5 : 0);
    });
    return true;
  });
  const h = await harnessFor(t, 'p', be);
  const before = clientReadStats.shared;
  const CONNS = 16;
  const PER_CONN = 30;
  const runs: Promise<void>[] = [];
  for (let c = 0; c < CONNS; c++) {
    runs.push(
      (async () => {
        const sock = net.connect(h.port, '127.0.0.1');
        sock.setNoDelay(true);
        await new Promise<void>((r) => sock.once('connect', () => r()));
        try {
          const reqs = Array.from({ length: PER_CONN }, (_, i) => plan(c, i));
          // Batches of 1-3 requests, each sent once the previous batch is answered: a batch
          // then arrives while the session waits for a new head (the zero-copy read path),
          // its later requests and bodies in the same reads. Odd connections write a batch
          // whole, even ones dribble it (heads and bodies split across reads).
          for (let i = 0; i < PER_CONN; ) {
            const batch = reqs.slice(i, i + 1 + ((c + i) % 3));
            const answers = readResponses(sock, batch.length, 20_000);
            const bytes = Buffer.concat(batch.map((r) => r.bytes));
            if (c % 2 === 1) sock.write(bytes);
            else await dribble(sock, bytes, 61, c + i + 1);
            assert.deepEqual(
              await answers,
              batch.map((r) => r.expect),
              `connection ${c}, requests ${i}..${i + batch.length - 1}`,
            );
            i += batch.length;
          }
        } finally {
          sock.destroy();
        }
      })(),
    );
  }
  await Promise.all(runs);
  assert.ok(clientReadStats.shared >= before + CONNS, 'the sessions read into the shared buffer');
});

test('uploads to a backend that reads slowly stay byte-exact while other connections read', async (t) => {
  const be = await startBackend('s', undefined, (req, res) => {
    // Big uploads: hold the body unread for a while so the gateway's writes queue.
    if (req.method !== 'POST') return false;
    const h = createHash('sha256');
    req.pause();
    setTimeout(() => {
      req.on('data', (c: Buffer) => h.update(c));
      req.on('end', () => res.end(`${req.url} ${h.digest('hex')}`));
      req.resume();
    }, 150);
    return true;
  });
  const h = await harnessFor(t, 'p', be);
  let stop = false;
  // Small requests on other connections keep overwriting the shared read buffer.
  const chatter = Array.from({ length: 4 }, async (_, k) => {
    const sock = await connectRaw(h.port);
    let n = 0;
    try {
      while (!stop && n < 2000) {
        const answer = readResponses(sock, 1, 10_000);
        sock.write(`GET /chat${k}/${n} HTTP/1.1\r\nhost: t\r\nx-fill: ${'z'.repeat(1000)}\r\n\r\n`);
        assert.equal((await answer)[0], `s:GET:/chat${k}/${n}`);
        n++;
      }
    } finally {
      sock.destroy();
    }
    return n;
  });
  const uploads = Array.from({ length: 4 }, async (_, u) => {
    const body = randomBytes(3 * 1024 * 1024 + u * 7919);
    const sock = await connectRaw(h.port);
    try {
      const answer = readResponses(sock, 1, 30_000);
      sock.write(`POST /up${u} HTTP/1.1\r\nhost: t\r\ncontent-length: ${body.length}\r\n\r\n`);
      sock.write(body);
      assert.equal((await answer)[0], `/up${u} ${sha(body)}`);
    } finally {
      sock.destroy();
    }
  });
  await Promise.all(uploads);
  stop = true;
  const chats = await Promise.all(chatter);
  assert.ok(
    chats.every((n) => n > 0),
    'small requests ran alongside the uploads',
  );
});
