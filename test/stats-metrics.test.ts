// /metrics parsed by a strict Prometheus text-format (0.0.4) parser: every counter must
// equal what was recorded, histograms must be well formed, labels must round-trip.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { startAdmin } from '../src/admin/server.js';
import { Pool } from '../src/balancer/pool.js';
import type { PoolLike } from '../src/balancer/types.js';
import { DEFAULT_LIMITS, DEFAULT_TIMEOUTS } from '../src/config/defaults.js';
import type { ListenerConfig, PoolConfig } from '../src/config/runtime.js';
import type { ListenerState } from '../src/core/proxy.js';
import type { AccessRecord } from '../src/core/types.js';
import { compileRouter } from '../src/router/compile.js';
import { quantileMs, StatsRegistry } from '../src/stats/registry.js';
import { buildStats } from '../src/stats/render/json.js';
import { testPoolConfig, testServers } from './helpers/pool-config.js';

// ---- a strict parser for the text exposition format -------------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface MetricFamily {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;

// Values as Prometheus reads them (Go's strconv.ParseFloat: NaN and Inf in any case).
function parseValue(s: string, line: string): number {
  if (/^nan$/i.test(s)) return Number.NaN;
  if (/^\+?inf(inity)?$/i.test(s)) return Number.POSITIVE_INFINITY;
  if (/^-inf(inity)?$/i.test(s)) return Number.NEGATIVE_INFINITY;
  assert.match(s, /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/, `bad value in: ${line}`);
  return Number(s);
}

function familyOf(name: string, families: Map<string, MetricFamily>): MetricFamily | undefined {
  const f = families.get(name);
  if (f) return f;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const h = families.get(name.slice(0, -suffix.length));
      if (h && (h.type === 'histogram' || h.type === 'summary')) return h;
    }
  }
  return undefined;
}

function parseExposition(text: string): Map<string, MetricFamily> {
  assert.ok(text.endsWith('\n'), 'exposition ends with a line feed');
  const families = new Map<string, MetricFamily>();
  const seen = new Set<string>();
  const closed = new Set<string>();
  let current: MetricFamily | undefined;
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue; // "empty lines are ignored" (text format 0.0.4)
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([^ ]+) (.*)$/.exec(line);
      if (!m) continue; // other comments are allowed
      const [, kind, name, rest] = m;
      assert.match(name, new RegExp(`${NAME.source}$`), line);
      let f = families.get(name);
      if (!f) {
        assert.ok(!closed.has(name), `family ${name} appears twice`);
        f = { name, type: 'untyped', help: '', samples: [] };
        families.set(name, f);
      }
      if (current && current !== f) closed.add(current.name);
      current = f;
      if (kind === 'TYPE') {
        assert.equal(f.samples.length, 0, `TYPE after samples: ${line}`);
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest), line);
        f.type = rest;
      } else {
        assert.ok(!/\\[^\\n]/.test(rest), `bad HELP escape: ${line}`);
        f.help = rest.replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
      }
      continue;
    }
    // name{labels} value [timestamp]
    const nm = NAME.exec(line);
    assert.ok(nm, `bad sample line: ${line}`);
    const name = nm[0];
    let i = name.length;
    const labels: Record<string, string> = {};
    if (line[i] === '{') {
      i++;
      while (line[i] !== '}') {
        const ln = LABEL.exec(line.slice(i));
        assert.ok(ln, `bad label name at ${i}: ${line}`);
        const lname = ln[0];
        i += lname.length;
        assert.equal(line.slice(i, i + 2), '="', `expected =" at ${i}: ${line}`);
        i += 2;
        let v = '';
        for (;;) {
          const c = line[i];
          assert.ok(c !== undefined, `unterminated label value: ${line}`);
          if (c === '"') break;
          if (c === '\\') {
            const e = line[i + 1];
            assert.ok(e === '\\' || e === '"' || e === 'n', `bad escape \\${e}: ${line}`);
            v += e === 'n' ? '\n' : e;
            i += 2;
          } else {
            v += c;
            i++;
          }
        }
        i++;
        assert.ok(!(lname in labels), `label ${lname} twice: ${line}`);
        labels[lname] = v;
        if (line[i] === ',') i++;
        else assert.equal(line[i], '}', `expected , or } at ${i}: ${line}`);
      }
      i++;
    }
    assert.equal(line[i], ' ', `expected a space before the value: ${line}`);
    const parts = line.slice(i + 1).split(' ');
    assert.ok(parts.length === 1 || parts.length === 2, line);
    const value = parseValue(parts[0], line);
    if (parts.length === 2) assert.match(parts[1], /^-?\d+$/, line);
    const f = familyOf(name, families);
    assert.ok(f, `sample without a TYPE/HELP family: ${line}`);
    assert.equal(f, current, `samples of ${f.name} are not contiguous: ${line}`);
    const key = `${name}{${Object.entries(labels)
      .sort()
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(',')}}`;
    assert.ok(!seen.has(key), `duplicate series ${key}`);
    seen.add(key);
    f.samples.push({ name, labels, value });
  }
  // Histograms: cumulative buckets in increasing le, +Inf equal to _count, and _sum.
  for (const f of families.values()) {
    if (f.type === 'counter')
      for (const s of f.samples) assert.ok(s.value >= 0 && Number.isFinite(s.value), `${s.name} >= 0`);
    if (f.type !== 'histogram') continue;
    const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
    for (const s of f.samples) {
      const { le, ...rest } = s.labels;
      const k = JSON.stringify(Object.entries(rest).sort());
      let g = groups.get(k);
      if (!g) {
        g = { buckets: [] };
        groups.set(k, g);
      }
      if (s.name === `${f.name}_bucket`) {
        assert.ok(le !== undefined, 'bucket has le');
        g.buckets.push([parseValue(le, s.name), s.value]);
      } else if (s.name === `${f.name}_sum`) g.sum = s.value;
      else if (s.name === `${f.name}_count`) g.count = s.value;
      else assert.fail(`unexpected sample ${s.name} in histogram ${f.name}`);
    }
    for (const g of groups.values()) {
      assert.ok(g.buckets.length > 1);
      for (let j = 1; j < g.buckets.length; j++) {
        assert.ok(g.buckets[j][0] > g.buckets[j - 1][0], 'le increasing');
        assert.ok(g.buckets[j][1] >= g.buckets[j - 1][1], 'buckets cumulative');
      }
      const last = g.buckets[g.buckets.length - 1];
      assert.equal(last[0], Number.POSITIVE_INFINITY, '+Inf bucket last');
      assert.equal(last[1], g.count, '+Inf bucket equals _count');
      assert.ok(g.sum !== undefined);
    }
  }
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`. */
function value(
  fams: Map<string, MetricFamily>,
  name: string,
  labels: Record<string, string>,
): number | undefined {
  const f = familyOf(name, fams);
  if (!f) return undefined;
  const hits = f.samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  assert.ok(hits.length <= 1, `${name} ${JSON.stringify(labels)} matches ${hits.length} samples`);
  return hits[0]?.value;
}

/** Sum of every sample of `name` whose labels include `labels`. */
function sum(fams: Map<string, MetricFamily>, name: string, labels: Record<string, string> = {}): number {
  const f = familyOf(name, fams);
  if (!f) return 0;
  return f.samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

// ---- fixture --------------------------------------------------------------------------

function poolConfig(name: string, protocol: PoolConfig['protocol'], servers: string[]): PoolConfig {
  return testPoolConfig(name, testServers(servers, 9200), { protocol, healthType: 'tcp' });
}

const WEIRD_ROUTE = 'say "hi" \\ back\nslash';

function fixture() {
  const pools = new Map<string, { pool: PoolLike; config: PoolConfig }>();
  for (const c of [poolConfig('web', 'h1', ['a', 'b']), poolConfig('greeters', 'h2', ['g1', 'g2'])])
    pools.set(c.name, { pool: new Pool(c), config: c });
  const lcfg: ListenerConfig = {
    name: 'edge',
    binds: [{ host: '', port: 8080 }],
    bindText: [':8080'],
    maxconn: 100,
    protocols: ['http1', 'h2', 'thrift', 'tcp'],
    timeouts: { ...DEFAULT_TIMEOUTS },
    limits: { ...DEFAULT_LIMITS },
    routes: [
      { name: 'grpc', match: { protocol: 'grpc' }, pool: 'greeters', deny: false },
      { name: WEIRD_ROUTE, match: { protocol: 'http' }, pool: 'web', deny: false },
    ],
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
    connections: { active: 4, total: 123, refused: 5, sniffTimeouts: 6 },
  };
  const stats = new StatsRegistry(() => ({ listeners: [listener], pools }), { timer: false });
  const logger = pino(
    { level: 'silent' },
    new Writable({
      write(_c, _e, cb) {
        cb();
      },
    }),
  );
  return { pools, listener, stats, logger };
}

function rec(over: Partial<AccessRecord>): AccessRecord {
  return {
    proto: 'http1',
    listener: 'edge',
    client: '127.0.0.1:50000',
    bytes_in: 0,
    bytes_out: 0,
    duration_ms: 1,
    outcome: 'ok',
    ...over,
  };
}

async function scrape(stats: StatsRegistry, logger: pino.Logger) {
  const admin = await startAdmin({
    bind: { host: '127.0.0.1', port: 0 },
    stats,
    reload: async () => ({ ok: true }),
    draining: () => false,
    logger,
  });
  try {
    const r = await fetch(`http://127.0.0.1:${admin.address.port}/metrics`);
    assert.equal(r.status, 200);
    return parseExposition(await r.text());
  } finally {
    await admin.close();
  }
}

// ---- tests ----------------------------------------------------------------------------

test('counters in /metrics match the records fed in, per label set', async () => {
  const { stats, logger } = fixture();
  const web = { listener: 'edge', route: WEIRD_ROUTE, pool: 'web', protocol: 'http1' };
  const grpc = { listener: 'edge', route: 'grpc', pool: 'greeters', protocol: 'grpc' };
  for (let i = 0; i < 7; i++)
    stats.record(
      rec({
        route: WEIRD_ROUTE,
        pool: 'web',
        server: 'a',
        status: 200,
        bytes_in: 10,
        bytes_out: 100,
        duration_ms: 0.3,
      }),
    );
  for (let i = 0; i < 2; i++)
    stats.record(
      rec({ route: WEIRD_ROUTE, pool: 'web', server: 'b', status: 503, bytes_in: 5, duration_ms: 7 }),
    );
  stats.record(
    rec({ route: WEIRD_ROUTE, pool: 'web', server: 'b', outcome: 'timeout', duration_ms: 20_000 }),
  );
  for (let i = 0; i < 11; i++)
    stats.record(
      rec({
        proto: 'grpc',
        route: 'grpc',
        pool: 'greeters',
        server: 'g1',
        status: 200,
        grpc_status: 0,
        duration_ms: 2,
      }),
    );
  for (let i = 0; i < 3; i++)
    stats.record(
      rec({
        proto: 'grpc',
        route: 'grpc',
        pool: 'greeters',
        status: 200,
        grpc_status: 14,
        outcome: 'no_server',
      }),
    );
  stats.record(rec({ proto: 'thrift', outcome: 'no_route', thrift_type: 'exception' }));
  stats.record(rec({ proto: 'tcp', outcome: 'no_route', bytes_in: 3 }));

  const m = await scrape(stats, logger);
  const req = 'switchyard_requests_total';
  assert.equal(value(m, req, { ...web, server: 'a', code: '2xx', outcome: 'ok' }), 7);
  assert.equal(value(m, req, { ...web, server: 'b', code: '5xx', outcome: 'ok' }), 2);
  assert.equal(value(m, req, { ...web, server: 'b', code: '', outcome: 'timeout' }), 1);
  assert.equal(value(m, req, { ...grpc, server: 'g1', code: '0', outcome: 'ok' }), 11);
  assert.equal(value(m, req, { ...grpc, server: '', code: '14', outcome: 'no_server' }), 3);
  assert.equal(
    value(m, req, {
      listener: 'edge',
      route: '',
      pool: '',
      protocol: 'thrift',
      code: 'exception',
      outcome: 'no_route',
    }),
    1,
  );
  assert.equal(value(m, req, { protocol: 'tcp', code: '', outcome: 'no_route' }), 1);
  assert.equal(sum(m, req), 7 + 2 + 1 + 11 + 3 + 1 + 1);
  assert.equal(sum(m, req, { listener: 'edge' }), 26, 'every record is counted once');

  assert.equal(value(m, 'switchyard_request_bytes_in_total', { ...web, server: 'a' }), 70);
  assert.equal(value(m, 'switchyard_request_bytes_out_total', { ...web, server: 'a' }), 700);
  assert.equal(value(m, 'switchyard_request_bytes_in_total', { ...web, server: 'b' }), 10);
  assert.equal(sum(m, 'switchyard_request_bytes_in_total'), 70 + 10 + 3);

  // Latency: 0.3 ms lands in le=0.0005, 7 ms in le=0.01, 20 s only in +Inf.
  const lat = 'switchyard_request_duration_seconds';
  const a = { pool: 'web', server: 'a' };
  const b = { pool: 'web', server: 'b' };
  assert.equal(value(m, `${lat}_bucket`, { ...a, le: '0.0005' }), 7);
  assert.equal(value(m, `${lat}_count`, a), 7);
  assert.ok(Math.abs((value(m, `${lat}_sum`, a) ?? 0) - 0.0021) < 1e-9);
  assert.equal(value(m, `${lat}_bucket`, { ...b, le: '0.005' }), 0);
  assert.equal(value(m, `${lat}_bucket`, { ...b, le: '0.01' }), 2);
  assert.equal(value(m, `${lat}_bucket`, { ...b, le: '10' }), 2);
  assert.equal(value(m, `${lat}_bucket`, { ...b, le: '+Inf' }), 3);
  assert.equal(value(m, `${lat}_count`, { pool: 'greeters', server: '' }), 3, 'no-server work is timed too');

  assert.equal(value(m, 'switchyard_listener_connections', { listener: 'edge' }), 4);
  assert.equal(value(m, 'switchyard_listener_connections_total', { listener: 'edge' }), 123);
  assert.equal(value(m, 'switchyard_listener_connections_refused_total', { listener: 'edge' }), 5);
  assert.equal(value(m, 'switchyard_listener_sniff_timeouts_total', { listener: 'edge' }), 6);

  // The weird route name survived escaping and parsing.
  assert.ok(m.get(req)?.samples.some((s) => s.labels.route === WEIRD_ROUTE));
  assert.equal(m.get(req)?.type, 'counter');
  assert.equal(m.get(lat)?.type, 'histogram');
  // Process metrics ride along, prefixed too.
  assert.ok(m.has('switchyard_process_cpu_user_seconds_total'));
  for (const name of m.keys()) assert.match(name, /^switchyard_/);
});

test('server gauges and counters follow the real pool', async () => {
  const { pools, stats, logger } = fixture();
  const web = pools.get('web')?.pool as Pool;
  for (let i = 0; i < 6; i++) {
    const p = web.pick();
    assert.ok(p.ok);
    p.release({ ok: i !== 0, failure: i === 0 ? 'reset' : undefined, bytesIn: 1, bytesOut: 2 });
  }
  const held = web.pick(); // one unit still in flight
  assert.ok(held.ok);
  web.setAdmin('b', 'drain');
  web.setWeight('a', 7);
  const g = pools.get('greeters')?.pool as Pool;
  const g2 = g.members[1];
  g2.health = 'down';
  g2.lastCheck = { ok: false, at: Date.now(), ms: 12.5, detail: 'connect ECONNREFUSED' };
  g.refresh('health check failed');
  g.members[0].lastCheck = { ok: true, at: Date.now(), ms: 0.75, detail: 'connected' };

  const m = await scrape(stats, logger);
  const a = { pool: 'web', server: 'a' };
  const b = { pool: 'web', server: 'b' };
  const member = (name: string) => web.members.find((x) => x.name === name);
  assert.equal(value(m, 'switchyard_server_selected_total', a), member('a')?.total);
  assert.equal(
    sum(m, 'switchyard_server_selected_total', { pool: 'web' }),
    7,
    'six released picks and one in flight',
  );
  assert.equal(sum(m, 'switchyard_server_errors_total', { pool: 'web' }), 1);
  assert.equal(sum(m, 'switchyard_server_bytes_in_total', { pool: 'web' }), 6);
  assert.equal(sum(m, 'switchyard_server_bytes_out_total', { pool: 'web' }), 12);
  assert.equal(sum(m, 'switchyard_server_active', { pool: 'web' }), 1);
  assert.equal(value(m, 'switchyard_server_weight', a), 7);
  assert.equal(value(m, 'switchyard_server_state', { ...b, state: 'drain' }), 1);
  assert.equal(value(m, 'switchyard_server_state', { ...b, state: 'up' }), 0);
  assert.equal(value(m, 'switchyard_server_admin_state', { ...b, state: 'drain' }), 1);
  assert.equal(value(m, 'switchyard_server_up', b), 1, 'drain is an admin state; health still up');
  const gb = { pool: 'greeters', server: 'g2' };
  assert.equal(value(m, 'switchyard_server_up', gb), 0);
  assert.equal(value(m, 'switchyard_server_state', { ...gb, state: 'down' }), 1);
  assert.equal(value(m, 'switchyard_server_check_success', gb), 0);
  assert.equal(value(m, 'switchyard_server_check_duration_seconds', gb), 0.0125);
  assert.equal(value(m, 'switchyard_server_check_success', { pool: 'greeters', server: 'g1' }), 1);
  assert.equal(value(m, 'switchyard_pool_servers', { pool: 'greeters', state: 'up' }), 1);
  assert.equal(value(m, 'switchyard_pool_servers', { pool: 'greeters', state: 'down' }), 1);
  assert.equal(value(m, 'switchyard_pool_servers', { pool: 'web', state: 'drain' }), 1);
  held.release({ ok: true });
});

test('stats.json agrees with the records: outcomes, codes, rates over sampled seconds, percentiles', () => {
  const { stats } = fixture();
  stats.sample(1000);
  for (let i = 0; i < 30; i++)
    stats.record(rec({ route: WEIRD_ROUTE, pool: 'web', server: 'a', status: 200, duration_ms: 3 }));
  stats.sample(2000);
  for (let i = 0; i < 10; i++)
    stats.record(rec({ route: WEIRD_ROUTE, pool: 'web', server: 'a', status: 404, duration_ms: 30 }));
  stats.record(
    rec({ route: WEIRD_ROUTE, pool: 'web', server: 'a', outcome: 'server_reset', duration_ms: 300 }),
  );
  stats.sample(3000);

  const j = buildStats(stats);
  const a = j.pools.web.servers.find((s) => s.name === 'a');
  assert.ok(a);
  assert.equal(a.requests.total, 41);
  assert.deepEqual(a.requests.outcomes, { ok: 40, server_reset: 1 });
  assert.deepEqual(a.requests.codes, { http: { '2xx': 30, '4xx': 10 } });
  assert.equal(a.requests.rate, 20.5, '41 units over 2 sampled seconds');
  assert.equal(a.requests.rate_cur, 11, 'last second');
  assert.equal(a.latency_ms.over, 'window');
  assert.equal(a.latency_ms.count, 41);
  // 30 of 41 at 3 ms (bucket 2.5–5), so p50 is in that bucket; p90 in 25–50 ms.
  assert.ok(
    a.latency_ms.p50 !== null && a.latency_ms.p50 > 2.5 && a.latency_ms.p50 <= 5,
    String(a.latency_ms.p50),
  );
  assert.ok(
    a.latency_ms.p90 !== null && a.latency_ms.p90 > 25 && a.latency_ms.p90 <= 50,
    String(a.latency_ms.p90),
  );
  assert.ok(a.latency_ms.p99 !== null && a.latency_ms.p99 > 250 && a.latency_ms.p99 <= 500);

  const l = j.listeners[0];
  assert.equal(l.requests.total, 41);
  const route = l.routes.find((r) => r.name === WEIRD_ROUTE);
  assert.equal(route?.requests.total, 41);
  assert.equal(route?.pool, 'web');
  assert.equal(l.routes.find((r) => r.name === 'grpc')?.requests.total, 0);

  // Idle for a whole window: rates drop to 0, percentiles fall back to all time.
  for (let i = 0; i < 11; i++) stats.sample(4000 + i * 1000);
  const idle = buildStats(stats).pools.web.servers.find((s) => s.name === 'a');
  assert.equal(idle?.requests.rate, 0);
  assert.equal(idle?.latency_ms.over, 'all');
  assert.equal(idle?.latency_ms.count, 41);
});

test('quantile estimate interpolates inside the bucket', () => {
  const counts = new Float64Array(15);
  counts[3] = 100; // (2.5, 5] ms
  assert.equal(quantileMs(counts, 0.5), 3.75);
  assert.equal(quantileMs(counts, 1), 5);
  assert.equal(quantileMs(new Float64Array(15), 0.5), undefined);
  const inf = new Float64Array(15);
  inf[14] = 1;
  assert.equal(quantileMs(inf, 0.5), 10_000, 'beyond the last bound reports the last bound');
});

test('bounded: distinct outcomes and series are capped, nothing is lost from the totals', async () => {
  const { logger } = fixture();
  const stats = new StatsRegistry(() => ({ listeners: [], pools: new Map() }), {
    timer: false,
    maxSeries: 5,
  });
  for (let i = 0; i < 100; i++) stats.record(rec({ outcome: `weird_${i}`, pool: 'p', server: `s${i % 10}` }));
  const m = await scrape(stats, logger);
  const outcomes = new Set(m.get('switchyard_requests_total')?.samples.map((s) => s.labels.outcome));
  assert.ok(outcomes.size <= 64, `${outcomes.size} outcome labels`);
  assert.ok(outcomes.has('other'));
  assert.equal(sum(m, 'switchyard_requests_total'), 100);
  assert.equal(stats.seriesList.length, 6, 'five series plus the overflow one');
  assert.ok(m.get('switchyard_requests_total')?.samples.some((s) => s.labels.server === '_overflow'));
});

test('disabled registry counts nothing', () => {
  const { stats } = fixture();
  stats.enabled = false;
  stats.record(rec({ pool: 'web', server: 'a' }));
  assert.equal(stats.seriesList.length, 0);
});

test('rates divide by the time that passed between samples, not by the sample count', () => {
  const { stats } = fixture();
  stats.sample(10_000);
  for (let i = 0; i < 40; i++)
    stats.record(rec({ route: 'grpc', pool: 'greeters', server: 'g1', proto: 'grpc' }));
  stats.sample(12_000); // the sampler ran late: two seconds passed
  const g1 = buildStats(stats).pools.greeters.requests;
  assert.equal(g1.rate, 20);
  assert.equal(g1.rate_cur, 20);
});
