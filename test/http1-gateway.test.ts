// End to end through the real gateway (config loader, listener, sniffer, registry).
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test } from 'node:test';
import { startGateway } from './helpers/gateway.js';
import { bridgeYaml, checkBridge, get, h2Backend, startBackend } from './http1-harness.js';

test('real gateway: HTTP/1 to h1 and h2 pools on one port, trailers re-chunked', async (t) => {
  const h1 = await startBackend('h1');
  const h2 = await h2Backend();
  const gw = await startGateway(bridgeYaml(h1.port, h2.port));
  t.after(async () => {
    await gw.stop();
    await h1.close();
    await h2.close();
  });
  const port = gw.port();
  await checkBridge(assert, port, h2.seen);
  const acc = gw.access().filter((r) => r.proto === 'http1');
  assert.ok(acc.length >= 3);
  assert.ok(acc.some((r) => r.pool === 'two' && r.status === 201 && r.outcome === 'ok'));
});

// The HTTP/2 proxy owns this path; it calls upstream/h1-bridge.ts.
test('real gateway: HTTP/2 client to an h1 pool, trailers included', async (t) => {
  const h1 = await startBackend('h1', (req, res, body) => {
    res.setHeader('x-saw-host', String(req.headers.host));
    res.setHeader('x-saw-xff', String(req.headers['x-forwarded-for']));
    res.setHeader('trailer', 'x-sum');
    res.write(`h1:${req.method}:${req.url}:`);
    res.addTrailers({ 'x-sum': '42' });
    res.end(body);
  });
  const gw = await startGateway(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes: [{ match: { protocol: http }, pool: one }]
pools:
  one:
    protocol: h1
    health: { type: none }
    servers: [{ address: "127.0.0.1:${h1.port}" }]
`);
  t.after(async () => {
    await gw.stop();
    await h1.close();
  });
  const client = http2.connect(`http://127.0.0.1:${gw.port()}`);
  client.on('error', () => {});
  t.after(() => {
    client.close();
  });
  let trailers: http2.IncomingHttpHeaders = {};
  const res = await new Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }>(
    (resolve, reject) => {
      const st = client.request({ ':method': 'POST', ':path': '/via-h2', ':authority': 'site.test' });
      let headers: http2.IncomingHttpHeaders = {};
      st.on('response', (h) => {
        headers = h;
      });
      st.on('trailers', (tr) => {
        trailers = tr;
      });
      const parts: Buffer[] = [];
      st.on('data', (c: Buffer) => parts.push(c));
      st.on('end', () =>
        resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(parts).toString() }),
      );
      st.on('error', reject);
      st.end('from-h2');
    },
  );
  assert.equal(res.status, 200);
  assert.equal(res.body, 'h1:POST:/via-h2:from-h2');
  assert.equal(res.headers['x-saw-host'], 'site.test');
  assert.equal(res.headers['x-saw-xff'], '127.0.0.1');
  assert.equal(trailers['x-sum'], '42');
});

test('real gateway: HTTP health check takes a failing h1 server out and back', async (t) => {
  let healthy = true;
  const good = await startBackend('good');
  const flaky = await startBackend('flaky', (req, res) => {
    if (req.url === '/healthz') {
      res.statusCode = healthy ? 200 : 503;
      res.end();
      return;
    }
    res.end('flaky');
  });
  const gw = await startGateway(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes: [{ match: { protocol: http }, pool: p }]
pools:
  p:
    protocol: h1
    health: { type: http, path: /healthz, interval: 100ms, timeout: 500ms, rise: 1, fall: 1, expect: "200-299" }
    servers:
      - { name: flaky, address: "127.0.0.1:${flaky.port}" }
      - { name: good, address: "127.0.0.1:${good.port}" }
`);
  t.after(async () => {
    await gw.stop();
    await good.close();
    await flaky.close();
  });
  const port = gw.port();
  const spread = async () => {
    const names = new Set<string>();
    for (let i = 0; i < 6; i++) names.add((await get(port, '/')).body.split(':')[0]);
    return names;
  };
  assert.ok((await spread()).has('flaky'), 'both serve while healthy');
  healthy = false;
  await gw.waitFor((r) => r.event === 'server_state' && r.server === 'flaky' && r.to === 'down', 5000);
  assert.deepEqual([...(await spread())], ['good']);
  healthy = true;
  await gw.waitFor((r) => r.event === 'server_state' && r.server === 'flaky' && r.to === 'up', 5000);
  assert.ok((await spread()).has('flaky'), 'back in rotation');
});
