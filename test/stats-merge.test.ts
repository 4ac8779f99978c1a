// The merge of worker snapshots (multi-process admin): sums, the "down if any worker sees
// it down" rule, latency from summed buckets, and the Prometheus text merge.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import {
  mergeProcessMetrics,
  mergePrometheus,
  mergeSnapshots,
  type WorkerSnapshot,
} from '../src/stats/merge.js';
import { LATENCY_BOUNDS_MS } from '../src/stats/registry.js';
import type { RequestStats, ServerStats, StatsJson } from '../src/stats/render/json.js';
import type { ProcessMetricsJson } from '../src/stats/render/prometheus.js';

const NB = LATENCY_BOUNDS_MS.length + 1;

function req(total: number): RequestStats {
  return {
    total,
    rate: 0,
    rate_cur: 0,
    outcomes: { ok: total },
    codes: { http: { '2xx': total } },
    bytes_in: total,
    bytes_out: 2 * total,
  };
}

function server(name: string, state: string, total: number): ServerStats {
  return {
    name,
    address: `127.0.0.1:${name === 'a' ? 1 : 2}`,
    state,
    weight: 1,
    health: {
      type: 'tcp',
      last: null,
      changed_at: new Date(0).toISOString(),
      status: state,
      ejected_until: null,
    },
    admin: 'ready',
    backup: false,
    maxconn: 0,
    active: 1,
    total,
    errors: 0,
    bytes_in: total,
    bytes_out: 2 * total,
    rate: 0,
    requests: req(total),
    latency_ms: { p50: null, p90: null, p99: null, mean: null, count: 0, over: 'all' },
  };
}

/** One worker that handled `na` units on a and `nb` on b, all in the bucket `bucket`. */
function snap(stateB: string, na: number, nb: number, bucket: number, prom: string): WorkerSnapshot {
  const servers = [server('a', 'up', na), server('b', stateB, nb)];
  const stats: StatsJson = {
    time: new Date().toISOString(),
    started_at: new Date(1000).toISOString(),
    uptime_s: 1,
    window_s: 10,
    listeners: [
      {
        name: 'edge',
        bind: ['127.0.0.1:1'],
        protocols: ['http1'],
        connections: { active: 1, total: na + nb, refused: 0, sniff_timeouts: 0, rate: 0 },
        requests: req(na + nb),
        routes: [{ name: 'r', pool: 'h', deny: false, requests: req(na + nb) }],
      },
    ],
    pools: {
      h: {
        protocol: 'h1',
        balance: 'roundrobin',
        health: { type: 'tcp', interval_ms: 100, timeout_ms: 100, rise: 1, fall: 1 },
        servers,
        summary: {
          servers: 2,
          up: 0,
          down: 0,
          drain: 0,
          maint: 0,
          active: 2,
          total: na + nb,
          errors: 0,
          bytes_in: 0,
          bytes_out: 0,
          rate: 0,
          queue: null,
        },
        requests: req(na + nb),
        latency_ms: { p50: null, p90: null, p99: null, mean: null, count: 0, over: 'all' },
      },
    },
  };
  const h = (n: number) => {
    const all = new Array<number>(NB).fill(0);
    all[bucket] = n;
    return { all, window: all, sumMs: n * LATENCY_BOUNDS_MS[bucket] };
  };
  return { stats, hist: { h: { a: h(na), b: h(nb) } }, prom };
}

const prom = (up: number, stateB: string, total: number): string =>
  [
    '# HELP switchyard_server_selected_total x',
    '# TYPE switchyard_server_selected_total counter',
    `switchyard_server_selected_total{pool="h",server="b"} ${total}`,
    '# HELP switchyard_server_up x',
    '# TYPE switchyard_server_up gauge',
    `switchyard_server_up{pool="h",server="b"} ${up}`,
    '# HELP switchyard_server_state x',
    '# TYPE switchyard_server_state gauge',
    `switchyard_server_state{pool="h",server="b",state="${stateB}"} 1`,
    '# HELP switchyard_pool_servers x',
    '# TYPE switchyard_pool_servers gauge',
    'switchyard_pool_servers{pool="h",state="up"} 2',
    '',
  ].join('\n');

test('counters are summed, a server is down if any worker sees it down, latency comes from summed buckets', () => {
  const w1 = snap('up', 3, 4, 0, prom(1, 'up', 4));
  const w2 = snap('down', 5, 6, 5, prom(0, 'down', 6));
  const m = mergeSnapshots([w1, w2]);
  const h = m.stats.pools.h;
  assert.equal(h.requests.total, 18);
  assert.deepEqual(h.requests.codes, { http: { '2xx': 18 } });
  assert.deepEqual(
    h.servers.map((s) => [s.name, s.state, s.total, s.active, s.requests.total]),
    [
      ['a', 'up', 8, 2, 8],
      ['b', 'down', 10, 2, 10],
    ],
  );
  assert.equal(h.summary.up, 1);
  assert.equal(h.summary.down, 1);
  assert.equal(h.summary.total, 18);
  assert.equal(m.stats.listeners[0].connections.total, 18);
  assert.equal(m.stats.listeners[0].routes[0].requests.total, 18);
  // 7 units in bucket 0 (≤ 0.5 ms), 11 in bucket 5 (5–10 ms]: the median is in the slow bucket.
  assert.equal(h.latency_ms.count, 18);
  assert.ok((h.latency_ms.p50 ?? 0) > 5, String(h.latency_ms.p50));
  assert.equal(m.shownBy.get('h')?.get('b'), 1);
  assert.equal(m.shownBy.get('h')?.get('a'), 0);

  const text = mergePrometheus([w1.prom, w2.prom], m);
  assert.match(text, /^switchyard_server_selected_total\{pool="h",server="b"\} 10$/m);
  assert.match(text, /^switchyard_server_up\{pool="h",server="b"\} 0$/m);
  assert.match(text, /^switchyard_server_state\{pool="h",server="b",state="down"\} 1$/m);
  assert.doesNotMatch(text, /state="up"\} 1\n.*server="b"/);
  assert.doesNotMatch(text, /switchyard_server_state\{pool="h",server="b",state="up"\}/);
  assert.match(text, /^switchyard_pool_servers\{pool="h",state="up"\} 1$/m);
  assert.match(text, /^switchyard_pool_servers\{pool="h",state="down"\} 1$/m);
  assert.equal(text.match(/^# TYPE switchyard_server_up gauge$/gm)?.length, 1);
});

/**
 * One process's metrics as processMetricsJson() gives them: prom-client JSON of a real
 * registry, every series labelled with the process's `worker`.
 */
async function processJson(worker: string, cpu: number): Promise<ProcessMetricsJson> {
  const r = new Registry();
  new Counter({ name: 'switchyard_process_cpu_seconds_total', help: 'CPU time.', registers: [r] }).inc(cpu);
  const heap = new Gauge({
    name: 'switchyard_nodejs_heap_space_size_used_bytes',
    help: 'Used size of heap space.',
    labelNames: ['space'],
    registers: [r],
  });
  heap.set({ space: 'old' }, 10);
  heap.set({ space: 'new' }, 20);
  new Histogram({
    name: 'switchyard_nodejs_gc_duration_seconds',
    help: 'GC duration.',
    labelNames: ['kind'],
    buckets: [0.001, 0.01],
    registers: [r],
  }).observe({ kind: 'minor' }, 0.0005);
  // prom-client would keep one process's value of these (aggregator "omit" / "first").
  new Gauge({
    name: 'switchyard_process_start_time_seconds',
    help: 'Start.',
    aggregator: 'omit',
    registers: [r],
  }).set(cpu * 100);
  const json = await r.getMetricsAsJSON();
  for (const m of json) for (const v of m.values) v.labels = { worker, ...v.labels };
  return json;
}

test('process metrics of several processes: one HELP/TYPE per family, a worker label on every sample, nothing summed', async () => {
  const out = await mergeProcessMetrics([
    await processJson('1', 1.5),
    await processJson('2', 2.5),
    await processJson('primary', 0.25),
  ]);
  const lines = out.split('\n');
  assert.equal(lines.filter((l) => l.startsWith('# TYPE switchyard_process_cpu_seconds_total ')).length, 1);
  assert.equal(lines.filter((l) => l.startsWith('# HELP switchyard_process_cpu_seconds_total ')).length, 1);
  assert.equal(lines.filter((l) => l.startsWith('# TYPE ')).length, 4);
  const cpu = lines.filter((l) => l.startsWith('switchyard_process_cpu_seconds_total'));
  assert.deepEqual(cpu, [
    'switchyard_process_cpu_seconds_total{worker="1"} 1.5',
    'switchyard_process_cpu_seconds_total{worker="2"} 2.5',
    'switchyard_process_cpu_seconds_total{worker="primary"} 0.25',
  ]);
  assert.ok(lines.includes('switchyard_nodejs_heap_space_size_used_bytes{worker="2",space="new"} 20'));
  assert.ok(
    lines.includes('switchyard_nodejs_gc_duration_seconds_bucket{worker="1",le="0.001",kind="minor"} 1'),
  );
  assert.equal(lines.filter((l) => l.startsWith('switchyard_process_start_time_seconds{')).length, 3);
  // Every sample of a family follows its TYPE line, before the next family's.
  const gcType = lines.indexOf('# TYPE switchyard_nodejs_gc_duration_seconds histogram');
  const gcSamples = lines.flatMap((l, i) => (l.startsWith('switchyard_nodejs_gc_') ? [i] : []));
  assert.equal(gcSamples.length, 3 * 5);
  assert.ok(gcSamples.every((i) => i > gcType));
  assert.equal(await mergeProcessMetrics([]), '');
});
