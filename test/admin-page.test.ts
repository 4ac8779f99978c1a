// The stats page in a real headless Chromium: every server row shows its state, the page
// refreshes itself in place (no navigation) through basic auth, and a screenshot is kept
// in test-artifacts/stats-page.png for a human to look at.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { chromium } from 'playwright-core';
import { startAdmin } from '../src/admin/server.js';
import { Pool } from '../src/balancer/pool.js';
import type { PoolLike } from '../src/balancer/types.js';
import { DEFAULT_LIMITS, DEFAULT_TIMEOUTS } from '../src/config/defaults.js';
import type { HealthConfig, ListenerConfig, PoolConfig, RouteConfig } from '../src/config/runtime.js';
import type { ListenerState } from '../src/core/proxy.js';
import type { AccessRecord, HealthCheckType } from '../src/core/types.js';
import { compileRouter } from '../src/router/compile.js';
import { StatsRegistry } from '../src/stats/registry.js';

const CHROMIUM = '/usr/bin/chromium';

// Runs in the page. A function, not a string: the page's CSP forbids eval, and typed
// through globalThis so the test compiles without the DOM lib.
type PageDoc = { querySelector(s: string): { dataset: Record<string, string | undefined> } | null };
const stateIs = ({ selector, state }: { selector: string; state: string }): boolean =>
  (globalThis as unknown as { document: PageDoc }).document.querySelector(selector)?.dataset.state === state;
const ARTIFACT = path.resolve('test-artifacts/stats-page.png');

function health(type: HealthCheckType): HealthConfig {
  return {
    type,
    interval: 2000,
    timeout: 1000,
    rise: 2,
    fall: 3,
    service: '',
    path: '/healthz',
    expect: [200, 399],
    method: 'ping',
  };
}

function poolConfig(
  name: string,
  protocol: PoolConfig['protocol'],
  balance: PoolConfig['balance'],
  check: HealthCheckType,
  servers: { name: string; port: number; weight?: number; backup?: boolean }[],
): PoolConfig {
  return {
    name,
    protocol,
    balance,
    health: health(check),
    retries: { attempts: 1, on: ['connect-failure'] },
    thrift: { transport: 'framed', protocol: 'binary', stripService: false, pipelining: false },
    timeouts: { ...DEFAULT_TIMEOUTS },
    servers: servers.map((s) => ({
      name: s.name,
      address: `10.0.0.${s.port % 250}:${s.port}`,
      host: `10.0.0.${s.port % 250}`,
      port: s.port,
      weight: s.weight ?? 100,
      backup: s.backup ?? false,
      maxconn: 0,
    })),
  };
}

function listener(
  name: string,
  bind: string,
  routes: RouteConfig[],
  pools: Map<string, { pool: PoolLike; config: PoolConfig }>,
  conns: ListenerState['connections'],
): ListenerState {
  const cfg: ListenerConfig = {
    name,
    binds: [],
    bindText: [bind],
    maxconn: 10000,
    protocols: ['http1', 'h2', 'thrift', 'tls', 'tcp'],
    timeouts: { ...DEFAULT_TIMEOUTS },
    limits: { ...DEFAULT_LIMITS },
    routes,
  };
  return {
    name,
    current: {
      config: cfg,
      router: compileRouter(routes, pools),
      timeouts: cfg.timeouts,
      limits: cfg.limits,
      pools,
    },
    connections: conns,
  };
}

/** A gateway-like picture: three pools with servers in every state, two listeners, traffic. */
function fixture() {
  const configs = [
    poolConfig('greeters', 'h2', 'p2c', 'grpc', [
      { name: 'g1', port: 50051 },
      { name: 'g2', port: 50052 },
      { name: 'g3', port: 50053, backup: true },
    ]),
    poolConfig('web', 'h1', 'roundrobin', 'http', [
      { name: 'web-a', port: 8081 },
      { name: 'web-b', port: 8082, weight: 50 },
      { name: 'web-c', port: 8083 },
    ]),
    poolConfig('calc', 'thrift', 'leastconn', 'thrift', [
      { name: 'calc-1', port: 9090 },
      { name: 'calc-2', port: 9091 },
    ]),
  ];
  const pools = new Map<string, { pool: PoolLike; config: PoolConfig }>();
  for (const c of configs) pools.set(c.name, { pool: new Pool(c), config: c });
  const pool = (n: string) => pools.get(n)?.pool as Pool;
  const now = Date.now();

  // States: g2 down by health, web-b drain, web-c maint, calc-2 ejected (down).
  const g2 = pool('greeters').members[1];
  g2.health = 'down';
  g2.lastCheck = { ok: false, at: now - 1500, ms: 1000, detail: 'deadline exceeded' };
  pool('greeters').refresh('health check failed');
  pool('greeters').members[0].lastCheck = { ok: true, at: now - 800, ms: 1.8, detail: 'SERVING' };
  pool('greeters').members[2].lastCheck = { ok: true, at: now - 700, ms: 2.2, detail: 'SERVING' };
  pool('web').setAdmin('web-b', 'drain');
  pool('web').setAdmin('web-c', 'maint');
  pool('web').members[0].lastCheck = { ok: true, at: now - 300, ms: 3.1, detail: 'HTTP 200' };
  pool('web').members[1].lastCheck = { ok: true, at: now - 400, ms: 2.7, detail: 'HTTP 200' };
  pool('calc').members[0].lastCheck = { ok: true, at: now - 200, ms: 0.9, detail: 'ping replied' };
  pool('calc').members[1].ejectedUntil = now + 30_000;
  pool('calc').refresh('outlier: 5 consecutive failures');

  const edge = listener(
    'edge',
    ':8080',
    [
      {
        name: 'grpc-greeter',
        match: { protocol: 'grpc', service: 'helloworld.Greeter' },
        pool: 'greeters',
        deny: false,
      },
      { name: 'grpc-admin-deny', match: { protocol: 'grpc', method: '/admin.*/*' }, deny: true },
      { name: 'web', match: { protocol: 'http' }, pool: 'web', deny: false },
      { name: 'thrift-calc', match: { protocol: 'thrift' }, pool: 'calc', deny: false },
    ],
    pools,
    { active: 42, total: 18_234, refused: 3, sniffTimeouts: 1 },
  );
  const internal = listener(
    'internal',
    '127.0.0.1:9000',
    [{ name: 'internal-web', match: { protocol: 'http' }, pool: 'web', deny: false }],
    pools,
    { active: 1, total: 77, refused: 0, sniffTimeouts: 0 },
  );
  const stats = new StatsRegistry(() => ({ listeners: [edge, internal], pools }), { timer: false });

  // A few seconds of traffic, compressed: records between samples, real picks on the pools.
  const base = { client: '127.0.0.1:40000', bytes_in: 0, bytes_out: 0 };
  const work = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const pg = pool('greeters').pick();
      const rec: AccessRecord = {
        ...base,
        proto: 'grpc',
        listener: 'edge',
        route: 'grpc-greeter',
        pool: 'greeters',
        server: pg.ok ? pg.member.name : undefined,
        status: 200,
        grpc_status: i % 40 === 0 ? 14 : 0,
        bytes_in: 120,
        bytes_out: 340,
        duration_ms: 0.8 + (i % 10) * 0.4,
        outcome: 'ok',
      };
      if (pg.ok) pg.release({ ok: rec.grpc_status === 0, bytesIn: 120, bytesOut: 340 });
      stats.record(rec);
      if (i % 2 === 0) {
        const pw = pool('web').pick();
        const status = i % 25 === 0 ? 502 : i % 9 === 0 ? 404 : 200;
        if (pw.ok) pw.release({ ok: status < 500, bytesIn: 800, bytesOut: 15_000 });
        stats.record({
          ...base,
          proto: 'http1',
          listener: i % 6 === 0 ? 'internal' : 'edge',
          route: i % 6 === 0 ? 'internal-web' : 'web',
          pool: 'web',
          server: pw.ok ? pw.member.name : undefined,
          status,
          bytes_in: 800,
          bytes_out: 15_000,
          duration_ms: 4 + (i % 7) * 3,
          outcome: i % 50 === 0 ? 'server_reset' : 'ok',
        });
      }
      if (i % 3 === 0) {
        const pc = pool('calc').pick();
        if (pc.ok) pc.release({ ok: true, bytesIn: 60, bytesOut: 90 });
        stats.record({
          ...base,
          proto: 'thrift',
          listener: 'edge',
          route: 'thrift-calc',
          pool: 'calc',
          server: pc.ok ? pc.member.name : undefined,
          thrift_type: i % 30 === 0 ? 'exception' : 'reply',
          bytes_in: 60,
          bytes_out: 90,
          duration_ms: 1.5,
          outcome: i % 45 === 0 ? 'timeout' : 'ok',
        });
      }
    }
    if (n > 0 && n % 7 === 0)
      stats.record({
        ...base,
        proto: 'grpc',
        listener: 'edge',
        route: 'grpc-admin-deny',
        outcome: 'denied',
        grpc_status: 7,
        duration_ms: 0.1,
      });
  };
  // Sample times one second apart, as the registry's timer would take them.
  let clock = Date.now() - 6000;
  stats.sample(clock);
  for (const n of [180, 210, 175, 196, 220]) {
    work(n);
    clock += 1000;
    stats.sample(clock);
  }
  return { pools, pool, stats };
}

test('stats page in Chromium shows every server with its state and refreshes in place', {
  skip: fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)`,
}, async (t) => {
  const { stats } = fixture();
  const logger = pino(
    { level: 'silent' },
    new Writable({
      write(_c, _e, cb) {
        cb();
      },
    }),
  );
  const auth = { user: 'ops', password: 'page-test' };
  const admin = await startAdmin({
    bind: { host: '127.0.0.1', port: 0 },
    auth,
    stats,
    reload: async () => ({ ok: true }),
    draining: () => false,
    logger,
    refreshMs: 1000,
  });
  t.after(() => admin.close());
  const base = `http://127.0.0.1:${admin.address.port}`;
  const authHeader = {
    authorization: `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString('base64')}`,
  };
  const setState = async (server: string, state: string): Promise<void> => {
    const r = await fetch(`${base}/pools/web/servers/${server}/state`, {
      method: 'POST',
      headers: authHeader,
      body: JSON.stringify({ state }),
    });
    assert.equal(r.status, 200);
    await r.text();
  };

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  t.after(() => browser.close());
  const context = await browser.newContext({
    httpCredentials: { username: auth.user, password: auth.password },
    viewport: { width: 1600, height: 1000 },
  });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));
  const navigations: string[] = [];
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) navigations.push(f.url());
  });

  const resp = await page.goto(`${base}/`, { timeout: 15_000 });
  assert.equal(resp?.status(), 200);
  assert.deepEqual(await page.title(), 'Switchyard stats');

  const json = (await (await fetch(`${base}/stats.json`, { headers: authHeader })).json()) as {
    pools: Record<string, { servers: { name: string; state: string; weight: number }[] }>;
  };
  let count = 0;
  for (const [pname, p] of Object.entries(json.pools)) {
    for (const s of p.servers) {
      count++;
      const row = page.locator(`section.pool[data-pool="${pname}"] tr.srv[data-server="${s.name}"]`);
      assert.equal(await row.count(), 1, `${pname}/${s.name} has one row`);
      assert.equal(await row.getAttribute('data-state'), s.state, `${pname}/${s.name} state attribute`);
      assert.equal(
        (await row.locator('.badge').textContent())?.toLowerCase(),
        s.state,
        `${pname}/${s.name} badge`,
      );
      assert.ok((await row.textContent())?.includes(String(s.weight)), `${pname}/${s.name} weight shown`);
    }
  }
  assert.equal(count, 8);
  assert.equal(await page.locator('tr.srv').count(), 8);
  // Each state has its own colour.
  const colours = new Map<string, string>();
  for (const st of ['up', 'down', 'drain', 'maint']) {
    // Expressions as strings: the test compiles without the DOM lib.
    const colour = await page.evaluate(
      `getComputedStyle(document.querySelector('tr.srv[data-state="${st}"] .badge')).backgroundColor`,
    );
    colours.set(st, String(colour));
  }
  assert.equal(new Set(colours.values()).size, 4, `distinct state colours: ${[...colours.values()]}`);
  // Health detail and latency are on the page.
  const g2 =
    (await page.locator('section.pool[data-pool="greeters"] tr[data-server="g2"]').textContent()) ?? '';
  assert.match(g2, /deadline exceeded/);
  const g1 =
    (await page.locator('section.pool[data-pool="greeters"] tr[data-server="g1"]').textContent()) ?? '';
  assert.match(g1, /SERVING/);
  assert.match(g1, /\d+(\.\d+)? ms/);
  assert.equal(await page.locator('section.listener').count(), 2);

  // Refresh without reload: a marker on window survives while the data changes.
  await page.evaluate("window.marker = 'still here'");
  await setState('web-a', 'maint');
  await setState('web-c', 'ready');
  // Wait for the change made last: a refresh between the two requests shows only the first.
  await page.waitForFunction(
    stateIs,
    { selector: 'section.pool[data-pool="web"] tr[data-server="web-c"]', state: 'up' },
    {
      timeout: 10_000,
      polling: 100,
    },
  );
  assert.equal(
    await page.locator('section.pool[data-pool="web"] tr[data-server="web-a"]').getAttribute('data-state'),
    'maint',
  );
  assert.equal(await page.evaluate('window.marker'), 'still here');
  assert.equal(navigations.length, 1, 'no navigation after the first load');
  assert.ok(Number(await page.evaluate('document.body.dataset.updates')) >= 1);
  await setState('web-a', 'ready');
  await setState('web-c', 'maint');
  await page.waitForFunction(
    stateIs,
    { selector: 'section.pool[data-pool="web"] tr[data-server="web-c"]', state: 'maint' },
    {
      timeout: 10_000,
      polling: 100,
    },
  );

  fs.mkdirSync(path.dirname(ARTIFACT), { recursive: true });
  await page.screenshot({ path: ARTIFACT, fullPage: true });
  assert.ok(fs.statSync(ARTIFACT).size > 10_000);
  assert.deepEqual(problems, [], 'no console errors');
});
