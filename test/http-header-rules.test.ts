// Route header rules (request_headers / response_headers) for HTTP/2 clients, to an h2 pool
// and to an h1 pool: the same rules and the same order (remove, replace, set, add) as on
// the HTTP/1 path (test/http1-proxy.test.ts), compiled once at config load.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { test } from 'node:test';
import { startGateway } from './helpers/gateway.js';

type After = { after(fn: () => Promise<void> | void): void };
type Seen = Record<string, string | string[] | undefined>;

/** Answers every request with a secret header and a decorated server name; records heads. */
async function h2Backend(t: After, seen: Seen[]): Promise<number> {
  const server = http2.createServer();
  server.on('stream', (s, h) => {
    s.on('error', () => {});
    seen.push(h as Seen);
    s.respond({ ':status': 200, 'x-backend-secret': 'yes', server: 'backend/1.0 (internal)' });
    s.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

async function h1Backend(t: After, seen: Seen[]): Promise<number> {
  const server = http.createServer((req, res) => {
    seen.push(req.headers as Seen);
    res.setHeader('x-backend-secret', 'yes');
    res.setHeader('server', 'backend/1.0 (internal)');
    res.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return (server.address() as net.AddressInfo).port;
}

const RULES = `
        request_headers:
          set: { x-gateway: switchyard }
          add: { x-added: one }
          remove: [x-internal]
          replace:
            - { name: user-agent, pattern: "^curl", with: "client" }
            # Runs before set: the value set by the rule above is never rewritten.
            - { name: x-gateway, pattern: "switch", with: "SWITCH" }
        response_headers:
          set: { strict-transport-security: "max-age=63072000" }
          remove: [x-backend-secret]
          replace: [{ name: server, pattern: " \\\\(internal\\\\)", with: "" }]`;

for (const protocol of ['h2', 'h1'] as const) {
  test(`HTTP/2 client → ${protocol} pool: route header rules apply, in the HTTP/1 path's order`, async (t) => {
    const seen: Seen[] = [];
    const port = protocol === 'h2' ? await h2Backend(t, seen) : await h1Backend(t, seen);
    const gw = await startGateway(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes:
      - match: { protocol: http }
        pool: p${RULES}
pools:
  p:
    protocol: ${protocol}
    health: { type: none }
    servers: [{ name: s1, address: "127.0.0.1:${port}" }]
`);
    t.after(() => gw.stop());
    const client = http2.connect(`http://127.0.0.1:${gw.port()}`);
    t.after(() => client.close());
    const res = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const req = client.request({
        ':path': '/r',
        'x-internal': 'secret',
        'x-gateway': 'spoofed-switch',
        'user-agent': 'curl/8',
      });
      req.on('response', (h) => {
        req.resume();
        req.on('end', () => resolve(h));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(res[':status'], 200);
    assert.equal(seen.length, 1);
    const h = seen[0];
    assert.equal(h['x-gateway'], 'switchyard', 'set wins over the client value and is not replaced');
    assert.equal(h['x-added'], 'one');
    assert.equal(h['x-internal'], undefined);
    assert.equal(h['user-agent'], 'client/8');
    assert.equal(res['strict-transport-security'], 'max-age=63072000');
    assert.equal(res['x-backend-secret'], undefined);
    assert.equal(res.server, 'backend/1.0');
  });
}
