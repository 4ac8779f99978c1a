// The admin API on a real gateway started from YAML: HTTP/1 calls through the gateway are
// counted in /metrics and /stats.json exactly, and a drain through the API moves new calls
// away while a call already in flight on the drained server finishes.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import { startGateway } from './helpers/gateway.js';

interface Backend {
  name: string;
  port: number;
  hits: number;
  /** Resolves the held /slow request. */
  releaseSlow(): void;
  slowArrived: Promise<void>;
  close(): Promise<void>;
}

async function backend(name: string): Promise<Backend> {
  let releaseSlow = (): void => {};
  let arrived = (): void => {};
  const slowArrived = new Promise<void>((r) => {
    arrived = r;
  });
  const held = new Promise<void>((r) => {
    releaseSlow = r;
  });
  const b = { name, port: 0, hits: 0, releaseSlow: () => releaseSlow(), slowArrived } as Backend;
  const server = http.createServer((req, res) => {
    b.hits++;
    req.resume();
    if (req.url === '/slow') {
      arrived();
      held.then(() => res.end(`slow from ${name}`));
      return;
    }
    res.setHeader('x-server', name);
    res.end(`hello from ${name}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as net.AddressInfo).port;
  b.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return b;
}

function get(
  port: number,
  path: string,
  agent: http.Agent,
): Promise<{ status: number; server: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          server: String(res.headers['x-server'] ?? ''),
          body: Buffer.concat(parts).toString(),
        }),
      );
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** A free loopback port (the config refuses two binds on port 0 as a conflict). */
async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function waitUntil(pred: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition not met in time');
}

test('real gateway: metrics count the calls made; drain via the API moves new calls, in-flight finishes', async (t) => {
  const a = await backend('a');
  const b = await backend('b');
  const adminPort = await freePort();
  const gw = await startGateway(`
admin:
  bind: "127.0.0.1:${adminPort}"
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes:
      - { name: web-route, match: { protocol: http }, pool: web }
pools:
  web:
    protocol: h1
    balance: roundrobin
    health: { type: none }
    servers:
      - { name: a, address: "127.0.0.1:${a.port}" }
      - { name: b, address: "127.0.0.1:${b.port}" }
`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  t.after(async () => {
    agent.destroy();
    a.releaseSlow();
    b.releaseSlow();
    await gw.stop();
    await a.close();
    await b.close();
  });
  assert.ok(gw.adminAddress, 'admin listener started from config');
  const admin = `http://127.0.0.1:${gw.adminAddress.port}`;
  const port = gw.port();

  const N = 20;
  for (let i = 0; i < N; i++) {
    const r = await get(port, `/hello/${i}`, agent);
    assert.equal(r.status, 200);
  }
  assert.equal(a.hits + b.hits, N);
  assert.ok(a.hits > 0 && b.hits > 0, 'both servers served');

  // Access records are finished when the response ends; give the last one a moment.
  const metricValue = async (server: string): Promise<number> => {
    const text = await (await fetch(`${admin}/metrics`)).text();
    const re = new RegExp(
      `^switchyard_requests_total\\{listener="edge",route="web-route",pool="web",server="${server}",protocol="http1",code="2xx",outcome="ok"\\} (\\d+)$`,
      'm',
    );
    return Number(re.exec(text)?.[1] ?? 0);
  };
  await waitUntil(async () => (await metricValue('a')) + (await metricValue('b')) === N);
  assert.equal(await metricValue('a'), a.hits);
  assert.equal(await metricValue('b'), b.hits);

  type Stats = {
    listeners: { name: string; routes: { name: string; requests: { total: number } }[] }[];
    pools: Record<string, { servers: { name: string; state: string; total: number; active: number }[] }>;
  };
  let stats = (await (await fetch(`${admin}/stats.json`)).json()) as Stats;
  assert.equal(stats.pools.web.servers.find((s) => s.name === 'a')?.total, a.hits);
  assert.equal(stats.pools.web.servers.find((s) => s.name === 'b')?.total, b.hits);
  assert.equal(stats.listeners[0].routes.find((r) => r.name === 'web-route')?.requests.total, N);

  // Park one request on each server, then drain a.
  const slowAgent = new http.Agent({ keepAlive: false });
  t.after(() => slowAgent.destroy());
  const slow1 = get(port, '/slow', slowAgent);
  const slow2 = get(port, '/slow', slowAgent);
  await Promise.all([a.slowArrived, b.slowArrived]);
  const drain = await fetch(`${admin}/pools/web/servers/a/state`, {
    method: 'POST',
    body: JSON.stringify({ state: 'drain' }),
  });
  assert.equal(drain.status, 200);
  await drain.text();
  stats = (await (await fetch(`${admin}/stats.json`)).json()) as Stats;
  const sa = stats.pools.web.servers.find((s) => s.name === 'a');
  assert.equal(sa?.state, 'drain');
  assert.equal(sa?.active, 1, 'the parked call is still in flight on a');

  const before = a.hits;
  for (let i = 0; i < 10; i++) {
    const r = await get(port, `/after/${i}`, agent);
    assert.equal(r.status, 200);
    assert.equal(r.server, 'b', 'new calls avoid the drained server');
  }
  assert.equal(a.hits, before);

  a.releaseSlow();
  b.releaseSlow();
  const [r1, r2] = await Promise.all([slow1, slow2]);
  assert.equal(r1.status, 200);
  assert.equal(r2.status, 200);
  assert.deepEqual([r1.body, r2.body].sort(), ['slow from a', 'slow from b'], 'in-flight call on a finished');

  const ready = await fetch(`${admin}/pools/web/servers/a/state`, {
    method: 'POST',
    body: JSON.stringify({ state: 'ready' }),
  });
  assert.equal(ready.status, 200);
  await ready.text();
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) seen.add((await get(port, `/back/${i}`, agent)).server);
  assert.deepEqual([...seen].sort(), ['a', 'b']);

  const h = await fetch(`${admin}/healthz`);
  assert.equal(h.status, 200);
  await h.text();
});
