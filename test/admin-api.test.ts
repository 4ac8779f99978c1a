// The admin API over real HTTP: every endpoint, auth, error replies, and runtime state and
// weight changes seen both in /stats.json and in the real Pool's picks.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { type AdminServer, isLoopback, type ReloadResult, startAdmin } from '../src/admin/server.js';
import { Pool } from '../src/balancer/pool.js';
import type { PoolLike } from '../src/balancer/types.js';
import { DEFAULT_LIMITS, DEFAULT_TIMEOUTS } from '../src/config/defaults.js';
import type { ListenerConfig, PoolConfig } from '../src/config/runtime.js';
import type { ListenerState } from '../src/core/proxy.js';
import { compileRouter } from '../src/router/compile.js';
import { StatsRegistry } from '../src/stats/registry.js';
import { testPoolConfig, testServers } from './helpers/pool-config.js';

function poolConfig(name: string, servers: string[]): PoolConfig {
  return testPoolConfig(name, testServers(servers, 9100), {
    protocol: 'h1',
    healthType: 'http',
    healthPath: '/healthz',
  });
}

function fixture() {
  const config = poolConfig('web', ['a', 'b', 'c']);
  const pool = new Pool(config);
  const pools = new Map<string, { pool: PoolLike; config: PoolConfig }>([['web', { pool, config }]]);
  const lcfg: ListenerConfig = {
    name: 'edge',
    binds: [{ host: '127.0.0.1', port: 8080 }],
    bindText: ['127.0.0.1:8080'],
    maxconn: 100,
    protocols: ['http1', 'h2'],
    timeouts: { ...DEFAULT_TIMEOUTS },
    limits: { ...DEFAULT_LIMITS },
    routes: [{ name: 'web', match: { protocol: 'http' }, pool: 'web', deny: false }],
  };
  const listener: ListenerState = {
    name: 'edge',
    current: {
      config: lcfg,
      router: compileRouter(lcfg.routes, pools),
      timeouts: lcfg.timeouts,
      limits: lcfg.limits,
      pools,
    },
    connections: { active: 2, total: 17, refused: 1, sniffTimeouts: 3 },
  };
  const stats = new StatsRegistry(() => ({ listeners: [listener], pools }), { timer: false });
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line));
      cb();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  return { pool, pools, listener, stats, logger, logs };
}

/** Names picked over n picks (each released at once). */
function picks(pool: Pool, n: number): Map<string, number> {
  const seen = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const p = pool.pick();
    if (!p.ok) continue;
    seen.set(p.member.name, (seen.get(p.member.name) ?? 0) + 1);
    p.release({ ok: true });
  }
  return seen;
}

interface Started {
  admin: AdminServer;
  base: string;
  f: ReturnType<typeof fixture>;
  state: { draining: boolean; reloads: number; next: () => Promise<ReloadResult> };
}

async function start(auth?: { user: string; password: string }): Promise<Started> {
  const f = fixture();
  const state = {
    draining: false,
    reloads: 0,
    next: async (): Promise<ReloadResult> => ({ ok: true }),
  };
  const admin = await startAdmin({
    bind: { host: '127.0.0.1', port: 0 },
    auth,
    stats: f.stats,
    view: f.stats.view,
    reload: () => {
      state.reloads++;
      return state.next();
    },
    draining: () => state.draining,
    logger: f.logger,
  });
  return { admin, base: `http://127.0.0.1:${admin.address.port}`, f, state };
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

interface ServerJson {
  name: string;
  state: string;
  weight: number;
  admin: string;
  [k: string]: unknown;
}

async function statsJson(base: string, headers: Record<string, string> = {}) {
  const r = await fetch(`${base}/stats.json`, { headers });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  return (await r.json()) as {
    listeners: { name: string; bind: string[]; connections: Record<string, number>; routes: unknown[] }[];
    pools: Record<string, { protocol: string; balance: string; servers: ServerJson[] }>;
  };
}

test('read endpoints: page, stats.json in the SPEC shape, metrics, healthz', async (t) => {
  const { admin, base, f, state } = await start();
  t.after(() => admin.close());

  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
  const html = await page.text();
  assert.match(html, /<title>Switchyard stats<\/title>/);
  assert.ok(!/<(script|link)[^>]+(src|href)=["']?https?:/i.test(html), 'no external assets');
  assert.ok(html.includes('"name":"web"') || html.includes('"web"'), 'page embeds the current stats');

  const j = await statsJson(base);
  assert.equal(j.listeners.length, 1);
  const l = j.listeners[0];
  assert.equal(l.name, 'edge');
  assert.deepEqual(l.bind, ['127.0.0.1:8080']);
  assert.equal(l.connections.active, 2);
  assert.equal(l.connections.total, 17);
  assert.equal(l.connections.refused, 1);
  assert.equal(l.connections.sniff_timeouts, 3);
  const web = j.pools.web;
  assert.equal(web.protocol, 'h1');
  assert.equal(web.balance, 'roundrobin');
  assert.deepEqual(
    web.servers.map((s) => s.name),
    ['a', 'b', 'c'],
  );
  for (const s of web.servers) {
    for (const k of [
      'name',
      'address',
      'state',
      'weight',
      'health',
      'active',
      'total',
      'errors',
      'bytes_in',
      'bytes_out',
    ])
      assert.ok(k in s, `server field ${k}`);
    assert.equal(s.state, 'up');
    const h = s.health as Record<string, unknown>;
    assert.equal(h.type, 'http');
    assert.ok('last' in h && 'changed_at' in h);
    assert.ok(!Number.isNaN(Date.parse(String(h.changed_at))));
  }

  // Member counters flow through: a pick, released with bytes and a failure.
  const p = f.pool.pick();
  assert.ok(p.ok);
  p.release({ ok: false, failure: 'reset', bytesIn: 10, bytesOut: 20 });
  const j2 = await statsJson(base);
  const s2 = j2.pools.web.servers.find((s) => s.name === p.member.name);
  assert.equal(s2?.total, 1);
  assert.equal(s2?.errors, 1);
  assert.equal(s2?.bytes_in, 10);
  assert.equal(s2?.bytes_out, 20);

  const m = await fetch(`${base}/metrics`);
  assert.equal(m.status, 200);
  assert.match(m.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await m.text();
  assert.match(text, /^switchyard_server_up\{pool="web",server="a"\} 1$/m);
  for (const line of text.split('\n')) {
    if (line && !line.startsWith('#')) assert.match(line, /^switchyard_/, line);
  }

  let h = await fetch(`${base}/healthz`);
  assert.equal(h.status, 200);
  assert.equal(await h.text(), 'ok\n');
  state.draining = true;
  h = await fetch(`${base}/healthz`);
  assert.equal(h.status, 503);
  await h.text();

  const head = await fetch(`${base}/stats.json`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  const nf = await fetch(`${base}/nope`);
  assert.equal(nf.status, 404);
  await nf.text();
  const wrong = await fetch(`${base}/stats.json`, { method: 'DELETE' });
  assert.equal(wrong.status, 405);
  await wrong.text();
});

test('state changes show in stats.json and steer Pool.pick', async (t) => {
  const { admin, base, f } = await start();
  t.after(() => admin.close());
  const url = (srv: string, what: string) => `${base}/pools/web/servers/${srv}/${what}`;

  assert.deepEqual([...picks(f.pool, 30).keys()].sort(), ['a', 'b', 'c']);

  let r = await post(url('b', 'state'), { state: 'drain' });
  assert.equal(r.status, 200);
  const body = (await r.json()) as Record<string, unknown>;
  assert.equal(body.ok, true);
  assert.equal(body.state, 'drain');
  let j = await statsJson(base);
  assert.equal(j.pools.web.servers.find((s) => s.name === 'b')?.state, 'drain');
  assert.equal(picks(f.pool, 30).get('b'), undefined, 'drained server gets no new work');
  assert.ok(
    f.logs.some(
      (l) => l.event === 'admin' && l.action === 'set_state' && l.server === 'b' && l.to === 'drain',
    ),
  );

  r = await post(url('c', 'state'), { state: 'maint' });
  assert.equal(r.status, 200);
  await r.text();
  j = await statsJson(base);
  assert.deepEqual(
    j.pools.web.servers.map((s) => s.state),
    ['up', 'drain', 'maint'],
  );
  assert.deepEqual([...picks(f.pool, 30).keys()], ['a']);

  for (const srv of ['b', 'c']) {
    r = await post(url(srv, 'state'), { state: 'ready' });
    assert.equal(r.status, 200);
    await r.text();
  }
  j = await statsJson(base);
  assert.deepEqual(
    j.pools.web.servers.map((s) => s.state),
    ['up', 'up', 'up'],
  );
  assert.deepEqual([...picks(f.pool, 30).keys()].sort(), ['a', 'b', 'c']);
});

test('weight changes show in stats.json and steer Pool.pick', async (t) => {
  const { admin, base, f } = await start();
  t.after(() => admin.close());
  const url = (srv: string) => `${base}/pools/web/servers/${srv}/weight`;

  let r = await post(url('a'), { weight: 0 });
  assert.equal(r.status, 200);
  assert.equal(((await r.json()) as { weight: number }).weight, 0);
  let j = await statsJson(base);
  assert.equal(j.pools.web.servers.find((s) => s.name === 'a')?.weight, 0);
  assert.equal(picks(f.pool, 30).get('a'), undefined, 'weight 0 gets no new work');

  r = await post(url('b'), { weight: 3 });
  assert.equal(r.status, 200);
  await r.text();
  j = await statsJson(base);
  assert.deepEqual(
    j.pools.web.servers.map((s) => s.weight),
    [0, 3, 1],
  );
  const seen = picks(f.pool, 40);
  assert.equal(seen.get('b'), 30, 'smooth weighted round robin: 3 of every 4');
  assert.equal(seen.get('c'), 10);

  r = await post(url('a'), { weight: 256 });
  assert.equal(r.status, 200);
  await r.text();
  assert.equal(f.pool.members[0].weight, 256);
});

test('bad requests: unknown pool/server 404, bad bodies 400, oversized 413', async (t) => {
  const { admin, base, f } = await start();
  t.after(() => admin.close());
  const cases: [string, unknown, number][] = [
    ['/pools/nope/servers/a/state', { state: 'drain' }, 404],
    ['/pools/web/servers/zz/state', { state: 'drain' }, 404],
    ['/pools/nope/servers/a/weight', { weight: 1 }, 404],
    ['/pools/web/servers/zz/weight', { weight: 1 }, 404],
    ['/pools/web/servers/a/colour', { colour: 'red' }, 404],
    ['/pools/web/servers/a/state', { state: 'bogus' }, 400],
    ['/pools/web/servers/a/state', { state: 1 }, 400],
    ['/pools/web/servers/a/state', {}, 400],
    ['/pools/web/servers/a/state', 'not json', 400],
    ['/pools/web/servers/a/state', '["drain"]', 400],
    ['/pools/web/servers/a/weight', { weight: 257 }, 400],
    ['/pools/web/servers/a/weight', { weight: -1 }, 400],
    ['/pools/web/servers/a/weight', { weight: 1.5 }, 400],
    ['/pools/web/servers/a/weight', { weight: '10' }, 400],
    ['/pools/web/servers/a/weight', '', 400],
  ];
  for (const [path, body, status] of cases) {
    const r = await post(`${base}${path}`, body);
    assert.equal(r.status, status, `${path} ${JSON.stringify(body)}`);
    const j = (await r.json()) as { ok: boolean; errors: string[] };
    assert.equal(j.ok, false);
    assert.ok(j.errors.length > 0 && typeof j.errors[0] === 'string');
  }
  // Nothing of the above changed anything.
  assert.deepEqual(
    f.pool.members.map((m) => [m.admin, m.weight]),
    [
      ['ready', 1],
      ['ready', 1],
      ['ready', 1],
    ],
  );

  const get = await fetch(`${base}/pools/web/servers/a/state`);
  assert.equal(get.status, 405);
  await get.text();

  const big = await post(`${base}/pools/web/servers/a/state`, { state: 'drain', pad: 'x'.repeat(70 * 1024) });
  assert.equal(big.status, 413);
  await big.text();
  assert.equal(f.pool.members[0].admin, 'ready');

  // Percent-encoded names (server names default to their address).
  const enc = await post(`${base}/pools/web/servers/%E0%A4%A/state`, { state: 'drain' });
  assert.equal(enc.status, 400);
  await enc.text();
});

test('POST /reload: 200 when applied, 400 with the errors when not, 500 when it throws', async (t) => {
  const { admin, base, state } = await start();
  t.after(() => admin.close());

  let r = await post(`${base}/reload`, '');
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { ok: true });
  assert.equal(state.reloads, 1);

  const errors = [
    '/etc/switchyard.yaml:12:7: unknown key "balanse"',
    '/etc/switchyard.yaml:20:3: pool "x" not defined',
  ];
  state.next = async () => ({ ok: false, errors });
  r = await post(`${base}/reload`, '');
  assert.equal(r.status, 400);
  assert.deepEqual(await r.json(), { ok: false, errors });
  assert.equal(state.reloads, 2);

  state.next = async () => {
    throw new Error('boom');
  };
  r = await post(`${base}/reload`, '');
  assert.equal(r.status, 500);
  assert.equal(((await r.json()) as { ok: boolean }).ok, false);

  const g = await fetch(`${base}/reload`);
  assert.equal(g.status, 405);
  await g.text();
  assert.equal(state.reloads, 3, 'GET never reloads');

  // Reloads never overlap: two at once run one after the other.
  let running = 0;
  let overlapped = false;
  state.next = async () => {
    running++;
    if (running > 1) overlapped = true;
    await new Promise((res) => setTimeout(res, 20));
    running--;
    return { ok: true };
  };
  const both = await Promise.all([post(`${base}/reload`, ''), post(`${base}/reload`, '')]);
  for (const b of both) {
    assert.equal(b.status, 200);
    await b.text();
  }
  assert.equal(overlapped, false);
  assert.equal(state.reloads, 5);
});

test('basic auth: refused without or with wrong credentials, accepted with the right ones', async (t) => {
  const { admin, base, f, state } = await start({ user: 'admin', password: 's3cret:with colon' });
  t.after(() => admin.close());
  const basic = (u: string, p: string) => ({
    authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`,
  });
  const good = basic('admin', 's3cret:with colon');

  for (const path of ['/', '/stats.json', '/metrics']) {
    const r = await fetch(`${base}${path}`);
    assert.equal(r.status, 401, path);
    assert.match(r.headers.get('www-authenticate') ?? '', /^Basic realm="/);
    await r.text();
  }
  for (const headers of [
    basic('admin', 'wrong'),
    basic('root', 's3cret:with colon'),
    basic('admin', 's3cret'),
    { authorization: 'Bearer abc' },
    { authorization: 'Basic !!!' },
  ]) {
    const r = await fetch(`${base}/stats.json`, { headers });
    assert.equal(r.status, 401, JSON.stringify(headers));
    await r.text();
  }

  let r = await post(`${base}/pools/web/servers/a/state`, { state: 'maint' }, basic('admin', 'nope'));
  assert.equal(r.status, 401);
  await r.text();
  assert.equal(f.pool.members[0].admin, 'ready', 'refused request changed nothing');
  r = await post(`${base}/reload`, '');
  assert.equal(r.status, 401);
  await r.text();
  assert.equal(state.reloads, 0);

  const j = await statsJson(base, good);
  assert.equal(j.pools.web.servers.length, 3);
  r = await post(`${base}/pools/web/servers/a/state`, { state: 'maint' }, good);
  assert.equal(r.status, 200);
  await r.text();
  assert.equal(f.pool.members[0].admin, 'maint');
  r = await fetch(`${base}/metrics`, { headers: good });
  assert.equal(r.status, 200);
  await r.text();

  // Probes carry no credentials; /healthz tells only serving/draining.
  r = await fetch(`${base}/healthz`);
  assert.equal(r.status, 200);
  await r.text();
});

test('bind failure rejects; close frees the port', async () => {
  const { admin } = await start();
  const f = fixture();
  await assert.rejects(
    startAdmin({
      bind: { host: '127.0.0.1', port: admin.address.port },
      stats: f.stats,
      reload: async () => ({ ok: true }),
      draining: () => false,
      logger: f.logger,
    }),
    /EADDRINUSE/,
  );
  const port = admin.address.port;
  await admin.close();
  const again = await startAdmin({
    bind: { host: '127.0.0.1', port },
    stats: f.stats,
    reload: async () => ({ ok: true }),
    draining: () => false,
    logger: f.logger,
  });
  await again.close();
});

test('refuses to start open on a non-loopback address or with an empty password', async () => {
  const f = fixture();
  const base = {
    stats: f.stats,
    reload: async (): Promise<ReloadResult> => ({ ok: true }),
    draining: () => false,
    logger: f.logger,
  };
  await assert.rejects(
    startAdmin({ ...base, bind: { host: '', port: 0 } }),
    /not loopback: admin.auth is required/,
  );
  await assert.rejects(startAdmin({ ...base, bind: { host: '0.0.0.0', port: 0 } }), /not loopback/);
  await assert.rejects(
    startAdmin({ ...base, bind: { host: '127.0.0.1', port: 0 }, auth: { user: 'admin', password: '' } }),
    /non-empty password/,
  );
  // With auth, any address is allowed (here still loopback, so the test stays local).
  const a = await startAdmin({
    ...base,
    bind: { host: '127.0.0.1', port: 0 },
    auth: { user: 'u', password: 'p' },
  });
  await a.close();
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1'])
    assert.ok(isLoopback(h), h);
  for (const h of ['', '0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '::ffff:10.0.0.1', '127.0.0.1.example.com'])
    assert.ok(!isLoopback(h), h);
});
