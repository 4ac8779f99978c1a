// HTTP/1 clients → `protocol: h2` pools over the frame-level upstream pool
// (src/proxy/http1/h2-bridge.ts on src/upstream/h2frame-pool.ts): connection reuse, connect
// failures and retries, REFUSED_STREAM and GOAWAY replays (with the request body kept up to
// limits.retry_buffer), backpressure both ways, server resets, and a malformed response head
// that must not reach the HTTP/1 client.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import {
  ErrorCode,
  encodeFrame,
  Flag,
  FrameType,
  HpackDecoder,
  HpackEncoder,
} from '../src/codec/http2/index.js';
import { rawH2Server } from './helpers/raw-h2-server.js';
import { waitFor } from './helpers/wait.js';
import { get, rawExchange, startHarness } from './http1-harness.js';

type After = { after(fn: () => Promise<void> | void): void };

/** Resolves once `read()` has not changed for `quietMs` (bounded by `maxMs`). */
async function settled(read: () => number, quietMs = 400, maxMs = 8000): Promise<number> {
  const until = Date.now() + maxMs;
  let last = read();
  let since = Date.now();
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    const v = read();
    if (v !== last) {
      last = v;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) break;
  }
  return last;
}

/** A node:http2 h2c backend; `onStream` answers; counts sessions and streams. */
async function h2Server(
  t: After,
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, n: number) => void,
  settings?: http2.Settings,
): Promise<{ port: number; sessions: () => number; streams: () => number }> {
  const server = http2.createServer(settings === undefined ? {} : { settings });
  const live = new Set<http2.ServerHttp2Session>();
  let sessions = 0;
  let streams = 0;
  server.on('session', (s) => {
    sessions++;
    live.add(s);
    s.on('error', () => {});
    s.on('close', () => live.delete(s));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    onStream(stream, headers, ++streams);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(
    () =>
      new Promise<void>((r) => {
        for (const s of live) s.destroy();
        server.close(() => r());
      }),
  );
  return {
    port: (server.address() as net.AddressInfo).port,
    sessions: () => sessions,
    streams: () => streams,
  };
}

function poolYaml(ports: number[], extra = ''): string {
  return `listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes:
      - { match: { protocol: http }, pool: two }
pools:
  two:
    protocol: h2
    balance: first
    health: { type: none }
${extra}    servers:
${ports.map((p, i) => `      - { name: s${i + 1}, address: "127.0.0.1:${p}" }`).join('\n')}
`;
}

async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

test('HTTP/1 requests share one upstream h2 connection; a dead server is retried, else 503', async (t) => {
  const be = await h2Server(t, (stream, h) => {
    stream.respond({ ':status': 200, 'content-length': String(String(h[':path']).length) });
    stream.end(String(h[':path']));
  });
  const dead = await deadPort();
  const gw = await startHarness(poolYaml([dead, be.port]));
  t.after(() => gw.close());
  // One HTTP/1 connection per request (no agent): the upstream side is still one connection.
  for (let i = 0; i < 4; i++) {
    const r = await get(gw.port, `/seq${i}`, { agent: false as unknown as http.Agent });
    assert.equal(r.status, 200);
    assert.equal(r.body, `/seq${i}`);
  }
  const par = await Promise.all(
    Array.from({ length: 8 }, (_, i) => get(gw.port, `/par${i}`, { agent: false as unknown as http.Agent })),
  );
  assert.deepEqual(
    par.map((r) => r.body),
    Array.from({ length: 8 }, (_, i) => `/par${i}`),
  );
  assert.equal(be.sessions(), 1, 'one upstream connection for all requests');
  // s1 is dead: each request was retried on s2 (default retries: connect-failure).
  assert.ok(gw.records.every((r) => r.server === 's2' && r.outcome === 'ok'));

  const gw2 = await startHarness(poolYaml([dead], '    retries: { attempts: 0, on: [] }\n'));
  t.after(() => gw2.close());
  const r = await get(gw2.port, '/x', { agent: false as unknown as http.Agent });
  assert.equal(r.status, 503);
  assert.equal(gw2.records[0].outcome, 'connect_failure');
});

test("a refused stream is replayed within the pool's retry budget, a small request body with it; past it, 502", async (t) => {
  const seen = new Map<string, number>();
  const be = await h2Server(t, (stream, h) => {
    const path = String(h[':path']);
    const n = (seen.get(path) ?? 0) + 1;
    seen.set(path, n);
    if (path === '/always' || (n === 1 && path !== '/fine')) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': 200 });
      stream.end(`ok ${path} #${n}`);
    });
  });
  const gw = await startHarness(poolYaml([be.port]));
  t.after(() => gw.close());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const a = await get(gw.port, '/once', { agent });
  assert.equal(a.status, 200);
  assert.equal(a.body, 'ok /once #2');
  const b = await get(gw.port, '/always', { agent });
  assert.equal(b.status, 502);
  assert.equal(seen.get('/always'), 3, 'replayed retries.attempts (default 2) times, not more');
  // A body within limits.retry_buffer was kept: replayed too.
  const c = await get(gw.port, '/with-body', { agent, method: 'POST', body: 'payload' });
  assert.equal(c.status, 200);
  assert.equal(c.body, 'ok /with-body #2');
  assert.equal(seen.get('/with-body'), 2);
  const d = await get(gw.port, '/fine', { agent });
  assert.equal(d.body, 'ok /fine #1');
  const outcomes = gw.records.map((r) => `${r.path}:${r.status}:${r.outcome}`);
  assert.deepEqual(outcomes, [
    '/once:200:ok',
    '/always:502:server_reset',
    '/with-body:200:ok',
    '/fine:200:ok',
  ]);
});

test('a refused stream is replayed on another server when the pool has one; retries.attempts 0 turns the replay off', async (t) => {
  const refusing = new Map<string, number>();
  const s1 = await h2Server(t, (stream, h) => {
    const path = String(h[':path']);
    refusing.set(path, (refusing.get(path) ?? 0) + 1);
    stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
  });
  const s2 = await h2Server(t, (stream, h) => {
    const parts: Buffer[] = [];
    stream.on('data', (c: Buffer) => parts.push(c));
    stream.on('end', () => {
      stream.respond({ ':status': 200 });
      stream.end(`s2 ${h[':path']} ${Buffer.concat(parts).toString()}`);
    });
  });
  // balance: first — every request goes to s1 unless s1 is avoided.
  const gw = await startHarness(poolYaml([s1.port, s2.port]));
  t.after(() => gw.close());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const r = await get(gw.port, '/moved', { agent, method: 'POST', body: 'the body' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 's2 /moved the body', 'replayed on s2 with its body');
  assert.equal(refusing.get('/moved'), 1, 's1 saw it once');
  assert.equal(gw.records.at(-1)?.server, 's2');

  const off = await startHarness(poolYaml([s1.port, s2.port], '    retries: { attempts: 0 }\n'));
  t.after(() => off.close());
  const o = await get(off.port, '/no-retry', { agent: false as unknown as http.Agent });
  assert.equal(o.status, 502);
  assert.equal(refusing.get('/no-retry'), 1, 'not replayed');
  assert.equal(off.records.at(-1)?.outcome, 'server_reset');
});

test("streams above a GOAWAY's last-stream-id are replayed on a new connection; those below finish", async (t) => {
  let release: (() => void) | undefined;
  const be = await h2Server(t, (stream, h, n) => {
    if (h[':path'] === '/hold') {
      release = () => {
        stream.respond({ ':status': 200 });
        stream.end('held');
      };
      return;
    }
    if (n === 2) {
      // Stream 1 (/hold) was processed, this one (stream 3) was not.
      stream.session?.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
      setTimeout(() => release?.(), 20);
      return;
    }
    stream.respond({ ':status': 200 });
    stream.end(`served ${h[':path']}`);
  });
  const gw = await startHarness(poolYaml([be.port]));
  t.after(() => gw.close());
  const held = get(gw.port, '/hold', { agent: false as unknown as http.Agent });
  await waitFor(() => release !== undefined);
  const r = await get(gw.port, '/g', { agent: false as unknown as http.Agent });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'served /g');
  assert.equal((await held).body, 'held', 'the stream below last-stream-id finished on the old connection');
  assert.equal(be.sessions(), 2, 'the replay went out on a new connection');
  await waitFor(() => gw.records.length === 2);
  assert.ok(gw.records.every((x) => x.outcome === 'ok'));
  // The server is not marked down: the next request is served too.
  const r2 = await get(gw.port, '/g2', { agent: false as unknown as http.Agent });
  assert.equal(r2.body, 'served /g2');
});

test('backpressure both ways: a client that does not read stops the server, and a server that does not read stops the client', async (t) => {
  const TOTAL = 48 << 20;
  const CHUNK = Buffer.alloc(1 << 20, 0x61);
  let written = 0;
  let received = 0;
  let readUpload: (() => void) | undefined;
  const be = await h2Server(t, (stream, h) => {
    if (h[':path'] === '/down') {
      stream.respond({ ':status': 200, 'content-length': String(TOTAL) });
      const pump = (): void => {
        while (written < TOTAL) {
          written += CHUNK.length;
          if (!stream.write(CHUNK)) {
            stream.once('drain', pump);
            return;
          }
        }
        stream.end();
      };
      pump();
      return;
    }
    // /up: read nothing until told to.
    stream.pause();
    readUpload = () => {
      stream.on('data', (d: Buffer) => {
        received += d.length;
      });
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(`got ${received}`);
      });
      stream.resume();
    };
  });
  const gw = await startHarness(poolYaml([be.port]));
  t.after(() => gw.close());

  // Download to a client that reads nothing.
  const down = net.connect(gw.port, '127.0.0.1');
  down.on('error', () => {});
  t.after(() => down.destroy());
  await new Promise<void>((r) => down.once('connect', () => r()));
  down.pause();
  down.write('GET /down HTTP/1.1\r\nHost: x\r\n\r\n');
  await waitFor(() => written > 0);
  const stalled = await settled(() => written);
  assert.ok(
    stalled < 16 << 20,
    `the server wrote ${stalled} bytes of ${TOTAL} to a client that reads nothing`,
  );
  let got = 0;
  let head = '';
  down.on('data', (d: Buffer) => {
    if (head === '' || !head.includes('\r\n\r\n')) {
      head += d.toString('latin1');
      const i = head.indexOf('\r\n\r\n');
      if (i >= 0) got += Buffer.byteLength(head, 'latin1') - i - 4;
      return;
    }
    got += d.length;
  });
  down.resume();
  await waitFor(() => got >= TOTAL, 20_000);
  assert.equal(got, TOTAL);
  assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);

  // Upload to a server that reads nothing.
  const up = net.connect(gw.port, '127.0.0.1');
  up.on('error', () => {});
  t.after(() => up.destroy());
  await new Promise<void>((r) => up.once('connect', () => r()));
  let sent = 0;
  let offered = 0;
  const reply: Buffer[] = [];
  up.on('data', (d: Buffer) => reply.push(d));
  up.write(`POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${TOTAL}\r\n\r\n`);
  const push = (): void => {
    while (offered < TOTAL) {
      offered += CHUNK.length;
      const ok = up.write(CHUNK, () => {
        sent += CHUNK.length;
      });
      if (!ok) {
        up.once('drain', push);
        return;
      }
    }
  };
  push();
  await waitFor(() => readUpload !== undefined);
  const stuck = await settled(() => sent);
  assert.ok(stuck < 16 << 20, `the client sent ${stuck} bytes of ${TOTAL} to a server that reads nothing`);
  readUpload!();
  await waitFor(() => Buffer.concat(reply).toString('latin1').includes(`got ${TOTAL}`), 20_000);
  assert.equal(received, TOTAL);
});

test('a server reset is 502 before the response head, and cuts the client after it', async (t) => {
  const be = await h2Server(t, (stream, h) => {
    if (h[':path'] === '/early') {
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    stream.respond({ ':status': 200 });
    stream.write('partial');
    // destroy() resets without ending the stream (close() would send END_STREAM first).
    setTimeout(() => stream.destroy(new Error('backend failure')), 50);
  });
  const gw = await startHarness(poolYaml([be.port]));
  t.after(() => gw.close());
  const a = await get(gw.port, '/early', { agent: false as unknown as http.Agent });
  assert.equal(a.status, 502);
  const out = await rawExchange(gw.port, 'GET /late HTTP/1.1\r\nHost: x\r\n\r\n', 3000);
  assert.match(out, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(out, /transfer-encoding: chunked\r\n/);
  assert.ok(out.includes('7\r\npartial\r\n'), out);
  assert.ok(
    !out.includes('0\r\n\r\n'),
    `no terminating chunk: the client sees a cut response: ${JSON.stringify(out)}`,
  );
  await waitFor(() => gw.records.length === 2);
  assert.deepEqual(
    gw.records.map((r) => `${r.path}:${r.outcome}`),
    ['/early:server_reset', '/late:server_reset'],
  );
});

test('a response field with CR/LF from the server is refused with 502, never written to the client', async (t) => {
  // A raw HTTP/2 server (node:http2 would refuse to send such a value).
  const raw = await rawH2Server(t, (s) => {
    const enc = new HpackEncoder();
    return (f) => {
      if (f.type !== FrameType.HEADERS) return;
      const n = enc.encode({ ':status': '200', 'x-evil': 'a\r\nset-cookie: pwned=1' });
      const block = Buffer.from(enc.buf.subarray(0, n));
      s.write(encodeFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, f.streamId, block));
    };
  });
  const gw = await startHarness(poolYaml([raw.port]));
  t.after(() => gw.close());
  const out = await rawExchange(gw.port, 'GET /evil HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 502 /);
  assert.ok(!out.includes('pwned'), out);
  assert.equal(gw.records[0].outcome, 'bad_response');
});

/**
 * A raw HTTP/2 server for replay tests. A request with `x-refuse: <rst|goaway>@<bytes|end>`
 * has its first stream per path refused — RST_STREAM(REFUSED_STREAM), or GOAWAY with
 * last-stream-id 0 — once that many body bytes (or the whole body) arrived; every other
 * stream is answered `got <n>` when its body ended. Windows are credited as DATA arrives.
 */
async function replayServer(t: After): Promise<{
  port: number;
  /** Bodies of the streams that were answered, by path. */
  bodies: Map<string, Buffer>;
  /** Streams seen, by path. */
  streams: Map<string, number>;
  refused: Set<string>;
  /** Resolves as the server refuses a stream of `path` (in the same turn). */
  refusal: (path: string) => Promise<void>;
  /**
   * The server's next connection is accepted but not read (so no SETTINGS: the gateway
   * cannot use it) until `release()`; `accepted` resolves as it comes.
   */
  holdNext: () => { accepted: Promise<void>; release: () => void };
  connections: () => number;
}> {
  const bodies = new Map<string, Buffer>();
  const streams = new Map<string, number>();
  const refused = new Set<string>();
  const onRefusal = new Map<string, () => void>();
  let connections = 0;
  let onConnection: ((sock: net.Socket, hello: () => void) => void) | undefined;
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const raw = await rawH2Server(t, (sock) => {
    connections++;
    // The server's first SETTINGS (the helper's empty one follows): a 16 KiB stream window,
    // so a replayed body waits for WINDOW_UPDATEs like the rest.
    const hello = (): void => {
      const iw = Buffer.alloc(6);
      iw.writeUInt16BE(0x4, 0);
      iw.writeUInt32BE(16_384, 2);
      sock.write(encodeFrame(FrameType.SETTINGS, 0, 0, iw));
    };
    if (onConnection !== undefined) onConnection(sock, hello);
    else hello();
    const enc = new HpackEncoder();
    const dec = new HpackDecoder();
    type St = { path: string; parts: Buffer[]; n: number; refuse: string | undefined };
    const live = new Map<number, St>();
    const refuse = (id: number, st: St): void => {
      live.delete(id);
      refused.add(st.path);
      onRefusal.get(st.path)?.();
      if (st.refuse!.startsWith('goaway')) {
        sock.write(encodeFrame(FrameType.GOAWAY, 0, 0, Buffer.concat([u32(0), u32(ErrorCode.NO_ERROR)])));
      } else sock.write(encodeFrame(FrameType.RST_STREAM, 0, id, u32(ErrorCode.REFUSED_STREAM)));
    };
    const ended = (id: number, st: St): void => {
      if (st.refuse?.endsWith('@end')) {
        refuse(id, st);
        return;
      }
      live.delete(id);
      const body = Buffer.concat(st.parts);
      bodies.set(st.path, body);
      const text = Buffer.from(`got ${body.length}`);
      const n = enc.encode({ ':status': '200', 'content-length': String(text.length) });
      sock.write(encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, id, Buffer.from(enc.buf.subarray(0, n))));
      sock.write(encodeFrame(FrameType.DATA, Flag.END_STREAM, id, text));
    };
    return (f) => {
      const id = f.streamId;
      switch (f.type) {
        case FrameType.HEADERS: {
          const st0 = live.get(id);
          if (st0 !== undefined) {
            // Request trailers.
            if ((f.flags & Flag.END_STREAM) !== 0) ended(id, st0);
            return;
          }
          assert.equal(dec.decode(f.payload, 0, f.payload.length), 0);
          let path = '';
          let how: string | undefined;
          for (let i = 0; i < dec.count; i++) {
            if (dec.names[i] === ':path') path = dec.values[i];
            else if (dec.names[i] === 'x-refuse') how = dec.values[i];
          }
          streams.set(path, (streams.get(path) ?? 0) + 1);
          const st: St = { path, parts: [], n: 0, refuse: refused.has(path) ? undefined : how };
          live.set(id, st);
          if (st.refuse?.endsWith('@0')) refuse(id, st);
          else if ((f.flags & Flag.END_STREAM) !== 0) ended(id, st);
          return;
        }
        case FrameType.DATA: {
          const len = f.payload.length;
          // The connection window counts DATA of every stream, refused ones too.
          if (len > 0) sock.write(encodeFrame(FrameType.WINDOW_UPDATE, 0, 0, u32(len)));
          const st = live.get(id);
          if (st === undefined) return;
          if (len > 0) {
            st.parts.push(Buffer.from(f.payload));
            st.n += len;
          }
          if (
            st.refuse !== undefined &&
            !st.refuse.endsWith('@end') &&
            st.n >= Number(st.refuse.split('@')[1])
          ) {
            refuse(id, st);
            return;
          }
          if ((f.flags & Flag.END_STREAM) !== 0) ended(id, st);
          else if (len > 0) sock.write(encodeFrame(FrameType.WINDOW_UPDATE, 0, id, u32(len)));
          return;
        }
        case FrameType.PING:
          if ((f.flags & Flag.ACK) === 0) sock.write(encodeFrame(FrameType.PING, Flag.ACK, 0, f.payload));
          return;
      }
    };
  });
  return {
    port: raw.port,
    bodies,
    streams,
    refused,
    refusal: (path) => new Promise<void>((r) => onRefusal.set(path, r)),
    holdNext: () => {
      let release = (): void => {};
      const accepted = new Promise<void>((r) => {
        onConnection = (sock, hello) => {
          onConnection = undefined;
          // Paused before the helper adds its 'data' listener (which then does not resume
          // it): no preface read, no SETTINGS sent.
          sock.pause();
          release = () => {
            hello();
            sock.resume();
          };
          r();
        };
      });
      return { accepted, release: () => release() };
    },
    connections: () => connections,
  };
}

/** An HTTP/1 upload through node:http: `chunks` written one by one (awaiting drain). */
async function upload(
  port: number,
  path: string,
  refuse: string,
  chunks: Buffer[],
  opts: { contentLength?: number; between?: (i: number) => Promise<void> } = {},
): Promise<{ status: number; body: string }> {
  const headers: http.OutgoingHttpHeaders = { 'x-refuse': refuse };
  if (opts.contentLength !== undefined) headers['content-length'] = String(opts.contentLength);
  const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent: false, headers });
  const res = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (r) => {
      const parts: Buffer[] = [];
      r.on('data', (c: Buffer) => parts.push(c));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
      r.on('error', reject);
    });
  });
  for (let i = 0; i < chunks.length; i++) {
    if (opts.between !== undefined) await opts.between(i);
    if (!req.write(chunks[i])) await new Promise<void>((r) => req.once('drain', () => r()));
  }
  req.end();
  return res;
}

/** `total` random bytes cut into pieces of `size`. */
function pieces(total: number, size: number): { all: Buffer; chunks: Buffer[] } {
  const all = randomBytes(total);
  const chunks: Buffer[] = [];
  for (let p = 0; p < total; p += size) chunks.push(all.subarray(p, Math.min(total, p + size)));
  return { all, chunks };
}

test('a refused stream is replayed with its kept body: chunked and Content-Length uploads arrive byte-exact', {
  timeout: 20_000,
}, async (t) => {
  const be = await replayServer(t);
  const gw = await startHarness(poolYaml([be.port]));
  t.after(() => gw.close());

  // Chunked, refused once the whole body (and END_STREAM) arrived: the replay ends it too.
  const a = pieces(40_000, 7_000);
  const ra = await upload(gw.port, '/chunked', 'rst@end', a.chunks);
  assert.equal(ra.status, 200);
  assert.equal(ra.body, `got ${a.all.length}`);
  assert.ok(be.refused.has('/chunked'));
  assert.equal(be.streams.get('/chunked'), 2);
  assert.ok(be.bodies.get('/chunked')!.equals(a.all), 'the replayed chunked body is byte-exact');

  // Content-Length, refused mid-body (after 10,000 bytes), up to the whole default 64 KiB.
  const b = pieces(65_536, 16_384);
  const rb = await upload(gw.port, '/length', 'rst@10000', b.chunks, { contentLength: b.all.length });
  assert.equal(rb.status, 200);
  assert.equal(rb.body, `got ${b.all.length}`);
  assert.equal(be.streams.get('/length'), 2);
  assert.ok(be.bodies.get('/length')!.equals(b.all), 'the replayed Content-Length body is byte-exact');

  // Above a GOAWAY's last-stream-id: replayed with its body on a new connection.
  const c = pieces(30_000, 10_000);
  const rc = await upload(gw.port, '/goaway', 'goaway@end', c.chunks, { contentLength: c.all.length });
  assert.equal(rc.status, 200);
  assert.ok(be.bodies.get('/goaway')!.equals(c.all));
  assert.equal(be.connections(), 2, 'the GOAWAY replay went out on a new connection');

  await waitFor(() => gw.records.length === 3);
  assert.deepEqual(
    gw.records.map((r) => `${r.path}:${r.status}:${r.outcome}`),
    ['/chunked:200:ok', '/length:200:ok', '/goaway:200:ok'],
  );
});

test('a refused stream whose body outgrew limits.retry_buffer is answered 502, not replayed', {
  timeout: 20_000,
}, async (t) => {
  const be = await replayServer(t);
  const gw = await startHarness(poolYaml([be.port]));
  t.after(() => gw.close());
  const big = pieces(100_000, 20_000);
  const r = await upload(gw.port, '/big', 'rst@end', big.chunks, { contentLength: big.all.length });
  assert.equal(r.status, 502);
  assert.equal(r.body, 'Bad Gateway\n');
  assert.equal(be.streams.get('/big'), 1, 'not replayed');
  // A chunked body under a smaller configured limit, refused by GOAWAY.
  const gw2 = await startHarness(
    poolYaml([be.port]).replace(
      '    bind: ["127.0.0.1:0"]\n',
      '    bind: ["127.0.0.1:0"]\n    limits: { retry_buffer: 8k }\n',
    ),
  );
  t.after(() => gw2.close());
  const mid = pieces(20_000, 5_000);
  const r2 = await upload(gw2.port, '/mid', 'goaway@end', mid.chunks);
  assert.equal(r2.status, 502);
  assert.equal(be.streams.get('/mid'), 1, 'not replayed');
  await waitFor(() => gw.records.length === 1 && gw2.records.length === 1);
  for (const rec of [gw.records[0], gw2.records[0]]) {
    assert.equal(rec.status, 502);
    assert.equal(rec.outcome, 'error');
    assert.equal(rec.detail, 'request body too large to replay on another server');
  }
});

test('a stream refused while the upload is still streaming is replayed, and the rest follows it', {
  timeout: 20_000,
}, async (t) => {
  const be = await replayServer(t);
  const gw = await startHarness(poolYaml([be.port]));
  t.after(() => gw.close());
  // The rest of the body waits until the replay's head and kept body reached the server
  // (20 KB kept: more than the 16 KiB window, so the replay itself waits for WINDOW_UPDATEs),
  // then 400 KB more: many stream windows after the replayed part.
  for (const [path, refuse, chunked] of [
    ['/stream-rst', 'rst@16000', true],
    ['/stream-goaway', 'goaway@16000', false],
  ] as const) {
    const data = pieces(420_000, 4_000);
    const r = await upload(gw.port, path, refuse, data.chunks, {
      contentLength: chunked ? undefined : data.all.length,
      between: async (i) => {
        if (i === 5) await waitFor(() => be.refused.has(path) && be.streams.get(path) === 2);
      },
    });
    assert.equal(r.status, 200, `${path} ${JSON.stringify(gw.records.at(-1))}`);
    assert.equal(r.body, `got ${data.all.length}`, path);
    assert.equal(be.streams.get(path), 2, path);
    assert.ok(be.bodies.get(path)!.equals(data.all), `${path}: the whole body arrived byte-exact`);
  }
  await waitFor(() => gw.records.length === 2);
  assert.ok(gw.records.every((r) => r.outcome === 'ok' && r.status === 200));
});

test('body bytes the client sends while a replay waits for its new connection follow the replayed part', {
  timeout: 20_000,
}, async (t) => {
  const be = await replayServer(t);
  const gw = await startHarness(poolYaml([be.port]));
  t.after(() => gw.close());
  // The upstream connection is up before the uploads.
  assert.equal((await get(gw.port, '/warm', { agent: false as unknown as http.Agent })).status, 200);
  for (const [path, chunked] of [
    ['/wait-length', false],
    ['/wait-chunked', true],
  ] as const) {
    // The live connection is refused by GOAWAY at the first DATA; the replay's new connection
    // (opened only then) is held silent while 32 KB more are sent, then released.
    const hold = be.holdNext();
    const data = pieces(200_000, 4_000);
    const r = await upload(gw.port, path, 'goaway@1', data.chunks, {
      contentLength: chunked ? undefined : data.all.length,
      between: async (i) => {
        if (i === 1) await hold.accepted;
        else if (i === 9) {
          // Bounded wait for bytes that should not go anywhere yet, then the SETTINGS.
          await new Promise((r) => setTimeout(r, 100));
          hold.release();
          await waitFor(() => be.streams.get(path) === 2);
        }
      },
    });
    assert.equal(r.status, 200, `${path} ${JSON.stringify(gw.records.at(-1))}`);
    assert.equal(r.body, `got ${data.all.length}`, path);
    assert.ok(be.bodies.get(path)!.equals(data.all), `${path}: the whole body arrived byte-exact`);
  }
});
