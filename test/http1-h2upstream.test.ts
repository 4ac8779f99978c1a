// HTTP/1 clients → `protocol: h2` pools over the frame-level upstream pool
// (src/proxy/http1/h2-bridge.ts on src/upstream/h2frame-pool.ts): connection reuse, connect
// failures and retries, REFUSED_STREAM and GOAWAY replays, backpressure both ways, server
// resets, and a malformed response head that must not reach the HTTP/1 client.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import { encodeFrame, Flag, FrameType, HpackEncoder } from '../src/codec/http2/index.js';
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

test('a refused stream is replayed once when the request has no body; else 502', async (t) => {
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
  assert.equal(seen.get('/always'), 2, 'replayed once, not more');
  // A body already went upstream: not replayed.
  const c = await get(gw.port, '/with-body', { agent, method: 'POST', body: 'payload' });
  assert.equal(c.status, 502);
  assert.equal(seen.get('/with-body'), 1);
  const d = await get(gw.port, '/fine', { agent });
  assert.equal(d.body, 'ok /fine #1');
  const outcomes = gw.records.map((r) => `${r.path}:${r.status}:${r.outcome}`);
  assert.deepEqual(outcomes, [
    '/once:200:ok',
    '/always:502:server_reset',
    '/with-body:502:server_reset',
    '/fine:200:ok',
  ]);
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
