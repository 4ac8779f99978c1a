import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { get, harnessFor, poolYaml, rawExchange, startBackend, startHarness } from './http1-harness.js';

test('graceful drain: idle connections close, an in-flight request finishes with Connection: close', async (t) => {
  let release: (() => void) | undefined;
  const be = await startBackend('d', (req, res) => {
    if (req.url === '/slow') release = () => res.end('slow-done');
    else res.end('fast');
  });
  const h = await harnessFor(t, 'd', be);
  // an idle keep-alive connection
  const idle = net.connect(h.port, '127.0.0.1');
  idle.on('error', () => {});
  const idleClosed = new Promise<void>((r) => idle.once('close', () => r()));
  idle.write('GET /fast HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise<void>((r) => idle.once('data', () => r()));
  // an in-flight request
  const slow = new Promise<{ body: string; connection: string | undefined }>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: h.port, path: '/slow', agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c;
        });
        res.on('end', () => resolve({ body, connection: res.headers.connection }));
      })
      .on('error', reject);
  });
  for (let i = 0; i < 100 && release === undefined; i++) await new Promise((r) => setTimeout(r, 10));
  const drained = h.proxy.drain(Date.now() + 3000);
  await idleClosed;
  for (let i = 0; i < 100 && h.proxy.activeConnections > 1; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(h.proxy.activeConnections, 1, 'only the busy connection is left');
  release?.();
  const r = await slow;
  assert.equal(r.body, 'slow-done');
  assert.equal(r.connection, 'close');
  await drained;
  assert.equal(h.proxy.activeConnections, 0);
});

test('a tunnel idle past timeouts.tunnel is closed and logged', async (t) => {
  // A raw upstream that accepts any upgrade and then stays silent.
  const up = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () =>
      s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-test\r\nConnection: Upgrade\r\n\r\n'),
    );
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    timeouts: { tunnel: 300ms }
    routes: [{ match: { protocol: http }, pool: u }]
pools:
${poolYaml('u', [(up.address() as net.AddressInfo).port])}`);
  t.after(async () => {
    await h.close();
    up.close();
  });
  const out = await rawExchange(
    h.port,
    'GET /t HTTP/1.1\r\nHost: x\r\nUpgrade: x-test\r\nConnection: Upgrade\r\n\r\n',
    3000,
  );
  assert.match(out, /^HTTP\/1\.1 101 /);
  assert.match(out, /upgrade: x-test/i);
  const rec = h.records.find((r) => r.status === 101);
  assert.ok(rec);
  assert.equal(rec.outcome, 'timeout');
});

test('close-delimited responses, HEAD with Content-Length, and 1xx before a final response', async (t) => {
  const up = net.createServer((s) => {
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        const head = buf.slice(0, buf.indexOf('\r\n\r\n'));
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        const [method, path] = head.split(' ');
        if (path === '/eof') {
          s.end('HTTP/1.1 200 OK\r\n\r\nuntil-close');
          return;
        }
        if (method === 'HEAD') s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n');
        else if (path === '/hints') {
          s.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n');
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal');
        } else s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes: [{ match: { protocol: http }, pool: u }]
pools:
${poolYaml('u', [(up.address() as net.AddressInfo).port])}`);
  t.after(async () => {
    await h.close();
    up.close();
  });
  const eof = await rawExchange(h.port, 'GET /eof HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.match(eof, /^HTTP\/1\.1 200 /);
  assert.match(eof, /connection: close/i);
  assert.ok(eof.endsWith('until-close'));
  // HEAD then GET on one connection: the HEAD response has no body despite Content-Length.
  const two = await rawExchange(
    h.port,
    'HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  );
  const parts = two.split('HTTP/1.1 200 OK');
  assert.equal(parts.length, 3, two);
  assert.ok(two.endsWith('\r\n\r\nok'), JSON.stringify(two));
  const hints = await rawExchange(h.port, 'GET /hints HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(hints, /^HTTP\/1\.1 103 Early Hints\r\n/);
  assert.ok(hints.endsWith('\r\n\r\nfinal'));
  // HTTP/1.0 clients do not get 1xx.
  const hints10 = await rawExchange(h.port, 'GET /hints HTTP/1.0\r\n\r\n');
  assert.match(hints10, /^HTTP\/1\.1 200 /);
});

test('servers at maxconn: 503 queue_full', async (t) => {
  let hold: (() => void) | undefined;
  const be = await startBackend('m', (_req, res) => {
    hold = () => res.end('held');
  });
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes: [{ match: { protocol: http }, pool: m }]
pools:
  m:
    protocol: h1
    health: { type: none }
    servers: [{ address: "127.0.0.1:${be.port}", maxconn: 1 }]
`);
  t.after(async () => {
    await h.close();
    await be.close();
  });
  const first = get(h.port, '/1');
  for (let i = 0; i < 100 && hold === undefined; i++) await new Promise((r) => setTimeout(r, 10));
  const second = await get(h.port, '/2');
  assert.equal(second.status, 503);
  hold?.();
  assert.equal((await first).body, 'held');
  assert.ok(h.records.some((r) => r.status === 503 && r.outcome === 'queue_full'));
});

test('a client that keeps its side open after our FIN is released anyway', async (t) => {
  const be = await startBackend('f');
  const h = await harnessFor(t, 'f', be);
  const sock = net.connect({ port: h.port, host: '127.0.0.1', allowHalfOpen: true });
  sock.on('error', () => {});
  t.after(() => {
    sock.destroy();
  });
  let out = '';
  sock.on('data', (c: Buffer) => {
    out += c;
  });
  const ended = new Promise<void>((r) => sock.once('end', () => r()));
  sock.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  await ended;
  assert.match(out, /^HTTP\/1\.1 200 /);
  assert.equal(h.proxy.activeConnections, 1, 'still held: our side ended, theirs open');
  // Our FIN was already sent, so the client learns nothing new; the gateway frees the socket.
  for (let i = 0; i < 100 && h.proxy.activeConnections > 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(h.proxy.activeConnections, 0, 'released by the gateway');
});
