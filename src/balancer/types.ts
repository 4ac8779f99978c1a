import type { AdminState, BalanceAlgorithm, HealthState, MemberState } from '../core/types.js';

/** What the balancer needs from a server; built once from config, kept across reloads. */
export interface MemberSpec {
  name: string;
  address: string; // as written in config, e.g. "127.0.0.1:50051"
  host: string;
  port: number;
  weight: number; // 0-256; 0 = no new work
  backup: boolean;
  maxconn: number; // 0 = unlimited; units of work in flight
}

/** Last active health-check result, for stats. */
export interface CheckResult {
  ok: boolean;
  at: number; // epoch ms
  ms: number; // check duration
  detail: string; // e.g. "SERVING", "connect ECONNREFUSED", "HTTP 503"
}

/**
 * One server of a pool at runtime. Plain mutable counters: the hot path bumps them
 * directly, stats/ reads them when rendered.
 */
export interface Member extends MemberSpec {
  health: HealthState;
  admin: AdminState;
  /** Passive (outlier) ejection: no new work until this epoch ms. */
  ejectedUntil: number;
  /** Units of work in flight (connections for tcp, requests/calls otherwise). */
  active: number;
  total: number;
  errors: number;
  bytesIn: number; // from clients, sent to this server
  bytesOut: number; // from this server, sent to clients
  lastCheck?: CheckResult;
  changedAt: number; // epoch ms of the last state change
  consecutiveFailures: number; // passive, for outlier detection
  /** up | down | drain | maint, as stats show it. */
  readonly state: MemberState;
}

export interface PickRequest {
  /** Key for `balance: hash` (already extracted by the proxy per `hash.on`). */
  hashKey?: string;
  /** Servers to skip (a retry after a failure on them). */
  avoid?: readonly Member[];
  /**
   * `avoid` is only a preference: when no other server is usable, an avoided one is picked
   * (a replay of a refused HTTP/2 stream may go back to its server on a new connection).
   */
  avoidIsPreference?: boolean;
  /** A server to prefer if usable (session persistence cookie). */
  prefer?: string;
}

/** How a unit of work ended on the chosen server. */
export interface Release {
  ok: boolean;
  /** Why it failed, for passive health: counted only for these. */
  failure?: 'connect' | 'reset' | 'unavailable' | 'status' | 'timeout' | 'other';
  bytesIn?: number;
  bytesOut?: number;
}

export type Pick =
  | { ok: true; member: Member; release(r: Release): void }
  | { ok: false; reason: 'no_server' | 'full' };

/**
 * A selection algorithm over a snapshot of usable members. Rebuilt whole when the
 * usable set or a weight changes (cheap), so `select` stays allocation-free.
 */
export interface Selector {
  /** Returns a member from `candidates` or undefined. `accept` filters maxconn/avoid. */
  select(key: string | undefined, accept: (m: Member) => boolean): Member | undefined;
}

export type SelectorFactory = (members: readonly Member[]) => Selector;

export interface PoolLike {
  readonly name: string;
  readonly balance: BalanceAlgorithm;
  readonly members: readonly Member[];
  pick(req?: PickRequest): Pick;
}
