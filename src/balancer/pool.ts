import type { PoolConfig } from '../config/runtime.js';
import type { AdminState, BalanceAlgorithm, MemberState } from '../core/types.js';
// Pure counting, no I/O: the one piece of health/ the pick/release path needs (docs/balancing.md).
import { recordOutcome } from '../health/outlier.js';
import { createMember, isUsable, memberState, type PoolMember } from './member.js';
import { selectorFor } from './registry.js';
import type { Member, Pick, PickRequest, PoolLike, Release, Selector, SelectorFactory } from './types.js';

/** One server state change, logged as an event record by whoever subscribes (health/scheduler). */
export interface ServerStateEvent {
  event: 'server_state';
  pool: string;
  server: string;
  from: MemberState;
  to: MemberState;
  reason: string;
}

export type StateListener = (e: ServerStateEvent) => void;

const NO_SERVER: Pick = Object.freeze({ ok: false, reason: 'no_server' });
const FULL: Pick = Object.freeze({ ok: false, reason: 'full' });

/**
 * A successful pick. `release` is an arrow property so callers may pass it around
 * detached; it is the only closure a pick creates.
 */
class Lease {
  readonly ok = true;
  readonly member: PoolMember;
  private readonly pool: Pool;
  private done = false;

  constructor(pool: Pool, member: PoolMember) {
    this.pool = pool;
    this.member = member;
  }

  readonly release = (r: Release): void => {
    if (this.done) return; // a second release (error path + close path) must not skew active
    this.done = true;
    const m = this.member;
    m.active--;
    if (r.bytesIn !== undefined) m.bytesIn += r.bytesIn;
    if (r.bytesOut !== undefined) m.bytesOut += r.bytesOut;
    if (!r.ok) m.errors++;
    this.pool.outcome(m, r);
  };
}

/** Same members, same order, same weights: the old selector (and its rotation state) stays valid. */
function sameSnapshot(list: PoolMember[], prev: PoolMember[], prevWeights: number[]): boolean {
  if (list.length !== prev.length) return false;
  for (let i = 0; i < list.length; i++) {
    if (list[i] !== prev[i] || list[i].weight !== prevWeights[i]) return false;
  }
  return true;
}

/**
 * The live servers of one pool and the picker over them. Selection runs over snapshots of
 * the usable members (primary and backup tiers) rebuilt whole by `refresh()` whenever
 * health, admin state, ejection or weight changes, so `pick` only filters for per-request
 * conditions (maxconn, avoid) and allocates nothing but the returned lease.
 */
export class Pool implements PoolLike {
  readonly name: string;
  readonly balance: BalanceAlgorithm;
  readonly config: PoolConfig;
  readonly members: readonly PoolMember[];
  private readonly byName = new Map<string, PoolMember>();
  private readonly factory: SelectorFactory;
  private readonly reported: MemberState[];
  private readonly listeners: StateListener[] = [];

  private primaryList: PoolMember[] = [];
  private primaryWeights: number[] = [];
  private backupList: PoolMember[] = [];
  private backupWeights: number[] = [];
  private primary: Selector;
  private backup: Selector;
  /** Earliest end of an ongoing ejection; `pick` refreshes lazily once it passes. */
  private nextExpiry = Number.POSITIVE_INFINITY;

  // Per-pick scratch read by `accept` (one bound function per pool, not one per pick).
  private avoid: readonly Member[] | undefined;
  private now = 0;
  private sawFull = false;

  constructor(config: PoolConfig, previous?: Pool) {
    this.name = config.name;
    this.balance = config.balance;
    this.config = config;
    this.factory = selectorFor(config.balance);
    const members: PoolMember[] = [];
    for (const spec of config.servers) {
      let m = previous?.byName.get(spec.name);
      if (m !== undefined && m.address === spec.address && !this.byName.has(spec.name)) {
        // Same server: health, counters and in-flight work survive the reload.
        m.weight = spec.weight;
        m.maxconn = spec.maxconn;
        m.backup = spec.backup;
      } else {
        m = createMember(spec);
      }
      m.owner = this;
      if (!this.byName.has(spec.name)) this.byName.set(spec.name, m);
      members.push(m);
    }
    this.members = members;
    const now = Date.now();
    this.reported = members.map((m) => memberState(m, now));
    this.primary = this.factory(this.primaryList);
    this.backup = this.factory(this.backupList);
    this.rebuild(now);
  }

  /** A member by server name (admin API, persistence). */
  member(name: string): PoolMember | undefined {
    return this.byName.get(name);
  }

  /**
   * Rebuild the picker after health/admin/weight/ejection changed, and report every member
   * whose visible state changed. Health checks call this after flipping `member.health`.
   */
  refresh(reason = 'refresh'): void {
    const now = Date.now();
    this.rebuild(now);
    const { members, reported } = this;
    for (let i = 0; i < members.length; i++) {
      const m = members[i];
      const to = memberState(m, now);
      const from = reported[i];
      if (to === from) continue;
      reported[i] = to;
      m.changedAt = now;
      this.emit({ event: 'server_state', pool: this.name, server: m.name, from, to, reason });
    }
  }

  private rebuild(now: number): void {
    const primary: PoolMember[] = [];
    const backup: PoolMember[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const m of this.members) {
      if (m.ejectedUntil > now && m.ejectedUntil < next) next = m.ejectedUntil;
      if (!isUsable(m, now)) continue;
      (m.backup ? backup : primary).push(m);
    }
    this.nextExpiry = next;
    if (!sameSnapshot(primary, this.primaryList, this.primaryWeights)) {
      this.primaryList = primary;
      this.primaryWeights = primary.map((m) => m.weight);
      this.primary = this.factory(primary);
    }
    if (!sameSnapshot(backup, this.backupList, this.backupWeights)) {
      this.backupList = backup;
      this.backupWeights = backup.map((m) => m.weight);
      this.backup = this.factory(backup);
    }
  }

  private readonly accept = (m: Member): boolean => {
    // Usability is re-checked (four compares) so a state flipped without refresh() is honoured.
    if (!isUsable(m, this.now)) return false;
    const avoid = this.avoid;
    if (avoid !== undefined) {
      for (let i = 0; i < avoid.length; i++) if (avoid[i] === m) return false;
    }
    if (m.maxconn > 0 && m.active >= m.maxconn) {
      this.sawFull = true;
      return false;
    }
    return true;
  };

  pick(req?: PickRequest): Pick {
    // The clock is read only while an ejection is running (Date.now() is a measurable share
    // of a pick): otherwise every ejectedUntil is in the past and +Infinity compares the same.
    let now = Number.POSITIVE_INFINITY;
    if (this.nextExpiry !== Number.POSITIVE_INFINITY) {
      now = Date.now();
      if (now >= this.nextExpiry) this.refresh('outlier ejection ended');
    }
    this.now = now;
    this.avoid = req?.avoid;
    let m: Member | undefined;
    const prefer = req?.prefer;
    if (prefer !== undefined) {
      const p = this.byName.get(prefer);
      // Persistence never pulls work onto a backup while a primary is usable.
      if (p !== undefined && (!p.backup || this.primaryList.length === 0) && this.accept(p)) m = p;
    }
    this.sawFull = false;
    if (m === undefined) {
      m = this.select(req?.hashKey);
      if (m === undefined && this.avoid !== undefined && req?.avoidIsPreference === true) {
        this.avoid = undefined;
        this.sawFull = false;
        m = this.select(req.hashKey);
      }
    }
    this.avoid = undefined;
    if (m === undefined) return this.sawFull ? FULL : NO_SERVER;
    m.active++;
    m.total++;
    return new Lease(this, m as PoolMember);
  }

  private select(key: string | undefined): Member | undefined {
    if (this.primaryList.length > 0) {
      const m = this.primary.select(key, this.accept);
      // Every primary was on the avoid list (a retry): a backup beats failing the request.
      if (m === undefined && !this.sawFull && this.backupList.length > 0)
        return this.backup.select(key, this.accept);
      return m;
    }
    return this.backupList.length > 0 ? this.backup.select(key, this.accept) : undefined;
  }

  /** Called by a lease once per unit of work: passive outlier detection. */
  outcome(m: PoolMember, r: Release): void {
    if (r.ok) {
      m.consecutiveFailures = 0;
      return;
    }
    const outlier = this.config.outlier;
    if (outlier === undefined) return;
    if (!recordOutcome(m, r, outlier, Date.now())) return;
    const reason = `outlier: ${outlier.consecutiveFailures} consecutive failures (last: ${r.failure})`;
    this.refresh(reason);
    // Work started before a reload releases through the old pool; the live one must see it too.
    if (m.owner !== undefined && m.owner !== this) m.owner.refresh(reason);
  }

  /** Runtime weight change (admin API). False for an unknown server. */
  setWeight(name: string, weight: number): boolean {
    const m = this.byName.get(name);
    if (m === undefined) return false;
    if (!Number.isInteger(weight) || weight < 0 || weight > 256) {
      throw new RangeError(`weight must be an integer 0-256, got ${weight}`);
    }
    m.weight = weight;
    this.refresh(`weight set to ${weight}`);
    return true;
  }

  /** Runtime admin state change (admin API). False for an unknown server. */
  setAdmin(name: string, state: AdminState): boolean {
    const m = this.byName.get(name);
    if (m === undefined) return false;
    m.admin = state;
    this.refresh(`admin state set to ${state}`);
    return true;
  }

  /** Subscribe to server state changes; returns the unsubscribe function. */
  onStateChange(listener: StateListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  private emit(e: ServerStateEvent): void {
    for (const l of this.listeners.slice()) {
      try {
        l(e);
      } catch {
        // A broken listener (logger, stats) must not break picking or health flips.
      }
    }
  }
}

/**
 * The pools of a (re)loaded config. A pool that keeps its name and protocol is built over its
 * predecessor (servers that stay keep their health, streaks and counters); the gateway and
 * the multi-process primary's health checks both follow reloads this way.
 */
export function poolsFor(
  configs: ReadonlyMap<string, PoolConfig>,
  previous: (name: string) => Pool | undefined,
): Map<string, Pool> {
  const out = new Map<string, Pool>();
  for (const [name, cfg] of configs) {
    const old = previous(name);
    out.set(name, new Pool(cfg, old !== undefined && old.config.protocol === cfg.protocol ? old : undefined));
  }
  return out;
}
