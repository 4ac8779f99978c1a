import type { Logger } from 'pino';
import type { Pool } from '../balancer/pool.js';
import type { RemoteHealth } from './remote.js';
import { type CheckListener, HealthScheduler } from './scheduler.js';

export interface HealthManagerOptions {
  /**
   * Member health comes from elsewhere (a worker of a multi-process gateway: the primary's
   * verdicts). No active check runs; schedulers only log state changes, and every pool
   * `update` gets the latest known verdicts applied.
   */
  remote?: RemoteHealth;
  /** Every check result (the multi-process primary forwards them). */
  onCheck?: CheckListener;
}

/**
 * One HealthScheduler per pool name across reloads: `update` with the pools of each new
 * config adopts surviving pools (carried-over members keep health and rise/fall streaks),
 * starts schedulers for new pools and stops those of removed pools.
 */
export class HealthManager {
  private readonly logger: Logger;
  private readonly schedulers = new Map<string, HealthScheduler>();
  private readonly opts: HealthManagerOptions;

  constructor(logger: Logger, opts: HealthManagerOptions = {}) {
    this.logger = logger;
    this.opts = opts;
  }

  update(pools: Iterable<Pool>): void {
    const list = [...pools];
    const seen = new Set<string>();
    for (const pool of list) {
      seen.add(pool.name);
      const s = this.schedulers.get(pool.name);
      if (s !== undefined) {
        s.adopt(pool);
      } else {
        const created = new HealthScheduler(pool, this.logger, {
          active: this.opts.remote === undefined,
          onCheck: this.opts.onCheck,
        });
        this.schedulers.set(pool.name, created);
        created.start();
      }
    }
    for (const [name, s] of this.schedulers) {
      if (seen.has(name)) continue;
      s.stop();
      this.schedulers.delete(name);
    }
    // After the schedulers subscribed, so the flips this applies are logged.
    this.opts.remote?.attach(list);
  }

  stop(): void {
    for (const s of this.schedulers.values()) s.stop();
    this.schedulers.clear();
  }
}
