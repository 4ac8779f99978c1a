import type { Logger } from 'pino';
import type { Pool } from '../balancer/pool.js';
import { HealthScheduler } from './scheduler.js';

/**
 * One HealthScheduler per pool name across reloads: `update` with the pools of each new
 * config adopts surviving pools (carried-over members keep health and rise/fall streaks),
 * starts schedulers for new pools and stops those of removed pools.
 */
export class HealthManager {
  private readonly logger: Logger;
  private readonly schedulers = new Map<string, HealthScheduler>();

  constructor(logger: Logger) {
    this.logger = logger;
  }

  update(pools: Iterable<Pool>): void {
    const seen = new Set<string>();
    for (const pool of pools) {
      seen.add(pool.name);
      const s = this.schedulers.get(pool.name);
      if (s !== undefined) {
        s.adopt(pool);
      } else {
        const created = new HealthScheduler(pool, this.logger);
        this.schedulers.set(pool.name, created);
        created.start();
      }
    }
    for (const [name, s] of this.schedulers) {
      if (seen.has(name)) continue;
      s.stop();
      this.schedulers.delete(name);
    }
  }

  stop(): void {
    for (const s of this.schedulers.values()) s.stop();
    this.schedulers.clear();
  }
}
