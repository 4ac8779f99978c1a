// Active health checks of a multi-process gateway (docs/operations.md "Multiple processes"):
// they run once, in the primary (CentralHealth: the config's pools without listeners, the
// usual HealthManager, rise/fall included), and every worker applies the primary's verdicts
// to its own pools (RemoteHealth). Passive health (outlier ejection) stays per worker: it
// counts that worker's requests. Neither is used with `workers: 1`.
import type { Logger } from 'pino';
import { type Pool, poolsFor } from '../balancer/pool.js';
import type { CheckResult, Member } from '../balancer/types.js';
import type { GatewayConfig } from '../config/runtime.js';
import type { HealthState } from '../core/types.js';
import { HealthManager } from './manager.js';

/** One server's active-health state as the primary sees it. */
export interface HealthVerdict {
  pool: string;
  server: string;
  /** A verdict applies only to the server at this address (a reload may re-point a name). */
  address: string;
  health: HealthState;
  last?: CheckResult;
  /** Why the health changed (the primary's rise/fall reason), when it did. */
  reason?: string;
}

const key = (pool: string, server: string): string => `${pool}\u0000${server}`;

/** Applies one verdict to `pool`'s member; true when its health changed. */
function applyVerdict(pool: Pool, v: HealthVerdict): boolean {
  const m = pool.member(v.server);
  if (m === undefined || m.address !== v.address) return false;
  if (v.last !== undefined) m.lastCheck = v.last;
  if (m.health === v.health) return false;
  m.health = v.health;
  pool.refresh(v.reason ?? `health check in the primary: ${v.last?.detail ?? v.health}`);
  return true;
}

export function isHealthVerdict(v: unknown): v is HealthVerdict {
  if (typeof v !== 'object' || v === null) return false;
  const x = v as HealthVerdict;
  return (
    typeof x.pool === 'string' &&
    typeof x.server === 'string' &&
    typeof x.address === 'string' &&
    (x.health === 'up' || x.health === 'down')
  );
}

/**
 * A worker's copy of the primary's verdicts. `set` takes them from the IPC channel (even
 * before the gateway exists); `attach` (HealthManager.update, on start and every reload)
 * applies the known verdicts to the new pools before any connection is served.
 */
export class RemoteHealth {
  private readonly table = new Map<string, HealthVerdict>();
  private pools = new Map<string, Pool>();

  /** `full`: the primary's whole state, replacing what was known (servers it lacks are forgotten). */
  set(verdicts: readonly HealthVerdict[], full: boolean): void {
    if (full) this.table.clear();
    for (const v of verdicts) {
      this.table.set(key(v.pool, v.server), v);
      const pool = this.pools.get(v.pool);
      if (pool !== undefined) applyVerdict(pool, v);
    }
  }

  attach(pools: readonly Pool[]): void {
    this.pools = new Map(pools.map((p) => [p.name, p]));
    for (const pool of pools) {
      for (const m of pool.members) {
        const v = this.table.get(key(pool.name, m.name));
        if (v !== undefined) applyVerdict(pool, v);
      }
    }
  }
}

function verdictOf(pool: Pool, m: Member, reason?: string): HealthVerdict {
  return { pool: pool.name, server: m.name, address: m.address, health: m.health, last: m.lastCheck, reason };
}

/**
 * The primary's side: the config's pools (no listener, no traffic) checked by a
 * HealthManager exactly as one process checks its own; `apply` on every reload builds the
 * pools as Gateway does (servers that stay keep health and streaks). Every check result is
 * sent on (`publish`), results of one tick batched in one message.
 */
export class CentralHealth {
  private pools = new Map<string, Pool>();
  private readonly manager: HealthManager;
  private pending: HealthVerdict[] = [];
  private flushing = false;

  constructor(
    logger: Logger,
    private readonly publish: (verdicts: HealthVerdict[]) => void,
  ) {
    this.manager = new HealthManager(logger, {
      onCheck: (pool, m, flipped) => this.queue(verdictOf(pool, m, flipped)),
    });
  }

  apply(cfg: GatewayConfig): void {
    this.pools = poolsFor(cfg.pools, (n) => this.pools.get(n));
    this.manager.update(this.pools.values());
  }

  /** Every server's current verdict (what a starting worker, or one after a reload, takes over). */
  snapshot(): HealthVerdict[] {
    const out: HealthVerdict[] = [];
    for (const pool of this.pools.values()) for (const m of pool.members) out.push(verdictOf(pool, m));
    return out;
  }

  stop(): void {
    this.manager.stop();
    this.pending = [];
  }

  private queue(v: HealthVerdict): void {
    this.pending.push(v);
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      const batch = this.pending;
      this.pending = [];
      if (batch.length > 0) this.publish(batch);
    });
  }
}
