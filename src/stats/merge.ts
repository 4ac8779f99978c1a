// Multi-process mode (docs/operations.md "Multiple processes"): every worker answers a stats
// request with a WorkerSnapshot; the primary's admin listener shows their merge. Pure
// functions over plain JSON, so they can be tested without processes.
//
// Merge rules: counters, gauges of work in flight, bytes and rates are summed. What a
// server *is* (state, health, admin state, weight, last check) is taken from one worker per
// server: the first worker (in worker-id order) that sees it down, else the first worker —
// so a server shows down as soon as any process cannot use it. Active health is the
// primary's verdict in every worker (health/remote.ts), so views differ only by a worker's
// own outlier ejection or a verdict still in flight. Latency percentiles are recomputed
// from the summed histogram buckets, never averaged. Process metrics are not merged but
// listed per process (mergeProcessMetrics).

import { AggregatorRegistry } from 'prom-client';
import { LATENCY_BOUNDS_MS, type StatsRegistry } from './registry.js';
import {
  addToSummary,
  buildStats,
  type LatencyStats,
  latency,
  newPoolSummary,
  type RequestStats,
  round,
  type StatsJson,
} from './render/json.js';
import { escapeLabel, type ProcessMetricsJson } from './render/prometheus.js';

/** Histogram buckets of one (pool, server): since start, and over the rate window. */
export interface HistSnapshot {
  all: number[];
  window: number[];
  sumMs: number;
}

export interface WorkerSnapshot {
  stats: StatsJson;
  /** pool → server → buckets (server '' = work that got no server). */
  hist: Record<string, Record<string, HistSnapshot>>;
  /** Prometheus text without the process metrics. */
  prom: string;
  /** The worker's process metrics, labelled with its id, when asked for (/metrics). */
  proc?: ProcessMetricsJson;
}

/** What a worker sends; `prom` and `proc` are rendered by the caller (async). */
export function snapshotOf(reg: StatsRegistry, prom: string, proc?: ProcessMetricsJson): WorkerSnapshot {
  const hist: WorkerSnapshot['hist'] = {};
  for (const [pool, servers] of reg.timingsByPool) {
    const m: Record<string, HistSnapshot> = {};
    for (const [server, t] of servers) {
      m[server] = {
        all: Array.from(t.hist.counts),
        window: Array.from(t.histWindow.delta()),
        sumMs: t.hist.sumMs,
      };
    }
    hist[pool] = m;
  }
  return { stats: buildStats(reg), hist, prom, proc };
}

function addInto(target: Record<string, number>, src: Record<string, number> | undefined): void {
  if (src === undefined) return;
  for (const [k, v] of Object.entries(src)) target[k] = (target[k] ?? 0) + v;
}

export function mergeRequests(list: readonly RequestStats[]): RequestStats {
  const out: RequestStats = {
    total: 0,
    rate: 0,
    rate_cur: 0,
    outcomes: {},
    codes: {},
    bytes_in: 0,
    bytes_out: 0,
  };
  for (const r of list) {
    out.total += r.total;
    out.rate += r.rate;
    out.rate_cur += r.rate_cur;
    out.bytes_in += r.bytes_in;
    out.bytes_out += r.bytes_out;
    addInto(out.outcomes, r.outcomes);
    for (const fam of ['http', 'grpc', 'thrift'] as const) {
      const src = r.codes[fam];
      if (src === undefined) continue;
      out.codes[fam] ??= {};
      addInto(out.codes[fam], src);
    }
  }
  out.rate = round(out.rate);
  out.rate_cur = round(out.rate_cur);
  return out;
}

const NB = LATENCY_BOUNDS_MS.length + 1;

class HistAcc {
  readonly all = new Float64Array(NB);
  readonly window = new Float64Array(NB);
  sumMs = 0;
  add(h: HistSnapshot | undefined): void {
    if (h === undefined) return;
    for (let i = 0; i < NB; i++) {
      this.all[i] += h.all[i] ?? 0;
      this.window[i] += h.window[i] ?? 0;
    }
    this.sumMs += h.sumMs;
  }
  latency(): LatencyStats {
    return latency(this.window, this.all, this.sumMs);
  }
}

/** Items of every list grouped by name, in first-seen order. */
function byName<T>(lists: readonly (readonly T[])[], name: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const list of lists) {
    for (const item of list) {
      const k = name(item);
      const g = out.get(k);
      if (g === undefined) out.set(k, [item]);
      else g.push(item);
    }
  }
  return out;
}

export interface Merged {
  stats: StatsJson;
  /** pool → server → index of the snapshot whose view of the server is shown. */
  shownBy: Map<string, Map<string, number>>;
}

/** Snapshots must be given in worker-id order (the "first worker" of the rules). */
export function mergeSnapshots(snaps: readonly WorkerSnapshot[], now = Date.now()): Merged {
  const shownBy = new Map<string, Map<string, number>>();
  const all = snaps.map((s) => s.stats);
  const startedAt = all.length > 0 ? Math.min(...all.map((s) => Date.parse(s.started_at))) : now;

  const listeners = [
    ...byName(
      all.map((s) => s.listeners),
      (l) => l.name,
    ).values(),
  ].map((group) => {
    const first = group[0];
    const routes = [
      ...byName(
        group.map((l) => l.routes),
        (r) => r.name,
      ).values(),
    ].map((rs) => ({
      ...rs[0],
      requests: mergeRequests(rs.map((r) => r.requests)),
    }));
    const c = { active: 0, total: 0, refused: 0, sniff_timeouts: 0, rate: 0 };
    for (const l of group) {
      c.active += l.connections.active;
      c.total += l.connections.total;
      c.refused += l.connections.refused;
      c.sniff_timeouts += l.connections.sniff_timeouts;
      c.rate += l.connections.rate;
    }
    c.rate = round(c.rate);
    return { ...first, connections: c, requests: mergeRequests(group.map((l) => l.requests)), routes };
  });

  const pools: StatsJson['pools'] = {};
  const poolNames: string[] = [];
  for (const s of all) for (const n of Object.keys(s.pools)) if (!poolNames.includes(n)) poolNames.push(n);
  for (const name of poolNames) {
    const entries: { idx: number; pool: StatsJson['pools'][string] }[] = [];
    all.forEach((s, idx) => {
      const p = s.pools[name];
      if (p !== undefined) entries.push({ idx, pool: p });
    });
    const first = entries[0].pool;
    const shown = new Map<string, number>();
    shownBy.set(name, shown);
    const poolHist = new HistAcc();
    for (const { idx } of entries)
      for (const h of Object.values(snaps[idx].hist[name] ?? {})) poolHist.add(h);

    const serverNames: string[] = [];
    for (const { pool } of entries)
      for (const s of pool.servers) if (!serverNames.includes(s.name)) serverNames.push(s.name);
    const summary = newPoolSummary(serverNames.length, null);
    for (const { pool } of entries)
      if (pool.summary.queue !== null) summary.queue = (summary.queue ?? 0) + pool.summary.queue;
    const servers = serverNames.map((sn) => {
      const views: { idx: number; s: StatsJson['pools'][string]['servers'][number] }[] = [];
      for (const { idx, pool } of entries) {
        const s = pool.servers.find((x) => x.name === sn);
        if (s !== undefined) views.push({ idx, s });
      }
      const rep = views.find((v) => v.s.state === 'down') ?? views[0];
      shown.set(sn, rep.idx);
      const h = new HistAcc();
      const sum = { active: 0, total: 0, errors: 0, bytes_in: 0, bytes_out: 0, rate: 0 };
      for (const { idx, s } of views) {
        h.add(snaps[idx].hist[name]?.[sn]);
        sum.active += s.active;
        sum.total += s.total;
        sum.errors += s.errors;
        sum.bytes_in += s.bytes_in;
        sum.bytes_out += s.bytes_out;
        sum.rate += s.rate;
      }
      sum.rate = round(sum.rate);
      addToSummary(
        summary,
        rep.s.state,
        sum.active,
        sum.total,
        sum.errors,
        sum.bytes_in,
        sum.bytes_out,
        sum.rate,
      );
      return {
        ...rep.s,
        ...sum,
        requests: mergeRequests(views.map((v) => v.s.requests)),
        latency_ms: h.latency(),
      };
    });
    summary.rate = round(summary.rate);
    pools[name] = {
      protocol: first.protocol,
      balance: first.balance,
      health: first.health,
      servers,
      summary,
      requests: mergeRequests(entries.map((e) => e.pool.requests)),
      latency_ms: poolHist.latency(),
    };
  }

  return {
    stats: {
      time: new Date(now).toISOString(),
      started_at: new Date(startedAt).toISOString(),
      uptime_s: Math.round((now - startedAt) / 1000),
      window_s: all[0]?.window_s ?? 10,
      listeners,
      pools,
    },
    shownBy,
  };
}

/** Families whose samples describe what a server is, not how much it did: one worker's value. */
const VIEW_FAMILIES = new Set([
  'switchyard_server_up',
  'switchyard_server_state',
  'switchyard_server_admin_state',
  'switchyard_server_weight',
  'switchyard_server_check_duration_seconds',
  'switchyard_server_check_success',
  'switchyard_server_last_change_timestamp_seconds',
]);
const POOL_SERVERS = 'switchyard_pool_servers';
const SERVER_LABELS = /^pool="(?:[^"\\]|\\.)*",server="(?:[^"\\]|\\.)*"/;

/**
 * Merges the workers' Prometheus texts: samples of the same series are summed, except the
 * per-server view families (taken from the worker `merged.shownBy` names) and the pool's
 * servers-by-state gauge (recounted from the merged states).
 */
export function mergePrometheus(texts: readonly string[], merged: Merged): string {
  // family → (HELP, TYPE) lines and series key → value, in first-seen order.
  const families = new Map<string, { meta: string[]; samples: Map<string, number> }>();
  const repKey = new Map<string, number>();
  for (const [pool, servers] of merged.shownBy)
    for (const [server, idx] of servers)
      repKey.set(`pool="${escapeLabel(pool)}",server="${escapeLabel(server)}"`, idx);

  texts.forEach((text, idx) => {
    let current: { meta: string[]; samples: Map<string, number> } | undefined;
    let currentName = '';
    for (const line of text.split('\n')) {
      if (line === '') continue;
      if (line.startsWith('# ')) {
        const name = line.split(' ', 3)[2];
        let f = families.get(name);
        if (f === undefined) {
          f = { meta: [], samples: new Map() };
          families.set(name, f);
        }
        if (f.meta.length < 2 && !f.meta.includes(line)) f.meta.push(line);
        current = f;
        currentName = name;
        continue;
      }
      if (current === undefined) continue;
      const sp = line.lastIndexOf(' ');
      const key = line.slice(0, sp);
      const value = Number(line.slice(sp + 1));
      if (VIEW_FAMILIES.has(currentName)) {
        const brace = key.indexOf('{');
        const lbl = brace >= 0 ? key.slice(brace + 1) : '';
        const m = SERVER_LABELS.exec(lbl);
        const owner = m === null ? 0 : (repKey.get(m[0]) ?? 0);
        if (owner === idx) current.samples.set(key, value);
        continue;
      }
      current.samples.set(key, (current.samples.get(key) ?? 0) + value);
    }
  });

  const ps = families.get(POOL_SERVERS);
  if (ps !== undefined) {
    ps.samples.clear();
    for (const [name, p] of Object.entries(merged.stats.pools))
      for (const st of ['up', 'down', 'drain', 'maint'] as const)
        ps.samples.set(`${POOL_SERVERS}{pool="${escapeLabel(name)}",state="${st}"}`, p.summary[st]);
  }

  const out: string[] = [];
  for (const f of families.values()) {
    if (f.samples.size === 0) continue;
    out.push(...f.meta);
    for (const [k, v] of f.samples) out.push(`${k} ${Number.isInteger(v) ? v : round(v, 9)}`);
  }
  return `${out.join('\n')}\n`;
}

/**
 * Process metrics (CPU, memory, heap, event loop, GC) of several processes in one
 * exposition (prom-client's cluster aggregation): never combined, as every series carries
 * its process's `worker` label (processMetricsJson). Summing by labels then keeps each
 * series apart, including those prom-client would otherwise drop or collapse across
 * processes (start time: omitted, version: the first).
 */
export async function mergeProcessMetrics(list: readonly ProcessMetricsJson[]): Promise<string> {
  if (list.length === 0) return '';
  const apart = list.map((ms) => ms.map((m) => ({ ...m, aggregator: 'sum' as const })));
  return AggregatorRegistry.aggregate(apart).metrics();
}
