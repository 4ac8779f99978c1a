// /stats.json: SPEC §4 names (listeners[].name/bind/connections, pools.NAME.protocol/
// balance/servers[].name/address/state/weight/health{type,last,changed_at}/active/total/
// errors/bytes_in/bytes_out) plus extra fields; never rename one of the SPEC's.
import type { Member } from '../../balancer/types.js';
import {
  CODE_LABELS,
  codeFamily,
  LATENCY_BOUNDS_MS,
  quantileMs,
  queueOf,
  type Series,
  type StatsRegistry,
  WINDOW_S,
} from '../registry.js';

export interface CodeCounts {
  http?: Record<string, number>;
  grpc?: Record<string, number>;
  thrift?: Record<string, number>;
}

export interface RequestStats {
  total: number;
  /** Per second over the last `WINDOW_S` seconds. */
  rate: number;
  /** Per second over the last second. */
  rate_cur: number;
  /** Units by how they ended ('ok' included). */
  outcomes: Record<string, number>;
  codes: CodeCounts;
  bytes_in: number;
  bytes_out: number;
}

export interface LatencyStats {
  p50: number | null;
  p90: number | null;
  p99: number | null;
  mean: number | null;
  count: number;
  /** 'window' = the last WINDOW_S seconds, 'all' = since start (no traffic lately). */
  over: 'window' | 'all';
}

export interface ServerStats {
  name: string;
  address: string;
  state: string;
  weight: number;
  health: {
    type: string;
    last: { ok: boolean; detail: string; at: string; duration_ms: number } | null;
    changed_at: string;
    /** Raw active-health verdict and passive ejection, behind `state`. */
    status: string;
    ejected_until: string | null;
  };
  admin: string;
  backup: boolean;
  maxconn: number;
  active: number;
  total: number;
  errors: number;
  bytes_in: number;
  bytes_out: number;
  /** Units handed to this server per second (10 s average). */
  rate: number;
  requests: RequestStats;
  latency_ms: LatencyStats;
}

export interface PoolStats {
  protocol: string;
  balance: string;
  health: { type: string; interval_ms: number; timeout_ms: number; rise: number; fall: number };
  servers: ServerStats[];
  summary: {
    servers: number;
    up: number;
    down: number;
    drain: number;
    maint: number;
    active: number;
    total: number;
    errors: number;
    bytes_in: number;
    bytes_out: number;
    rate: number;
    queue: number | null;
  };
  requests: RequestStats;
  latency_ms: LatencyStats;
}

export interface RouteStats {
  name: string;
  pool: string | null;
  deny: boolean;
  requests: RequestStats;
}

export interface ListenerStats {
  name: string;
  bind: string[];
  protocols: string[];
  connections: { active: number; total: number; refused: number; sniff_timeouts: number; rate: number };
  requests: RequestStats;
  routes: RouteStats[];
}

export interface StatsJson {
  time: string;
  started_at: string;
  uptime_s: number;
  window_s: number;
  listeners: ListenerStats[];
  pools: Record<string, PoolStats>;
}

/** Accumulates series into one RequestStats. */
class ReqAcc {
  total = 0;
  rate = 0;
  cur = 0;
  bytesIn = 0;
  bytesOut = 0;
  readonly outcomes = new Map<number, number>();
  readonly codes = new Map<number, number>();

  constructor(private readonly reg: StatsRegistry) {}

  add(s: Series): void {
    this.total += s.requests;
    this.rate += this.reg.rate(s.window);
    this.cur += this.reg.rate(s.window, true);
    this.bytesIn += s.bytesIn;
    this.bytesOut += s.bytesOut;
    for (const c of s.cells.values()) {
      this.outcomes.set(c.outcome, (this.outcomes.get(c.outcome) ?? 0) + c.n);
      if (c.code !== 0) this.codes.set(c.code, (this.codes.get(c.code) ?? 0) + c.n);
    }
  }

  out(): RequestStats {
    const reg = this.reg;
    const outcomes: Record<string, number> = {};
    for (const [o, n] of this.outcomes)
      outcomes[reg.outcomeName(o)] = (outcomes[reg.outcomeName(o)] ?? 0) + n;
    const codes: CodeCounts = {};
    for (const [c, n] of [...this.codes].sort((a, b) => a[0] - b[0])) {
      const fam = codeFamily(c);
      if (fam === '') continue;
      codes[fam] ??= {};
      const m = codes[fam];
      m[CODE_LABELS[c]] = (m[CODE_LABELS[c]] ?? 0) + n;
    }
    return {
      total: this.total,
      rate: round(this.rate),
      rate_cur: round(this.cur),
      outcomes,
      codes,
      bytes_in: this.bytesIn,
      bytes_out: this.bytesOut,
    };
  }
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Percentiles over the window's counts, or over all counts when the window saw nothing. */
export function latency(window: ArrayLike<number>, all: ArrayLike<number>, sumAllMs: number): LatencyStats {
  let wn = 0;
  for (let i = 0; i < window.length; i++) wn += window[i];
  let an = 0;
  for (let i = 0; i < all.length; i++) an += all[i];
  const useWindow = wn > 0;
  const counts = useWindow ? window : all;
  const q = (p: number): number | null => {
    const v = quantileMs(counts, p);
    return v === undefined ? null : round(v, 3);
  };
  return {
    p50: q(0.5),
    p90: q(0.9),
    p99: q(0.99),
    // The running sum is not windowed; the lifetime mean is the honest number we have.
    mean: an > 0 ? round(sumAllMs / an, 3) : null,
    count: useWindow ? wn : an,
    over: useWindow ? 'window' : 'all',
  };
}

const iso = (ms: number): string => new Date(ms).toISOString();

export function buildStats(reg: StatsRegistry): StatsJson {
  const now = Date.now();
  const view = reg.view();
  const series = reg.seriesList;

  // Group series once: by listener, by listener+route, by pool, by pool+server.
  const byListener = new Map<string, ReqAcc>();
  const byRoute = new Map<string, Map<string, ReqAcc>>();
  const byPool = new Map<string, ReqAcc>();
  const byServer = new Map<string, Map<string, ReqAcc>>();
  const acc = <K>(m: Map<K, ReqAcc>, k: K): ReqAcc => {
    let a = m.get(k);
    if (a === undefined) {
      a = new ReqAcc(reg);
      m.set(k, a);
    }
    return a;
  };
  const acc2 = (m: Map<string, Map<string, ReqAcc>>, k1: string, k2: string): ReqAcc => {
    let inner = m.get(k1);
    if (inner === undefined) {
      inner = new Map();
      m.set(k1, inner);
    }
    return acc(inner, k2);
  };
  for (const s of series) {
    acc(byListener, s.listener).add(s);
    acc2(byRoute, s.listener, s.route).add(s);
    acc(byPool, s.pool).add(s);
    acc2(byServer, s.pool, s.server).add(s);
  }
  const empty = new ReqAcc(reg);

  const listeners: ListenerStats[] = view.listeners.map((l) => {
    const cfg = l.current.config;
    const lw = reg.listenerWindow(l);
    const routes: RouteStats[] = cfg.routes.map((r) => ({
      name: r.name,
      pool: r.pool ?? null,
      deny: r.deny,
      requests: (byRoute.get(l.name)?.get(r.name) ?? empty).out(),
    }));
    // Work that matched no route is counted under route '' — show it when there is some.
    const unrouted = byRoute.get(l.name)?.get('');
    if (unrouted && unrouted.total > 0)
      routes.push({ name: '(no route)', pool: null, deny: false, requests: unrouted.out() });
    return {
      name: l.name,
      bind: [...cfg.bindText],
      protocols: [...cfg.protocols],
      connections: {
        active: l.connections.active,
        total: l.connections.total,
        refused: l.connections.refused,
        sniff_timeouts: l.connections.sniffTimeouts,
        rate: round(reg.rate(lw)),
      },
      requests: (byListener.get(l.name) ?? empty).out(),
      routes,
    };
  });

  const pools: Record<string, PoolStats> = {};
  for (const [name, { pool, config }] of view.pools) {
    const timings = reg.timingsByPool.get(name);
    const poolWin = new Float64Array(LATENCY_BOUNDS_MS.length + 1);
    const poolAll = new Float64Array(LATENCY_BOUNDS_MS.length + 1);
    let poolSum = 0;
    if (timings) {
      for (const t of timings.values()) {
        const d = t.histWindow.delta();
        for (let i = 0; i < poolWin.length; i++) {
          poolWin[i] += d[i];
          poolAll[i] += t.hist.counts[i];
        }
        poolSum += t.hist.sumMs;
      }
    }
    const summary = newPoolSummary(pool.members.length, queueOf(pool));
    const servers = pool.members.map((m: Member): ServerStats => {
      const state = m.state;
      const rate = reg.rate(reg.memberWindow(m));
      addToSummary(summary, state, m.active, m.total, m.errors, m.bytesIn, m.bytesOut, rate);
      const t = timings?.get(m.name);
      const lc = m.lastCheck;
      return {
        name: m.name,
        address: m.address,
        state,
        weight: m.weight,
        health: {
          type: config.health.type,
          last: lc ? { ok: lc.ok, detail: lc.detail, at: iso(lc.at), duration_ms: round(lc.ms, 3) } : null,
          changed_at: iso(m.changedAt),
          status: m.health,
          ejected_until: m.ejectedUntil > now ? iso(m.ejectedUntil) : null,
        },
        admin: m.admin,
        backup: m.backup,
        maxconn: m.maxconn,
        active: m.active,
        total: m.total,
        errors: m.errors,
        bytes_in: m.bytesIn,
        bytes_out: m.bytesOut,
        rate: round(rate),
        requests: (byServer.get(name)?.get(m.name) ?? empty).out(),
        latency_ms: t ? latency(t.histWindow.delta(), t.hist.counts, t.hist.sumMs) : latency([], [], 0),
      };
    });
    summary.rate = round(summary.rate);
    pools[name] = {
      protocol: config.protocol,
      balance: pool.balance,
      health: {
        type: config.health.type,
        interval_ms: config.health.interval,
        timeout_ms: config.health.timeout,
        rise: config.health.rise,
        fall: config.health.fall,
      },
      servers,
      summary,
      requests: (byPool.get(name) ?? empty).out(),
      latency_ms: latency(poolWin, poolAll, poolSum),
    };
  }

  return {
    time: iso(now),
    started_at: iso(reg.startedAt),
    uptime_s: Math.round((now - reg.startedAt) / 1000),
    window_s: WINDOW_S,
    listeners,
    pools,
  };
}

export function renderJson(reg: StatsRegistry): string {
  return JSON.stringify(buildStats(reg));
}

/** A pool summary with nothing counted yet (one server at a time goes in with addToSummary). */
export function newPoolSummary(servers: number, queue: number | null): PoolStats['summary'] {
  return {
    servers,
    up: 0,
    down: 0,
    drain: 0,
    maint: 0,
    active: 0,
    total: 0,
    errors: 0,
    bytes_in: 0,
    bytes_out: 0,
    rate: 0,
    queue,
  };
}

/** Counts one server in its pool's summary. */
export function addToSummary(
  summary: PoolStats['summary'],
  state: string,
  active: number,
  total: number,
  errors: number,
  bytesIn: number,
  bytesOut: number,
  rate: number,
): void {
  if (state === 'up' || state === 'down' || state === 'drain' || state === 'maint') summary[state]++;
  summary.active += active;
  summary.total += total;
  summary.errors += errors;
  summary.bytes_in += bytesIn;
  summary.bytes_out += bytesOut;
  summary.rate += rate;
}
