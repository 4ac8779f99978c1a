import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { Agent as UndiciAgent, request as undiciRequest } from 'undici';
import WebSocket, { WebSocketServer } from 'ws';
import { get, harnessFor, poolYaml, rawExchange, startBackend, startHarness } from './http1-harness.js';

test('keep-alive reuse on both sides, routing by host and path, access records', async (t) => {
  const a = await startBackend('a');
  const b = await startBackend('b');
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes:
      - match: { protocol: http, host: "*.b.test", path_prefix: /api/ }
        pool: pb
      - match: { protocol: http, path: /only-a }
        pool: pa
      - match: { protocol: http, path_prefix: /denied }
        deny: true
pools:
${poolYaml('pa', [a.port])}${poolYaml('pb', [b.port])}`);
  t.after(async () => {
    await h.close();
    await a.close();
    await b.close();
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const clientSockets = new Set<net.Socket>();
  agent.on('free', (s: net.Socket) => clientSockets.add(s));
  for (let i = 0; i < 5; i++) {
    const r = await get(h.port, `/api/x?i=${i}`, { agent, headers: { host: 'www.b.test:8080' } });
    assert.equal(r.status, 200);
    assert.equal(r.body, `b:GET:/api/x?i=${i}`);
  }
  const ra = await get(h.port, '/only-a', { agent });
  assert.equal(ra.body, 'a:GET:/only-a');
  assert.equal(b.sockets, 1, 'one upstream socket reused for 5 requests');
  assert.equal(clientSockets.size, 1, 'one client socket reused');
  assert.equal((await get(h.port, '/nothing', { agent })).status, 404);
  assert.equal((await get(h.port, '/denied/x', { agent })).status, 403);
  const recs = h.records.filter((r) => r.pool === 'pb');
  assert.equal(recs.length, 5);
  assert.equal(recs[0].proto, 'http1');
  assert.equal(recs[0].server, 'pb1');
  assert.equal(recs[0].status, 200);
  assert.equal(recs[0].path, '/api/x');
  assert.equal(recs[0].method, 'GET');
  assert.equal(recs[0].outcome, 'ok');
  assert.ok(recs[0].bytes_out > 0);
  assert.ok(h.records.some((r) => r.status === 404 && r.outcome === 'no_route'));
  assert.ok(h.records.some((r) => r.status === 403 && r.outcome === 'denied'));
});

test('chunked upload echo streams both ways; undici and content-length bodies', async (t) => {
  const echo = await startBackend('e', undefined, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    req.pipe(res);
    return true;
  });
  const h = await harnessFor(t, 'e', echo);
  // node client, chunked request body written in pieces
  const body = await new Promise<string>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: h.port, method: 'POST', path: '/echo' }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve(Buffer.concat(parts).toString()));
    });
    req.on('error', reject);
    let i = 0;
    const tick = () => {
      if (i++ < 20) {
        req.write(`piece-${i};`);
        setTimeout(tick, 2);
      } else req.end();
    };
    tick();
  });
  assert.equal(body, Array.from({ length: 20 }, (_, i) => `piece-${i + 1};`).join(''));
  // undici, a 1 MiB content-length body
  const big = Buffer.alloc(1 << 20, 'x');
  const dispatcher = new UndiciAgent({ keepAliveTimeout: 1000 });
  t.after(() => dispatcher.close());
  const r = await undiciRequest(`http://127.0.0.1:${h.port}/big`, { method: 'PUT', body: big, dispatcher });
  const got = Buffer.from(await r.body.arrayBuffer());
  assert.equal(r.statusCode, 200);
  assert.equal(got.length, big.length);
  assert.ok(got.equals(big));
});

test('Expect: 100-continue is relayed before the body is sent', async (t) => {
  const be = await startBackend('c', (_req, res, body) => res.end(`got:${body}`));
  const h = await harnessFor(t, 'c', be);
  const res = await new Promise<{ sawContinue: boolean; body: string }>((resolve, reject) => {
    let sawContinue = false;
    const req = http.request({
      host: '127.0.0.1',
      port: h.port,
      method: 'POST',
      path: '/up',
      headers: { expect: '100-continue', 'content-length': 5 },
    });
    req.on('continue', () => {
      sawContinue = true;
      req.end('hello');
    });
    req.on('response', (r) => {
      const parts: Buffer[] = [];
      r.on('data', (c: Buffer) => parts.push(c));
      r.on('end', () => resolve({ sawContinue, body: Buffer.concat(parts).toString() }));
    });
    req.on('error', reject);
    req.flushHeaders();
  });
  assert.ok(res.sawContinue);
  assert.equal(res.body, 'got:hello');
});

test('X-Forwarded-For/-Proto, Forwarded, hop-by-hop removal and header rules', async (t) => {
  const be = await startBackend('r', (_req, res) => {
    res.setHeader('x-backend-secret', 'yes');
    res.setHeader('server', 'backend/1.0 (internal)');
    res.setHeader('connection', 'keep-alive, x-resp-hop');
    res.setHeader('x-resp-hop', 'gone');
    res.end('ok');
  });
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes:
      - match: { protocol: http }
        pool: r
        request_headers:
          set: { x-gateway: switchyard }
          add: { x-added: one }
          remove: [x-internal]
          replace: [{ name: user-agent, pattern: "^curl", with: "client" }]
        response_headers:
          set: { strict-transport-security: "max-age=63072000" }
          remove: [x-backend-secret]
          replace: [{ name: server, pattern: " \\\\(internal\\\\)", with: "" }]
pools:
${poolYaml('r', [be.port])}`);
  t.after(async () => {
    await h.close();
    await be.close();
  });
  const r = await get(h.port, '/h', {
    headers: {
      'x-forwarded-for': '203.0.113.9',
      'x-internal': 'secret',
      'x-gateway': 'spoofed',
      'user-agent': 'curl/8',
      connection: 'keep-alive, x-hop',
      'x-hop': 'should-go',
      'keep-alive': 'timeout=5',
      forwarded: 'for=203.0.113.9',
    },
  });
  assert.equal(r.status, 200);
  const seen = be.seen[0].headers;
  assert.equal(seen['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
  assert.equal(seen['x-forwarded-proto'], 'http');
  assert.equal(seen.forwarded, `for=203.0.113.9, for=127.0.0.1;proto=http;host="127.0.0.1:${h.port}"`);
  assert.equal(seen['x-gateway'], 'switchyard');
  assert.equal(seen['x-added'], 'one');
  assert.equal(seen['x-internal'], undefined);
  assert.equal(seen['x-hop'], undefined);
  assert.equal(seen['keep-alive'], undefined);
  assert.equal(seen['user-agent'], 'client/8');
  assert.equal(r.headers['strict-transport-security'], 'max-age=63072000');
  assert.equal(r.headers['x-backend-secret'], undefined);
  assert.equal(r.headers['x-resp-hop'], undefined);
  assert.equal(r.headers.server, 'backend/1.0');
});

test('cookie persistence inserts the server cookie and honours it while the server is up', async (t) => {
  const s1 = await startBackend('s1');
  const s2 = await startBackend('s2');
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes: [{ match: { protocol: http }, pool: p }]
pools:
${poolYaml('p', [s1.port, s2.port], '    persist: { cookie: SRV }\n')}`);
  t.after(async () => {
    await h.close();
    await s1.close();
    await s2.close();
  });
  const first = await get(h.port, '/');
  const setCookie = first.headers['set-cookie']?.[0] ?? '';
  const m = /^SRV=([^;]+);/.exec(setCookie);
  assert.ok(m, `set-cookie: ${setCookie}`);
  const server = decodeURIComponent(m[1]);
  const name = first.body.split(':')[0];
  assert.equal(server, name === 's1' ? 'p1' : 'p2');
  for (let i = 0; i < 6; i++) {
    const r = await get(h.port, '/', { headers: { cookie: `other=1; SRV=${m[1]}` } });
    assert.equal(r.body.split(':')[0], name, 'sticks to the cookie server');
    assert.equal(r.headers['set-cookie'], undefined, 'no new cookie while it holds');
  }
  // The chosen server goes down: another serves and the cookie is re-issued.
  const pool = h.pools.get('p')!;
  const member = pool.members.find((x) => x.name === server)!;
  member.health = 'down';
  pool.refresh('test');
  const moved = await get(h.port, '/', { headers: { cookie: `SRV=${m[1]}` } });
  assert.notEqual(moved.body.split(':')[0], name);
  assert.match(String(moved.headers['set-cookie']?.[0]), /^SRV=p[12];/);
});

test('balance: hash on a header keeps a key on one server', async (t) => {
  const s1 = await startBackend('s1');
  const s2 = await startBackend('s2');
  const s3 = await startBackend('s3');
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes: [{ match: { protocol: http }, pool: p }]
pools:
${poolYaml('p', [s1.port, s2.port, s3.port], '    balance: hash\n    hash: { on: "header:x-user" }\n')}`);
  t.after(async () => {
    await h.close();
    await s1.close();
    await s2.close();
    await s3.close();
  });
  const seen = new Set<string>();
  for (let u = 0; u < 12; u++) {
    const first = (await get(h.port, '/', { headers: { 'x-user': `u${u}` } })).body.split(':')[0];
    for (let i = 0; i < 3; i++) {
      const again = (await get(h.port, '/', { headers: { 'x-user': `u${u}` } })).body.split(':')[0];
      assert.equal(again, first);
    }
    seen.add(first);
  }
  assert.ok(seen.size >= 2, 'keys spread over servers');
});

test('WebSocket echo through the gateway (Upgrade tunnel)', async (t) => {
  const server = http.createServer((_q, s) => s.end('plain'));
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (m, isBinary) => ws.send(isBinary ? m : `echo:${m}`)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const bport = (server.address() as net.AddressInfo).port;
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes: [{ match: { protocol: http }, pool: w }]
pools:
${poolYaml('w', [bport])}`);
  t.after(async () => {
    await h.close();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const ws = new WebSocket(`ws://127.0.0.1:${h.port}/chat`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const replies: string[] = [];
  const done = new Promise<void>((resolve) => {
    ws.on('message', (m) => {
      replies.push(String(m));
      if (replies.length === 3) resolve();
    });
  });
  ws.send('one');
  ws.send('two');
  ws.send('x'.repeat(100_000));
  await done;
  assert.deepEqual(replies.slice(0, 2), ['echo:one', 'echo:two']);
  assert.equal(replies[2].length, 100_005);
  const closed = new Promise<void>((r) => ws.once('close', () => r()));
  ws.close();
  await closed;
  await new Promise((r) => setTimeout(r, 50));
  const rec = h.records.find((r) => r.status === 101);
  assert.ok(rec, 'tunnel logged once it ended');
  assert.equal(rec.outcome, 'ok');
});

test('pipelined requests are answered in order on one connection', async (t) => {
  const be = await startBackend('p', (req, res) => {
    // later requests answer faster: order must still hold
    const n = Number(req.url?.slice(1));
    setTimeout(() => res.end(`r${n}`), (5 - n) * 5);
  });
  const h = await harnessFor(t, 'p', be);
  let raw = '';
  for (let i = 1; i <= 5; i++)
    raw += `GET /${i} HTTP/1.1\r\nHost: x\r\n${i === 5 ? 'Connection: close\r\n' : ''}\r\n`;
  const out = await rawExchange(h.port, raw);
  const bodies = [...out.matchAll(/\r\n\r\n(r\d)/g)].map((m) => m[1]);
  assert.deepEqual(bodies, ['r1', 'r2', 'r3', 'r4', 'r5']);
});

test('limits.pipelined: reading pauses at that many queued requests; more are all answered in order', async (t) => {
  let hold: (() => void) | undefined;
  const be = await startBackend('p', (req, res) => {
    if (req.url === '/1') hold = () => res.end('r1');
    else res.end(`r${req.url?.slice(1)}`);
  });
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    limits: { pipelined: 4 }
    routes: [{ match: { protocol: http }, pool: p }]
pools:
${poolYaml('p', [be.port])}`);
  t.after(async () => {
    await h.close();
    await be.close();
  });
  const n = 20;
  let raw = '';
  for (let i = 1; i <= n; i++)
    raw += `GET /${i} HTTP/1.1\r\nHost: x\r\n${i === n ? 'Connection: close\r\n' : ''}\r\n`;
  const sock = net.connect(h.port, '127.0.0.1');
  sock.on('error', () => {});
  t.after(() => sock.destroy());
  const parts: Buffer[] = [];
  sock.on('data', (c: Buffer) => parts.push(c));
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write(raw);
  // The first request is held by the backend: 19 wait behind it, more than the limit.
  for (let i = 0; i < 200 && hold === undefined; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(hold, 'backend got the first request');
  const [server] = h.sockets;
  for (let i = 0; i < 100 && !server.isPaused(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(server.isPaused(), true, 'client reading paused with more than limits.pipelined queued');
  assert.equal(be.seen.length, 1);
  hold();
  await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
  const out = Buffer.concat(parts).toString('latin1');
  const bodies = [...out.matchAll(/\r\n\r\n(r\d+)/g)].map((m) => m[1]);
  assert.deepEqual(
    bodies,
    Array.from({ length: n }, (_, i) => `r${i + 1}`),
  );
  assert.equal(be.seen.length, n);
});

test('a large response to a slow reader arrives intact (backpressure, no reused read buffer)', async (t) => {
  const data = Buffer.alloc(8 << 20);
  let x = 1;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    data[i] = x >>> 24;
  }
  const be = await startBackend('d', (_req, res) => {
    res.setHeader('content-length', data.length);
    // many small writes: many upstream reads while the client is not reading
    for (let off = 0; off < data.length; off += 16384) res.write(data.subarray(off, off + 16384));
    res.end();
  });
  const h = await harnessFor(t, 'd', be);
  const got = await new Promise<Buffer>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: h.port, path: '/big' }, (res) => {
        const parts: Buffer[] = [];
        res.pause();
        setTimeout(() => res.resume(), 300);
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve(Buffer.concat(parts)));
      })
      .on('error', reject);
  });
  assert.equal(got.length, data.length);
  assert.ok(got.equals(data), 'bytes identical');
});
