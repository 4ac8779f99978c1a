import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { get, harnessFor, poolYaml, rawExchange, startBackend, startHarness } from './http1-harness.js';

async function setup(t: { after(fn: () => Promise<void>): void }, listenerExtra = '', poolExtra = '') {
  const be = await startBackend('b');
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
${listenerExtra}    routes: [{ match: { protocol: http }, pool: b }]
pools:
${poolYaml('b', [be.port], poolExtra)}`);
  t.after(async () => {
    await h.close();
    await be.close();
  });
  return { be, h };
}

const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';

const shapes: [string, string][] = [
  [
    'Content-Length with Transfer-Encoding',
    `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  [
    'differing duplicate Content-Length',
    `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
  ],
  [
    'Content-Length list that differs',
    `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 5\r\n\r\n${SMUGGLED}`,
  ],
  [
    'bad chunk size',
    `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  [
    'chunk size with trailing garbage',
    `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3 x\r\nabc\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  ['obs-fold', `GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n${SMUGGLED}`],
  [
    'bare LF inside a header line',
    `GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\nContent-Length: 5\r\n\r\n${SMUGGLED}`,
  ],
  [
    'bare CR inside a header line',
    `GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\rContent-Length: 5\r\n\r\n${SMUGGLED}`,
  ],
  ['space before the colon', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n${SMUGGLED}`],
  [
    'Transfer-Encoding not ending in chunked',
    `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  [
    'Transfer-Encoding in HTTP/1.0',
    `POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  ['missing Host in HTTP/1.1', `GET /a HTTP/1.1\r\nX-A: 1\r\n\r\n${SMUGGLED}`],
  ['duplicate Host', `GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n${SMUGGLED}`],
];

test('request smuggling shapes get 400, the connection closes, the backend never sees a second request', async (t) => {
  const { be, h } = await setup(t);
  for (const [name, raw] of shapes) {
    const out = await rawExchange(h.port, raw);
    assert.match(out, /^HTTP\/1\.1 (400|501) /, `${name}: ${JSON.stringify(out.slice(0, 60))}`);
    assert.match(out, /connection: close/i, name);
    assert.ok(!out.includes('b:GET:/smuggled'), `${name}: smuggled request answered`);
    assert.ok(!be.seen.some((s) => s.url === '/smuggled'), `${name}: backend saw the smuggled request`);
  }
  assert.ok(h.records.filter((r) => r.outcome === 'bad_request').length >= shapes.length);
});

test('identical duplicate Content-Length is accepted; chunked with extensions and trailers passes', async (t) => {
  const { be, h } = await setup(t);
  const out = await rawExchange(
    h.port,
    'POST /dup HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc',
  );
  assert.match(out, /^HTTP\/1\.1 200 /);
  assert.equal(be.seen[0].body, 'abc');
  const out2 = await rawExchange(
    h.port,
    'POST /ch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n',
  );
  assert.match(out2, /^HTTP\/1\.1 200 /);
  assert.equal(be.seen[1].body, 'abcde');
});

test('oversized header block gets 431', async (t) => {
  const { be, h } = await setup(t, '    limits: { header_bytes: 4096 }\n');
  const out = await rawExchange(h.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`);
  assert.match(out, /^HTTP\/1\.1 431 /);
  // Still incomplete but already too big: 431 without waiting for the end.
  const out2 = await rawExchange(h.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(5000)}`);
  assert.match(out2, /^HTTP\/1\.1 431 /);
  assert.equal(be.seen.length, 0);
  assert.ok(h.records.some((r) => r.status === 431 && r.outcome === 'too_large'));
});

test('slowloris: a head that does not complete within timeouts.request gets 408 and is closed', async (t) => {
  const { be, h } = await setup(t, '    timeouts: { request: 300ms, client_idle: 5s }\n');
  const sock = net.connect(h.port, '127.0.0.1');
  sock.on('error', () => {});
  t.after(() => {
    sock.destroy();
  });
  let out = '';
  sock.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write('GET / HTTP/1.1\r\nHost: x\r\n');
  // Keep trickling bytes: activity must not extend the head deadline.
  for (let i = 0; i < 30 && !sock.destroyed && out === ''; i++) {
    sock.write(`X-${i}: a\r\n`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
  assert.match(out, /^HTTP\/1\.1 408 /);
  assert.ok(sock.destroyed || sock.readableEnded, 'closed');
  assert.equal(be.seen.length, 0);
});

test('an idle keep-alive client connection is closed after timeouts.client_idle', async (t) => {
  const { h } = await setup(t, '    timeouts: { client_idle: 300ms }\n');
  const sock = net.connect(h.port, '127.0.0.1');
  sock.on('error', () => {});
  t.after(() => {
    sock.destroy();
  });
  let out = '';
  sock.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const closed = new Promise<boolean>((r) => sock.once('close', () => r(true)));
  sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  const ok = await Promise.race([closed, new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
  assert.ok(ok, 'closed by the gateway');
  assert.match(out, /^HTTP\/1\.1 200 /);
});

test('502 on a bad or closed upstream, 503 with no server up, 504 on a silent upstream', async (t) => {
  // A raw upstream that answers garbage, closes without answering, or never answers.
  const raw = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', (d: Buffer) => {
      const line = d.toString().split('\r\n')[0];
      if (line.includes('/garbage')) s.end('NOT HTTP AT ALL\r\n\r\n');
      else if (line.includes('/close')) s.destroy();
      // '/silent': never answers
    });
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  const rawPort = (raw.address() as net.AddressInfo).port;
  // A port with nothing listening.
  const dead = net.createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadPort = (dead.address() as net.AddressInfo).port;
  await new Promise<void>((r) => dead.close(() => r()));
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    timeouts: { request: 400ms }
    routes:
      - { match: { protocol: http, path_prefix: /refused }, pool: dead }
      - { match: { protocol: http, path_prefix: /down }, pool: down }
      - { match: { protocol: http }, pool: raw }
pools:
${poolYaml('raw', [rawPort])}${poolYaml('dead', [deadPort], '    retries: { attempts: 0 }\n')}${poolYaml('down', [deadPort])}`);
  t.after(async () => {
    await h.close();
    raw.close();
  });
  const down = h.pools.get('down')!;
  down.members[0].health = 'down';
  down.refresh('test');

  const g = await get(h.port, '/garbage');
  assert.equal(g.status, 502);
  assert.equal(g.body, 'Bad Gateway\n');
  const c = await get(h.port, '/close');
  assert.equal(c.status, 502);
  const s = await get(h.port, '/silent');
  assert.equal(s.status, 504);
  const n = await get(h.port, '/down');
  assert.equal(n.status, 503);
  const r = await get(h.port, '/refused');
  assert.equal(r.status, 503);
  const outcomes = h.records.map((x) => `${x.status}:${x.outcome}`);
  assert.ok(outcomes.includes('502:bad_response'), outcomes.join());
  assert.ok(outcomes.includes('502:server_reset'), outcomes.join());
  assert.ok(outcomes.includes('504:timeout'), outcomes.join());
  assert.ok(outcomes.includes('503:no_server'), outcomes.join());
  assert.ok(outcomes.includes('503:connect_failure'), outcomes.join());
});

test('a keep-alive upstream socket closed by the server is not reused for the next request', async (t) => {
  const { be, h } = await setup(t);
  assert.equal((await get(h.port, '/1')).status, 200);
  // The server drops its idle keep-alive sockets (as a backend idle timeout would).
  be.server.closeIdleConnections();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal((await get(h.port, '/2')).status, 200);
  assert.equal(be.seen.length, 2);
});

test('HTTP/1.0 client gets a de-chunked, close-delimited body', async (t) => {
  const be = await startBackend('c', (_req, res) => {
    res.write('part1-');
    res.end('part2');
  });
  const h = await harnessFor(t, 'c', be);
  const out = await rawExchange(h.port, 'GET / HTTP/1.0\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 200 /);
  assert.doesNotMatch(out, /transfer-encoding/i);
  assert.ok(out.endsWith('\r\n\r\npart1-part2'), JSON.stringify(out));
});

test('a reused upstream socket that closes without answering is retried once on a fresh one', async (t) => {
  let conns = 0;
  const seenPaths: string[] = [];
  const raw = net.createServer((s) => {
    conns++;
    let n = 0;
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      seenPaths.push(d.toString().split(' ')[1]);
      // The second request on a socket hits a server that just closed it (keep-alive race).
      if (++n === 2) s.destroy();
      else s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes: [{ match: { protocol: http }, pool: r }]
pools:
${poolYaml('r', [(raw.address() as net.AddressInfo).port])}`);
  t.after(async () => {
    await h.close();
    raw.close();
  });
  assert.equal((await get(h.port, '/1')).body, 'ok');
  assert.equal((await get(h.port, '/2')).body, 'ok', 'retried on a fresh socket');
  assert.equal(conns, 2);
  assert.deepEqual(seenPaths, ['/1', '/2', '/2']);
  // A POST with a body is not replayed: 502.
  assert.equal((await get(h.port, '/3', { method: 'POST', body: 'x' })).status, 502);
});

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mutate(rand: () => number, s: string): string {
  const alphabet = [
    '\r',
    '\n',
    '\r\n',
    ' ',
    ':',
    '0',
    'f',
    ';',
    'chunked',
    '\x00',
    '\xff',
    'Content-Length: 3\r\n',
  ];
  const edits = 1 + Math.floor(rand() * 4);
  for (let e = 0; e < edits; e++) {
    const pos = Math.floor(rand() * (s.length + 1));
    const op = rand();
    if (op < 0.3) s = s.slice(0, pos) + s.slice(pos + 1);
    else if (op < 0.7) s = s.slice(0, pos) + alphabet[Math.floor(rand() * alphabet.length)] + s.slice(pos);
    else s = s.slice(0, pos) + String.fromCharCode(Math.floor(rand() * 256)) + s.slice(pos + 1);
  }
  return s;
}

test('fuzz through sockets: mutated requests and mutated responses never break the proxy', async (t) => {
  const rand = rng(7);
  const responses = [
    'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n',
  ];
  const raw = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', () => {
      s.write(mutate(rand, responses[Math.floor(rand() * responses.length)]), 'latin1');
      if (rand() < 0.3) s.end();
    });
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  const good = await startBackend('good');
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    timeouts: { request: 300ms, client_idle: 300ms }
    limits: { header_bytes: 2048 }
    routes:
      - { match: { protocol: http, path_prefix: /good }, pool: good }
      - { match: { protocol: http }, pool: raw }
pools:
${poolYaml('raw', [(raw.address() as net.AddressInfo).port], '    retries: { attempts: 0 }\n')}${poolYaml('good', [good.port])}`);
  t.after(async () => {
    await h.close();
    raw.close();
    await good.close();
  });
  const requests = [
    'GET /x HTTP/1.1\r\nHost: a\r\n\r\n',
    'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc',
    'POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    'GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n',
  ];
  const deadline = Date.now() + 6000;
  for (let batch = 0; batch < 12 && Date.now() < deadline; batch++) {
    const jobs: Promise<string>[] = [];
    for (let i = 0; i < 10; i++) {
      const req = mutate(rand, requests[Math.floor(rand() * requests.length)]);
      jobs.push(rawExchange(h.port, Buffer.from(req + req, 'latin1'), 500));
    }
    for (const out of await Promise.all(jobs)) {
      if (out !== '') assert.match(out, /^HTTP\/1\.1 \d{3} /, JSON.stringify(out.slice(0, 40)));
    }
  }
  // Still serving normally.
  const ok = await get(h.port, '/good');
  assert.equal(ok.status, 200);
  assert.equal(ok.body, 'good:GET:/good');
  assert.ok(h.records.length > 50);
});

test('a request body that stops arriving gets 408 and does not count against the server', async (t) => {
  const { be, h } = await setup(
    t,
    '    timeouts: { client_idle: 300ms }\n',
    '    outlier: { consecutive_failures: 1, eject: 30s }\n',
  );
  const out = await rawExchange(
    h.port,
    'POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part',
    3000,
  );
  assert.match(out, /^HTTP\/1\.1 408 /);
  const member = h.pools.get('b')!.members[0];
  assert.equal(member.state, 'up', 'not ejected');
  assert.equal(member.active, 0);
  assert.equal(be.seen.length, 0, 'the backend never got a complete request');
});
