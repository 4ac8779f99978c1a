// HTTP/1 client → h2 pool through the HTTP/1 proxy (harness; the gateway test repeats it end to end).
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { test } from 'node:test';
import { h1Request, h2ResponseHeaders, h2ToH1Headers } from '../src/upstream/h1-bridge.js';
import {
  bridgeYaml,
  checkBridge,
  h2Backend,
  rawExchange,
  startBackend,
  startHarness,
} from './http1-harness.js';

test('HTTP/1 client to an h2 pool: headers, bodies and trailers translated', async (t) => {
  const h1 = await startBackend('h1');
  const h2 = await h2Backend();
  const gw = await startHarness(bridgeYaml(h1.port, h2.port));
  t.after(async () => {
    await gw.close();
    await h1.close();
    await h2.close();
  });
  const port = gw.port;
  await checkBridge(assert, port, h2.seen);
  const acc = gw.records;
  assert.ok(acc.length >= 3);
  assert.ok(acc.some((r) => r.pool === 'two' && r.status === 201 && r.outcome === 'ok'));
});

test('h1-bridge API: translated headers, pooled sockets, and refused input as an error event', async (t) => {
  const be = await startBackend('b', (req, res, body) => {
    res.setHeader('connection', 'keep-alive, x-hop');
    res.setHeader('x-hop', '1');
    res.end(`${req.method}:${req.url}:${req.headers.host}:${req.headers.cookie}:${body}`);
  });
  t.after(() => be.close());
  const target = { host: '127.0.0.1', port: be.port };
  const timeouts = { connect: 1000, serverIdle: 5000 };
  const headers = h2ToH1Headers({
    ':method': 'POST',
    ':path': '/p?q',
    ':authority': 'svc.test',
    ':scheme': 'http',
    // node types cookie as one string; HTTP/2 clients may send several fields
    cookie: ['a=1', 'b=2'] as unknown as string,
    'x-bad': 'a\u0001b',
    te: 'trailers',
  });
  assert.equal(headers['x-bad'], undefined, 'a field node:http refuses is dropped');
  assert.equal(headers.te, undefined);
  const send = () =>
    new Promise<{ status: number; body: string; h2: http2.OutgoingHttpHeaders }>((resolve, reject) => {
      const creq = h1Request(target, timeouts, { method: 'POST', path: '/p?q', headers });
      creq.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, h2: h2ResponseHeaders(res) }));
      });
      creq.on('error', reject);
      creq.end('body');
    });
  const r1 = await send();
  assert.equal(r1.body, 'POST:/p?q:svc.test:a=1; b=2:body');
  assert.equal(r1.h2[':status'], 200);
  assert.equal(r1.h2.connection, undefined);
  assert.equal(r1.h2['x-hop'], undefined, 'connection-listed field dropped');
  await send();
  assert.equal(be.sockets, 1, 'keep-alive socket reused');
  // node refuses this path: an 'error' event, never a throw.
  const err = await new Promise<Error>((resolve) => {
    const creq = h1Request(target, timeouts, { method: 'GET', path: '/a b', headers: { host: 'x' } });
    creq.on('error', resolve);
    creq.end();
  });
  assert.ok(err instanceof Error);
});

test('HTTP/1 chunked request trailers reach an h2 server as HTTP/2 trailers', async (t) => {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  const got: { body: string; trailers: http2.IncomingHttpHeaders | undefined }[] = [];
  server.on('stream', (stream) => {
    const parts: Buffer[] = [];
    let trailers: http2.IncomingHttpHeaders | undefined;
    stream.on('trailers', (h: http2.IncomingHttpHeaders) => {
      trailers = h;
    });
    stream.on('data', (c: Buffer) => parts.push(c));
    stream.on('end', () => {
      const body = Buffer.concat(parts).toString();
      got.push({ body, trailers });
      const text = `${body}|${trailers?.['x-digest'] ?? '-'}|${trailers?.['x-count'] ?? '-'}`;
      stream.respond({ ':status': 200, 'content-length': String(text.length) });
      stream.end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const h2port = (server.address() as net.AddressInfo).port;
  const gw = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes:
      - { match: { protocol: http }, pool: two }
pools:
  two:
    protocol: h2
    health: { type: none }
    servers: [{ address: "127.0.0.1:${h2port}" }]
`);
  t.after(async () => {
    await gw.close();
    for (const s of sessions) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const out = await rawExchange(
    gw.port,
    'POST /up HTTP/1.1\r\nHost: svc.test\r\nTransfer-Encoding: chunked\r\nTrailer: x-digest\r\n\r\n' +
      '5\r\nhello\r\n6\r\n world\r\n0\r\nX-Digest: sha=1\r\nx-count: 2\r\ncontent-length: 99\r\n\r\n' +
      // the same connection goes on: a chunked body without trailers, then a bodiless request
      'POST /up HTTP/1.1\r\nHost: svc.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n' +
      'GET /last HTTP/1.1\r\nHost: svc.test\r\nConnection: close\r\n\r\n',
  );
  const bodies = out
    .split('\r\n\r\n')
    .filter((_, i) => i > 0)
    .map((x) => x.split('HTTP/1.1')[0]);
  assert.deepEqual(bodies, ['hello world|sha=1|2', 'ok|-|-', '|-|-'], out);
  assert.equal(got.length, 3);
  assert.equal(got[0].trailers?.['x-digest'], 'sha=1');
  assert.equal(got[0].trailers?.['x-count'], '2');
  assert.equal(got[0].trailers?.['content-length'], undefined, 'framing fields are not trailers');
  assert.equal(got[1].trailers?.['x-digest'], undefined);
});
