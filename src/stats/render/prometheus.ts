// Prometheus text exposition (format 0.0.4), written by hand from our own counters.
//
// Why not prom-client's Counter/Histogram: their inc()/observe() hash a label object into
// a key string and validate labels on every call — a per-record cost on the hot path —
// and a Histogram cannot be loaded from bucket counts kept elsewhere, so a pull-style
// collect() over StatsRegistry is not possible for latency. The format is small and
// stable; writing it here costs one pass over the series per scrape. prom-client is still
// used for the process metrics (CPU, memory, event-loop lag, GC), which it collects on
// scrape without touching the hot path.
import { collectDefaultMetrics, Registry } from 'prom-client';
import { CODE_LABELS, LATENCY_BOUNDS_MS, queueOf, type StatsRegistry } from '../registry.js';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const LE = [...LATENCY_BOUNDS_MS.map((ms) => String(ms / 1000)), '+Inf'];

/** Escape a label value: backslash, double quote and line feed (exposition format). */
export function escapeLabel(v: string): string {
  return /[\\"\n]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v;
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

/** One metric family; samples are appended in order, HELP/TYPE written once. */
class Family {
  readonly lines: string[] = [];
  constructor(
    readonly name: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    readonly help: string,
  ) {}

  add(labels: string, value: number, suffix = ''): void {
    this.lines.push(`${this.name}${suffix}${labels ? `{${labels}}` : ''} ${num(value)}`);
  }

  write(out: string[]): void {
    if (this.lines.length === 0) return;
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`);
    for (const l of this.lines) out.push(l);
  }
}

function labels(pairs: readonly (readonly [string, string])[]): string {
  let s = '';
  for (const [k, v] of pairs) s += `${s ? ',' : ''}${k}="${escapeLabel(v)}"`;
  return s;
}

let processRegistry: Registry | undefined;

function processRegistryOf(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: 'switchyard_' });
  }
  return processRegistry;
}

/** Process metrics from prom-client, prefixed `switchyard_`; created on first scrape. */
export async function processMetrics(): Promise<string> {
  return processRegistryOf().metrics();
}

/** Process metrics in prom-client's JSON form (what processMetricsJson() returns). */
export type ProcessMetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/**
 * This process's metrics as prom-client JSON, every series labelled `worker` (a worker id,
 * or "primary"): the multi-process primary lists every process's (stats/merge.ts).
 */
export async function processMetricsJson(worker: string): Promise<ProcessMetricsJson> {
  const json = await processRegistryOf().getMetricsAsJSON();
  for (const m of json) for (const v of m.values) v.labels = { worker, ...v.labels };
  return json;
}

export interface PrometheusOptions {
  /** Append the process metrics (CPU, memory, event loop, GC). Default true. */
  process?: boolean;
}

export async function renderPrometheus(reg: StatsRegistry, opts: PrometheusOptions = {}): Promise<string> {
  const out: string[] = [];
  const view = reg.view();

  // Listeners.
  const lConn = new Family('switchyard_listener_connections', 'gauge', 'Client connections open now.');
  const lTotal = new Family(
    'switchyard_listener_connections_total',
    'counter',
    'Client connections accepted.',
  );
  const lRefused = new Family(
    'switchyard_listener_connections_refused_total',
    'counter',
    'Client connections refused (maxconn, protocol not accepted, draining).',
  );
  const lSniff = new Family(
    'switchyard_listener_sniff_timeouts_total',
    'counter',
    'Connections that sent nothing within timeouts.sniff and were handled as tcp.',
  );
  for (const l of view.listeners) {
    const lb = labels([['listener', l.name]]);
    lConn.add(lb, l.connections.active);
    lTotal.add(lb, l.connections.total);
    lRefused.add(lb, l.connections.refused);
    lSniff.add(lb, l.connections.sniffTimeouts);
  }

  // Units of work (requests, streams, calls, tunnels), from the registry's series.
  const req = new Family(
    'switchyard_requests_total',
    'counter',
    'Units of work finished (HTTP requests, gRPC calls, Thrift calls, TCP/TLS connections) by code and outcome.',
  );
  const bIn = new Family(
    'switchyard_request_bytes_in_total',
    'counter',
    'Bytes received from clients for finished units of work.',
  );
  const bOut = new Family(
    'switchyard_request_bytes_out_total',
    'counter',
    'Bytes sent to clients for finished units of work.',
  );
  for (const s of reg.seriesList) {
    const base = labels([
      ['listener', s.listener],
      ['route', s.route],
      ['pool', s.pool],
      ['server', s.server],
      ['protocol', s.proto],
    ]);
    for (const c of s.cells.values()) {
      req.add(
        `${base},${labels([
          ['code', CODE_LABELS[c.code]],
          ['outcome', reg.outcomeName(c.outcome)],
        ])}`,
        c.n,
      );
    }
    bIn.add(base, s.bytesIn);
    bOut.add(base, s.bytesOut);
  }

  const lat = new Family(
    'switchyard_request_duration_seconds',
    'histogram',
    'Duration of finished units of work per pool and server (server "" = no server could be picked).',
  );
  for (const [pool, servers] of reg.timingsByPool) {
    for (const [server, t] of servers) {
      const base = labels([
        ['pool', pool],
        ['server', server],
      ]);
      let cum = 0;
      for (let i = 0; i < LE.length; i++) {
        cum += t.hist.counts[i];
        lat.add(`${base},le="${LE[i]}"`, cum, '_bucket');
      }
      lat.add(base, t.hist.sumMs / 1000, '_sum');
      lat.add(base, t.hist.count, '_count');
    }
  }

  // Servers, from the live pools (members carry their own counters).
  const up = new Family(
    'switchyard_server_up',
    'gauge',
    '1 when active health says up and the server is not ejected by outlier detection.',
  );
  const state = new Family(
    'switchyard_server_state',
    'gauge',
    'Server state as the stats page shows it: 1 for the current one of up, down, drain, maint.',
  );
  const admin = new Family(
    'switchyard_server_admin_state',
    'gauge',
    'Admin state set by config or the admin API: 1 for the current one of ready, drain, maint.',
  );
  const weight = new Family('switchyard_server_weight', 'gauge', 'Current weight (0-256).');
  const active = new Family('switchyard_server_active', 'gauge', 'Units of work in flight on the server.');
  const total = new Family(
    'switchyard_server_selected_total',
    'counter',
    'Units of work handed to the server (each retry counts).',
  );
  const errors = new Family(
    'switchyard_server_errors_total',
    'counter',
    'Units of work that failed on the server.',
  );
  const sIn = new Family('switchyard_server_bytes_in_total', 'counter', 'Bytes sent to the server.');
  const sOut = new Family('switchyard_server_bytes_out_total', 'counter', 'Bytes received from the server.');
  const chkDur = new Family(
    'switchyard_server_check_duration_seconds',
    'gauge',
    'Duration of the last active health check.',
  );
  const chkOk = new Family(
    'switchyard_server_check_success',
    'gauge',
    '1 when the last active health check passed.',
  );
  const changed = new Family(
    'switchyard_server_last_change_timestamp_seconds',
    'gauge',
    'Unix time of the last state change.',
  );
  const pServers = new Family('switchyard_pool_servers', 'gauge', 'Servers of the pool by state.');
  const pQueue = new Family('switchyard_pool_queue', 'gauge', 'Units of work waiting for a server slot.');
  const now = Date.now();
  for (const [name, { pool }] of view.pools) {
    const counts = { up: 0, down: 0, drain: 0, maint: 0 };
    for (const m of pool.members) {
      const b = labels([
        ['pool', name],
        ['server', m.name],
      ]);
      const st = m.state;
      counts[st]++;
      up.add(b, m.health === 'up' && m.ejectedUntil <= now ? 1 : 0);
      for (const s of ['up', 'down', 'drain', 'maint'] as const)
        state.add(`${b},state="${s}"`, st === s ? 1 : 0);
      for (const s of ['ready', 'drain', 'maint'] as const)
        admin.add(`${b},state="${s}"`, m.admin === s ? 1 : 0);
      weight.add(b, m.weight);
      active.add(b, m.active);
      total.add(b, m.total);
      errors.add(b, m.errors);
      sIn.add(b, m.bytesIn);
      sOut.add(b, m.bytesOut);
      if (m.lastCheck) {
        chkDur.add(b, m.lastCheck.ms / 1000);
        chkOk.add(b, m.lastCheck.ok ? 1 : 0);
      }
      changed.add(b, Math.floor(m.changedAt / 1000));
    }
    for (const [s, n] of Object.entries(counts)) pServers.add(`pool="${escapeLabel(name)}",state="${s}"`, n);
    const q = queueOf(pool);
    if (q !== null) pQueue.add(labels([['pool', name]]), q);
  }

  for (const f of [
    lConn,
    lTotal,
    lRefused,
    lSniff,
    req,
    bIn,
    bOut,
    lat,
    up,
    state,
    admin,
    weight,
    active,
    total,
    errors,
    sIn,
    sOut,
    chkDur,
    chkOk,
    changed,
    pServers,
    pQueue,
  ])
    f.write(out);

  let text = `${out.join('\n')}\n`;
  if (opts.process !== false) text += await processMetrics();
  return text;
}
