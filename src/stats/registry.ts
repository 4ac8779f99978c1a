// The one place where counting beyond the plain Member / ListenerState counters happens.
// `record()` runs once per unit of work on the hot path, so it does a handful of Map
// lookups keyed by strings that come from config (interned, hash cached by V8), bumps
// numbers, and allocates nothing once a series exists. Rates and windowed percentiles
// are derived by a 1 s sampler from the running totals, never per record.
import type { Member, PoolLike } from '../balancer/types.js';
import type { PoolConfig } from '../config/runtime.js';
import type { ListenerState } from '../core/proxy.js';
import type { AccessRecord } from '../core/types.js';

/** What the gateway is running right now; swapped whole on reload, so always asked for. */
export interface GatewayView {
  readonly listeners: readonly ListenerState[];
  readonly pools: ReadonlyMap<string, { pool: PoolLike; config: PoolConfig }>;
}

export type ViewProvider = () => GatewayView;

/** Upper bounds of the latency buckets, in ms (Prometheus renders them in seconds). */
export const LATENCY_BOUNDS_MS: readonly number[] = [
  0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
];
const NBUCKETS = LATENCY_BOUNDS_MS.length + 1; // + the +Inf bucket

/** Seconds of history kept for rates and windowed percentiles. */
export const WINDOW_S = 10;

/**
 * `code` label values. One flat index space so a series keeps a cell per (code, outcome)
 * without building a key string: HTTP status classes, gRPC status codes (0–16, the
 * canonical set of grpc/doc/statuscodes.md), Thrift message types.
 */
export const CODE_LABELS: readonly string[] = [
  '', // no code: TCP/TLS tunnels, or work that ended before any answer
  '1xx',
  '2xx',
  '3xx',
  '4xx',
  '5xx',
  'other',
  ...Array.from({ length: 17 }, (_, i) => String(i)),
  'other',
  'reply',
  'exception',
  'oneway',
  'call',
  'other',
];
const HTTP_BASE = 1; // 1xx..5xx at 1..5, 6 = other
const GRPC_BASE = 7; // 0..16 at 7..23, 24 = other
const GRPC_OTHER = 24;
const THRIFT_BASE = 25; // reply, exception, oneway, call, other
/** Which family a code index belongs to, for rendering (`http`, `grpc`, `thrift`). */
export function codeFamily(idx: number): '' | 'http' | 'grpc' | 'thrift' {
  if (idx === 0) return '';
  if (idx < GRPC_BASE) return 'http';
  if (idx < THRIFT_BASE) return 'grpc';
  return 'thrift';
}

/** Canonical gRPC status names, for humans (the page); metrics keep the number. */
export const GRPC_NAMES: readonly string[] = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

function codeIndex(rec: AccessRecord): number {
  // gRPC first: a gRPC call also has an HTTP status (200), and grpc-status is what tells.
  const g = rec.grpc_status;
  if (g !== undefined) return g >= 0 && g <= 16 ? GRPC_BASE + g : GRPC_OTHER;
  const s = rec.status;
  if (s !== undefined) return s >= 100 && s < 600 ? HTTP_BASE + ((s / 100) | 0) - 1 : HTTP_BASE + 5;
  const t = rec.thrift_type;
  if (t !== undefined) {
    if (t === 'reply') return THRIFT_BASE;
    if (t === 'exception') return THRIFT_BASE + 1;
    if (t === 'oneway') return THRIFT_BASE + 2;
    if (t === 'call') return THRIFT_BASE + 3;
    return THRIFT_BASE + 4;
  }
  return 0;
}

/**
 * Outcomes get a small integer each, first come first served. The set is open-ended in
 * types.ts but written by our own code, never by input; still capped so a bug cannot grow
 * memory without bound.
 */
const MAX_OUTCOMES = 64;
const OUTCOME_STRIDE = MAX_OUTCOMES; // cell key = code * stride + outcome

/** Fixed-bucket latency histogram (ms). */
export class Histogram {
  readonly counts = new Float64Array(NBUCKETS);
  count = 0;
  sumMs = 0;

  observe(ms: number): void {
    // Linear scan: most units land in the first few buckets, so this beats a binary search.
    let i = 0;
    const b = LATENCY_BOUNDS_MS;
    while (i < b.length && ms > b[i]) i++;
    this.counts[i]++;
    this.count++;
    this.sumMs += ms;
  }
}

/** Estimated quantile (ms) from bucket counts, interpolating inside the bucket like
 * Prometheus' histogram_quantile. Undefined when there are no observations; the last
 * finite bound when the quantile falls in +Inf. */
export function quantileMs(counts: ArrayLike<number>, q: number): number | undefined {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i];
  if (total <= 0) return undefined;
  const rank = q * total;
  let cum = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i];
    if (cum + c >= rank && c > 0) {
      if (i >= LATENCY_BOUNDS_MS.length) return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1];
      const lo = i === 0 ? 0 : LATENCY_BOUNDS_MS[i - 1];
      const hi = LATENCY_BOUNDS_MS[i];
      return lo + ((hi - lo) * (rank - cum)) / c;
    }
    cum += c;
  }
  return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1];
}

/**
 * Totals seen at each of the last WINDOW_S + 1 samples, so "per second over the last
 * 10 s" is a subtraction at render time (StatsRegistry.rate divides by the sample times).
 */
export class Window {
  private readonly ring: Float64Array;
  private readonly width: number;
  private next = 0;
  private filled = 0;

  constructor(width = 1) {
    this.width = width;
    this.ring = new Float64Array((WINDOW_S + 1) * width);
  }

  push(values: ArrayLike<number> | number): void {
    const off = this.next * this.width;
    if (typeof values === 'number') this.ring[off] = values;
    else for (let i = 0; i < this.width; i++) this.ring[off + i] = values[i];
    this.next = (this.next + 1) % (WINDOW_S + 1);
    if (this.filled < WINDOW_S + 1) this.filled++;
  }

  /** Samples spanned (0 until two samples exist). */
  get span(): number {
    return this.filled > 0 ? this.filled - 1 : 0;
  }

  private slot(back: number): number {
    return ((this.next - 1 - back + 2 * (WINDOW_S + 1)) % (WINDOW_S + 1)) * this.width;
  }

  /** Value `i` as of `back` samples ago (0 = the latest). */
  at(back: number, i = 0): number {
    return this.ring[this.slot(back) + i];
  }

  /** Increase of value `i` over the last `back` samples, never negative. */
  diff(back: number, i = 0): number {
    return Math.max(0, this.ring[this.slot(0) + i] - this.ring[this.slot(back) + i]);
  }

  /** Increase of every value over the window (for windowed histograms). */
  delta(): Float64Array {
    const out = new Float64Array(this.width);
    const span = this.span;
    if (span === 0) return out;
    const a = this.slot(0);
    const b = this.slot(span);
    for (let i = 0; i < this.width; i++) out[i] = Math.max(0, this.ring[a + i] - this.ring[b + i]);
    return out;
  }
}

/** A (code, outcome) cell of a series. */
export interface Cell {
  readonly code: number;
  readonly outcome: number;
  n: number;
}

/** Latency and rate of one (pool, server); shared by every series that names them. */
export class ServerTiming {
  readonly hist = new Histogram();
  readonly histWindow = new Window(NBUCKETS);
  constructor(
    readonly pool: string,
    readonly server: string,
  ) {}
}

/** Counters of one (listener, route, pool, server, proto). */
export class Series {
  requests = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Keyed by code * OUTCOME_STRIDE + outcome index. */
  readonly cells = new Map<number, Cell>();
  readonly window = new Window(1);
  constructor(
    readonly listener: string,
    readonly route: string,
    readonly pool: string,
    readonly server: string,
    readonly proto: string,
    readonly timing: ServerTiming,
  ) {}
}

type Level<T> = Map<string, T>;

export interface StatsRegistryOptions {
  /** Sample rates every second on an unref'd timer (default true; tests sample by hand). */
  timer?: boolean;
  /** Most series kept; beyond it records are folded into one overflow series. */
  maxSeries?: number;
}

export class StatsRegistry {
  readonly view: ViewProvider;
  readonly startedAt = Date.now();
  /** Counting is on; `record` returns at once when false (admin.metrics: false). */
  enabled = true;

  // listener → route → pool → server → proto → Series
  private readonly tree: Level<Level<Level<Level<Level<Series>>>>> = new Map();
  private readonly allSeries: Series[] = [];
  private readonly timings = new Map<string, Map<string, ServerTiming>>();
  private readonly outcomeIdx = new Map<string, number>();
  readonly outcomeNames: string[] = [];
  private overflow: Series | undefined;
  private sampled = false;
  private readonly times = new Window(1);
  private readonly maxSeries: number;
  private readonly timer: NodeJS.Timeout | undefined;
  // Windows of objects that live outside this registry (members, listeners); weak so a
  // reload that drops them drops their history too.
  private readonly memberWindows = new WeakMap<Member, Window>();
  private readonly listenerWindows = new WeakMap<ListenerState, Window>();

  constructor(view: ViewProvider, opts: StatsRegistryOptions = {}) {
    this.view = view;
    this.maxSeries = opts.maxSeries ?? 10_000;
    // 'ok' first so the common case has index 0.
    this.outcome('ok');
    if (opts.timer !== false) {
      this.timer = setInterval(() => this.sample(), 1000);
      this.timer.unref();
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private outcome(name: string): number {
    let i = this.outcomeIdx.get(name);
    if (i === undefined) {
      if (this.outcomeNames.length >= MAX_OUTCOMES - 1) {
        i = this.outcomeIdx.get('other');
        if (i === undefined) {
          i = this.outcomeNames.length;
          this.outcomeNames.push('other');
          this.outcomeIdx.set('other', i);
        }
        return i;
      }
      i = this.outcomeNames.length;
      this.outcomeNames.push(name);
      this.outcomeIdx.set(name, i);
    }
    return i;
  }

  /** Count one finished unit of work. Called by GatewayContext.finish. */
  record(rec: AccessRecord): void {
    if (!this.enabled) return;
    const s = this.series(rec.listener, rec.route ?? '', rec.pool ?? '', rec.server ?? '', rec.proto);
    s.requests++;
    s.bytesIn += rec.bytes_in;
    s.bytesOut += rec.bytes_out;
    const o = rec.outcome === 'ok' ? 0 : this.outcome(rec.outcome);
    const key = codeIndex(rec) * OUTCOME_STRIDE + o;
    const cell = s.cells.get(key);
    if (cell !== undefined) cell.n++;
    else s.cells.set(key, { code: (key / OUTCOME_STRIDE) | 0, outcome: o, n: 1 });
    s.timing.hist.observe(rec.duration_ms);
  }

  private series(listener: string, route: string, pool: string, server: string, proto: string): Series {
    let l1 = this.tree.get(listener);
    if (l1 === undefined) {
      l1 = new Map();
      this.tree.set(listener, l1);
    }
    let l2 = l1.get(route);
    if (l2 === undefined) {
      l2 = new Map();
      l1.set(route, l2);
    }
    let l3 = l2.get(pool);
    if (l3 === undefined) {
      l3 = new Map();
      l2.set(pool, l3);
    }
    let l4 = l3.get(server);
    if (l4 === undefined) {
      l4 = new Map();
      l3.set(server, l4);
    }
    let s = l4.get(proto);
    if (s === undefined) {
      if (this.allSeries.length >= this.maxSeries) {
        this.overflow ??= this.newSeries('_overflow', '_overflow', '_overflow', '_overflow', '_overflow');
        return this.overflow;
      }
      s = this.newSeries(listener, route, pool, server, proto);
      l4.set(proto, s);
    }
    return s;
  }

  private newSeries(listener: string, route: string, pool: string, server: string, proto: string): Series {
    const s = new Series(listener, route, pool, server, proto, this.timing(pool, server));
    // It was 0 at the last sample: seeding that keeps its first rates exact.
    if (this.sampled) s.window.push(0);
    this.allSeries.push(s);
    return s;
  }

  /** The latency histogram of (pool, server); server '' = work that got no server. */
  timing(pool: string, server: string): ServerTiming {
    let m = this.timings.get(pool);
    if (m === undefined) {
      m = new Map();
      this.timings.set(pool, m);
    }
    let t = m.get(server);
    if (t === undefined) {
      t = new ServerTiming(pool, server);
      if (this.sampled) t.histWindow.push(t.hist.counts);
      m.set(server, t);
    }
    return t;
  }

  /** Every series ever recorded, in creation order. */
  get seriesList(): readonly Series[] {
    return this.allSeries;
  }

  /** Timings by pool, then server. */
  get timingsByPool(): ReadonlyMap<string, ReadonlyMap<string, ServerTiming>> {
    return this.timings;
  }

  /**
   * Per second, over the whole window of `w` (`back` = its span) or its last sample
   * (`back` = 1). Divides by the time that really passed between the samples: a sampler
   * delayed by a busy event loop must not inflate rates.
   */
  rate(w: Window, last = false, i = 0): number {
    const back = last ? Math.min(1, w.span) : w.span;
    if (back === 0) return 0;
    const secs = (this.times.at(0) - this.times.at(back)) / 1000;
    return secs > 0 ? w.diff(back, i) / secs : 0;
  }

  /**
   * Take one rate sample of every counter; the timer calls this each second. Every window
   * is pushed here and only here, so the k-th latest value of any window was taken at the
   * k-th latest time in `times`.
   */
  sample(now = Date.now()): void {
    this.sampled = true;
    this.times.push(now);
    for (const s of this.allSeries) s.window.push(s.requests);
    for (const m of this.timings.values()) for (const t of m.values()) t.histWindow.push(t.hist.counts);
    let v: GatewayView;
    try {
      v = this.view();
    } catch {
      return; // a view mid-swap must not kill the sampler
    }
    for (const l of v.listeners) this.listenerWindow(l).push(l.connections.total);
    for (const { pool } of v.pools.values()) for (const m of pool.members) this.memberWindow(m).push(m.total);
  }

  memberWindow(m: Member): Window {
    let w = this.memberWindows.get(m);
    if (w === undefined) {
      w = new Window(1);
      this.memberWindows.set(m, w);
    }
    return w;
  }

  listenerWindow(l: ListenerState): Window {
    let w = this.listenerWindows.get(l);
    if (w === undefined) {
      w = new Window(1);
      this.listenerWindows.set(l, w);
    }
    return w;
  }

  outcomeName(i: number): string {
    return this.outcomeNames[i] ?? 'other';
  }
}

/** Queue length if the pool exposes one (`queued` or `queueLength`; not part of PoolLike). */
export function queueOf(pool: object): number | null {
  const p = pool as { queued?: unknown; queueLength?: unknown };
  if (typeof p.queued === 'number') return p.queued;
  if (typeof p.queueLength === 'number') return p.queueLength;
  return null;
}
