// The upstream session pool on its own: h2Request (the HTTP/1 proxy's entry point), session
// reuse, and connect failures.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import { type H2RequestResult, H2SessionPool, h2Request } from '../src/upstream/h2-pool.js';

const TIMEOUTS = { connect: 1000, serverIdle: 10_000 };

function send(pool: H2SessionPool, port: number, path: string): Promise<H2RequestResult> {
  return new Promise((resolve) =>
    h2Request(
      pool,
      { host: '127.0.0.1', port },
      TIMEOUTS,
      { ':method': 'GET', ':path': path },
      true,
      resolve,
    ),
  );
}

test('h2Request reuses one session per server and reports connect failures', async (t) => {
  const server = http2.createServer();
  let sessions = 0;
  server.on('session', () => sessions++);
  server.on('stream', (s, h) => {
    s.respond({ ':status': 200 });
    s.end(String(h[':path']));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const pool = new H2SessionPool();
  t.after(() => {
    pool.close(true);
    server.close();
  });
  const target = { host: '127.0.0.1', port };
  const bodies: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await new Promise<H2RequestResult>((resolve) =>
      h2Request(pool, target, TIMEOUTS, { ':method': 'GET', ':path': `/p${i}` }, true, resolve),
    );
    assert.ok(r.ok);
    const body = await new Promise<string>((resolve) => {
      let b = '';
      r.stream.on('data', (c: Buffer) => {
        b += c;
      });
      r.stream.on('end', () => resolve(b));
    });
    bodies.push(body);
  }
  assert.deepEqual(bodies, ['/p0', '/p1', '/p2', '/p3', '/p4']);
  assert.equal(sessions, 1);
  assert.equal(pool.sessionCount(target), 1);

  const dead = net.createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadPort = (dead.address() as net.AddressInfo).port;
  await new Promise<void>((r) => dead.close(() => r()));
  const failed = await send(pool, deadPort, '/');
  assert.equal(failed.ok, false);
  assert.ok(!failed.ok && failed.why === 'connect', JSON.stringify(failed));
});
