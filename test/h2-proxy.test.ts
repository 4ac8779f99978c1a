// Plain HTTP/2 through the proxy and the upstream session pool: forwarding rules, request
// timeout, GOAWAY replay, SETTINGS_MAX_CONCURRENT_STREAMS, idle close, PING, backpressure,
// and the client-side limits (streams, header list size, CONTINUATION flood).
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import { startHarness, yamlFor } from './h2-harness.js';
import { waitFor } from './helpers/wait.js';

type After = { after(fn: () => Promise<void> | void): void };

interface RawBackend {
  server: http2.Http2Server;
  address: string;
  sessions: http2.Http2Session[];
  pings: number;
}

async function rawBackend(
  t: After,
  onStream: (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders, b: RawBackend) => void,
  opts: http2.ServerOptions = {},
): Promise<RawBackend> {
  const server = http2.createServer(opts);
  const b: RawBackend = { server, address: '', sessions: [], pings: 0 };
  server.on('session', (s) => {
    b.sessions.push(s);
    s.on('error', () => {});
    s.on('ping', () => {
      b.pings++;
    });
  });
  server.on('stream', (s, h) => {
    s.on('error', () => {});
    onStream(s, h, b);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  t.after(() => {
    for (const s of b.sessions) s.destroy();
    server.close();
  });
  return b;
}

async function gateway(t: After, address: string, extra: Parameters<typeof yamlFor>[1] = {}) {
  const h = await startHarness(yamlFor([{ name: 'b1', address }], extra));
  t.after(() => h.stop());
  return h;
}

function connect(t: After, port: number): http2.ClientHttp2Session {
  const s = http2.connect(`http://127.0.0.1:${port}`);
  s.on('error', () => {});
  t.after(() => s.destroy());
  return s;
}

function fetch(
  s: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer | string,
): Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer; trailers?: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = s.request(headers, { endStream: body === undefined });
    const chunks: Buffer[] = [];
    let h: http2.IncomingHttpHeaders = {};
    let tr: http2.IncomingHttpHeaders | undefined;
    req.on('response', (x) => {
      h = x;
    });
    req.on('trailers', (x) => {
      tr = x;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ headers: h, body: Buffer.concat(chunks), trailers: tr }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

test('plain HTTP/2: method, path, body, headers both ways, trailers; hop-by-hop removed, xff appended', async (t) => {
  let seen: http2.IncomingHttpHeaders = {};
  const b = await rawBackend(t, (s, h) => {
    seen = h;
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      s.respond({ ':status': 201, 'x-reply': 'r' }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'x-sum': String(Buffer.concat(chunks).length) }));
      s.end(`echo:${Buffer.concat(chunks)}`);
    });
  });
  const h = await gateway(t, b.address);
  const c = connect(t, h.port);
  const r = await fetch(
    c,
    { ':method': 'PUT', ':path': '/a/b?c=1', 'x-forwarded-for': '10.0.0.9', 'x-custom': 'v', te: 'trailers' },
    'hello',
  );
  assert.equal(r.headers[':status'], 201);
  assert.equal(r.headers['x-reply'], 'r');
  assert.equal(r.body.toString(), 'echo:hello');
  assert.equal(r.trailers?.['x-sum'], '5');
  assert.equal(seen[':method'], 'PUT');
  assert.equal(seen[':path'], '/a/b?c=1');
  assert.equal(seen['x-custom'], 'v');
  assert.equal(seen.te, 'trailers');
  assert.equal(seen['x-forwarded-for'], '10.0.0.9, 127.0.0.1');
  const rec = h.records.at(-1)!;
  assert.equal(rec.proto, 'h2');
  assert.equal(rec.method, 'PUT');
  assert.equal(rec.status, 201);
  assert.equal(rec.bytes_in, 5);
  assert.equal(rec.bytes_out, 10);
});

test('timeouts.request bounds a plain HTTP/2 request: 504 and the backend stream is cancelled', async (t) => {
  let cancelled = false;
  const b = await rawBackend(t, (s) => {
    s.on('close', () => {
      cancelled = s.rstCode === http2.constants.NGHTTP2_CANCEL;
    });
  });
  const h = await gateway(t, b.address, { listener: '    timeouts: { request: 200ms }' });
  const r = await fetch(connect(t, h.port), { ':path': '/slow' });
  assert.equal(r.headers[':status'], 504);
  await waitFor(() => cancelled);
  assert.equal(h.records.at(-1)?.outcome, 'timeout');
});

test('upstream GOAWAY: in-flight streams finish, streams above last-stream-id are replayed, server stays up', async (t) => {
  let held: http2.ServerHttp2Stream | undefined;
  const b = await rawBackend(t, (s, hd, be) => {
    if (hd[':path'] === '/hold') {
      held = s;
      return;
    }
    const sess = s.session!;
    if (be.sessions.indexOf(sess) === 0 && !sess.closed) {
      // Not processed: GOAWAY with last-stream-id = the held stream (1); this one is above it.
      sess.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
      return;
    }
    s.respond({ ':status': 200 });
    s.end('second');
  });
  const h = await gateway(t, b.address, { pool: '    health: { type: none }\n    retries: { attempts: 0 }' });
  const c = connect(t, h.port);
  const first = fetch(c, { ':path': '/hold' });
  await waitFor(() => held !== undefined);
  const second = await fetch(c, { ':path': '/next' });
  assert.equal(second.body.toString(), 'second', 'replayed on a new session despite retries: 0');
  held!.respond({ ':status': 200 });
  held!.end('first');
  assert.equal((await first).body.toString(), 'first');
  assert.equal(b.sessions.length, 2);
  assert.equal(h.pools.get('p')!.members[0].health, 'up');
  assert.equal(h.records.find((r) => r.path === '/next')?.retries, 1);
});

test('the server SETTINGS_MAX_CONCURRENT_STREAMS is respected: more sessions open when one is full', async (t) => {
  const open = new Map<http2.Http2Session, number>();
  let maxPerSession = 0;
  const pending: http2.ServerHttp2Stream[] = [];
  const b = await rawBackend(
    t,
    (s) => {
      const sess = s.session!;
      const n = (open.get(sess) ?? 0) + 1;
      open.set(sess, n);
      maxPerSession = Math.max(maxPerSession, n);
      s.on('close', () => open.set(sess, (open.get(sess) ?? 1) - 1));
      pending.push(s);
    },
    { settings: { maxConcurrentStreams: 2 } },
  );
  const h = await gateway(t, b.address);
  const c = connect(t, h.port);
  const all = Array.from({ length: 6 }, (_, i) => fetch(c, { ':path': `/r${i}` }));
  await waitFor(() => pending.length === 6);
  for (const s of pending) {
    s.respond({ ':status': 200 });
    s.end('ok');
  }
  const res = await Promise.all(all);
  assert.ok(res.every((r) => Number(r.headers[':status']) === 200));
  assert.ok(maxPerSession <= 2, `a session carried ${maxPerSession} streams`);
  assert.ok(b.sessions.length >= 3, `${b.sessions.length} sessions`);
});

test('idle upstream sessions close after server_idle; PINGs check live ones', async (t) => {
  const b = await rawBackend(t, (s) => {
    s.respond({ ':status': 200 });
    s.end('ok');
  });
  const h = await gateway(t, b.address, {
    pool: '    health: { type: none }\n    timeouts: { server_idle: 1500ms }',
  });
  await fetch(connect(t, h.port), { ':path': '/' });
  assert.equal(h.upstream.sessionCount(), 1);
  await waitFor(() => b.pings > 0, 4000); // harness pool: PING after 1 s without one
  await waitFor(() => h.upstream.sessionCount() === 0, 4000);
  await waitFor(() => b.sessions[0].closed || b.sessions[0].destroyed, 2000);
});

test('a slow reader does not make the gateway buffer without bound', async (t) => {
  let written = 0;
  let stalled = false;
  const b = await rawBackend(t, (s) => {
    s.respond({ ':status': 200 });
    const chunk = Buffer.alloc(64 * 1024);
    const pump = (): void => {
      while (written < 64 << 20) {
        written += chunk.length;
        if (!s.write(chunk)) {
          const timer = setTimeout(() => {
            stalled = true;
          }, 300);
          s.once('drain', () => {
            clearTimeout(timer);
            pump();
          });
          return;
        }
      }
      s.end();
    };
    pump();
  });
  const h = await gateway(t, b.address);
  const c = connect(t, h.port);
  const req = c.request({ ':path': '/big' });
  req.on('error', () => {});
  req.pause(); // never reads
  await waitFor(() => stalled, 5000);
  assert.ok(written < 8 << 20, `backend wrote ${written} bytes to a client that reads nothing`);
  req.close(http2.constants.NGHTTP2_CANCEL);
});

test('client limits: SETTINGS advertise h2_streams and the header list size; oversize headers never reach the backend', async (t) => {
  let calls = 0;
  const b = await rawBackend(t, (s) => {
    calls++;
    s.respond({ ':status': 200 });
    s.end('ok');
  });
  const h = await gateway(t, b.address, { listener: '    limits: { h2_streams: 7, header_bytes: 4096 }' });
  const c = connect(t, h.port);
  await new Promise<void>((r) => c.once('remoteSettings', () => r()));
  assert.equal(c.remoteSettings.maxConcurrentStreams, 7);
  assert.equal(c.remoteSettings.maxHeaderListSize, 4096);
  const big = await new Promise<string>((resolve) => {
    const req = c.request({ ':path': '/', 'x-big': 'a'.repeat(8000) });
    req.on('response', (x) => resolve(`status ${x[':status']}`));
    req.on('error', (e: Error) => resolve(`error ${e.message}`));
    req.on('close', () => resolve(`closed ${req.rstCode}`));
    req.resume();
  });
  assert.doesNotMatch(big, /status 200/);
  assert.equal(calls, 0);
  const ok = await fetch(connect(t, h.port), { ':path': '/' });
  assert.equal(ok.headers[':status'], 200);
});

test('CONTINUATION flood: the connection is closed, the gateway keeps serving', async (t) => {
  const b = await rawBackend(t, (s) => {
    s.respond({ ':status': 200 });
    s.end('ok');
  });
  const h = await gateway(t, b.address);
  const sock = net.connect(h.port, '127.0.0.1');
  sock.on('error', () => {});
  t.after(() => sock.destroy());
  await new Promise<void>((r) => sock.on('connect', () => r()));
  const frame = (type: number, flags: number, stream: number, payload: Buffer): Buffer => {
    const f = Buffer.alloc(9 + payload.length);
    f.writeUIntBE(payload.length, 0, 3);
    f[3] = type;
    f[4] = flags;
    f.writeUInt32BE(stream, 5);
    payload.copy(f, 9);
    return f;
  };
  sock.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
  sock.write(frame(4, 0, 0, Buffer.alloc(0)));
  // HEADERS without END_HEADERS (":method GET" indexed = 0x82), then CONTINUATIONs of
  // literal headers that never end.
  sock.write(frame(1, 0, 1, Buffer.from([0x82])));
  const lit = Buffer.concat([
    Buffer.from([0x40, 3]),
    Buffer.from('x-a'),
    Buffer.from([100]),
    Buffer.alloc(100, 97),
  ]);
  let closed = false;
  sock.on('close', () => {
    closed = true;
  });
  for (let i = 0; i < 5000 && !closed && sock.writable; i++) {
    sock.write(frame(9, 0, 1, lit));
    if (i % 100 === 99) await new Promise((r) => setImmediate(r));
  }
  await waitFor(() => closed, 5000);
  const ok = await fetch(connect(t, h.port), { ':path': '/' });
  assert.equal(ok.headers[':status'], 200);
});

test('HTTP/2 client to an h1 pool: requests bridged to HTTP/1.1; gRPC to an h1 pool is UNAVAILABLE', async (t) => {
  const httpMod = await import('node:http');
  let seen: import('node:http').IncomingHttpHeaders = {};
  const srv = httpMod.createServer((req, res) => {
    seen = req.headers;
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c;
    });
    req.on('end', () => {
      res.setHeader('x-h1', 'yes');
      res.end(`${req.method} ${req.url} ${body}`);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => {
    srv.closeAllConnections();
    srv.close();
  });
  const address = `127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
  const h = await startHarness(
    yamlFor([{ name: 'w1', address }]).replace('protocol: h2\n    balance', 'protocol: h1\n    balance'),
  );
  t.after(() => h.stop());
  const c = connect(t, h.port);
  const r = await fetch(c, { ':method': 'POST', ':path': '/form?x=1', 'x-forwarded-for': '10.1.1.1' }, 'a=b');
  assert.equal(r.headers[':status'], 200);
  assert.equal(r.headers['x-h1'], 'yes');
  assert.equal(r.body.toString(), 'POST /form?x=1 a=b');
  assert.equal(seen.host, `127.0.0.1:${h.port}`);
  assert.equal(seen['x-forwarded-for'], '10.1.1.1, 127.0.0.1');
  const g = await fetch(c, { ':path': '/get' });
  assert.equal(g.body.toString(), 'GET /get ');
  const grpcReply = await fetch(
    c,
    { ':method': 'POST', ':path': '/a.B/C', 'content-type': 'application/grpc' },
    '',
  );
  assert.equal(grpcReply.headers['grpc-status'], '14');
  assert.match(String(grpcReply.headers['grpc-message']), /gRPC needs an h2 pool/);
});
