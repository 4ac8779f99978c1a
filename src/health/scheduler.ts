import type { Logger } from 'pino';
import type { Pool, ServerStateEvent } from '../balancer/pool.js';
import type { Member } from '../balancer/types.js';
import type { HealthConfig } from '../config/runtime.js';
import { type CheckOutcome, getCheck, type HealthCheck } from './checks/index.js';

interface Streak {
  ok: number;
  fail: number;
}

/**
 * Called after every check result is applied to `m` (its `lastCheck`, maybe its health):
 * `flipped` is the reason when this result changed the member's health, else undefined.
 * The multi-process primary forwards these to its workers (./remote.ts).
 */
export type CheckListener = (pool: Pool, m: Member, flipped: string | undefined) => void;

export interface SchedulerOptions {
  /**
   * false: run no checks, only log the pool's state changes (a worker of a multi-process
   * gateway, whose member health comes from the primary). Default true.
   */
  active?: boolean;
  onCheck?: CheckListener;
}

const TIMEOUT: CheckOutcome = Object.freeze({ ok: false, detail: 'timeout' });

function whenAborted(signal: AbortSignal): Promise<CheckOutcome> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(TIMEOUT);
    else signal.addEventListener('abort', () => resolve(TIMEOUT), { once: true });
  });
}

/**
 * Active health checks of one pool. Each member has its own timer chain: check, wait
 * `interval` ±10% (jitter keeps many gateways from probing in lock-step), check again —
 * so one member's checks never overlap and a slow server cannot delay the others.
 * Members start up (SPEC §2); `fall` consecutive failures take one down, `rise`
 * consecutive successes bring it back. The scheduler only flips `member.health` and calls
 * `pool.refresh()`; it also logs every `server_state` event of its pool (health, admin,
 * outlier), since it is the one long-lived companion of a pool.
 */
export class HealthScheduler {
  private pool: Pool;
  private readonly logger: Logger;
  private readonly streaks = new Map<Member, Streak>();
  private readonly timers = new Map<Member, NodeJS.Timeout>();
  private readonly inflight = new Set<AbortController>();
  private generation = 0;
  private running = false;
  private unsubscribe: (() => void) | undefined;
  private check: HealthCheck | undefined;
  private readonly active: boolean;
  private readonly onCheck: CheckListener | undefined;

  constructor(pool: Pool, logger: Logger, opts: SchedulerOptions = {}) {
    this.pool = pool;
    this.logger = logger;
    this.active = opts.active !== false;
    this.onCheck = opts.onCheck;
  }

  get health(): HealthConfig {
    return this.pool.config.health;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const gen = ++this.generation;
    const pool = this.pool;
    this.unsubscribe = pool.onStateChange((e) => this.log(e));
    if (!this.active) return;
    const cfg = pool.config.health;
    if (cfg.type === 'none') {
      // Nothing will ever bring a member back up, so none may stay down from an earlier config.
      let flipped = false;
      for (const m of pool.members) {
        if (m.health === 'down') {
          m.health = 'up';
          flipped = true;
        }
      }
      this.streaks.clear();
      if (flipped) pool.refresh('health checks disabled');
      return;
    }
    this.check = getCheck(cfg.type);
    if (this.check === undefined) {
      this.logger.warn(
        { type: 'event', event: 'health_check_unavailable', pool: pool.name, check: cfg.type },
        `no ${cfg.type} health check is registered; checking with tcp connect instead`,
      );
      this.check = getCheck('tcp');
    }
    const members = pool.members;
    // First checks spread over at most half a second (or one interval) so they do not burst.
    const spread = Math.min(cfg.interval, 500);
    for (let i = 0; i < members.length; i++) {
      this.schedule(members[i], Math.floor((spread * (i + Math.random())) / members.length), gen);
    }
  }

  /** Clears timers and aborts checks in flight. Member health stays as it is. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.generation++;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const ac of this.inflight) ac.abort();
    this.inflight.clear();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /**
   * Switch to the pool of a reloaded config. Members carried over by `new Pool(cfg, old)` are
   * the same objects, so their health and rise/fall streaks continue; removed members are
   * forgotten. A changed check type starts every streak afresh.
   */
  adopt(pool: Pool): void {
    const wasRunning = this.running;
    this.stop();
    const keep = new Set<Member>(pool.members);
    if (pool.config.health.type !== this.pool.config.health.type) this.streaks.clear();
    for (const m of this.streaks.keys()) if (!keep.has(m)) this.streaks.delete(m);
    this.pool = pool;
    if (wasRunning) this.start();
  }

  private schedule(m: Member, delay: number, gen: number): void {
    const t = setTimeout(() => {
      this.timers.delete(m);
      void this.run(m, gen);
    }, delay);
    t.unref();
    this.timers.set(m, t);
  }

  private async run(m: Member, gen: number): Promise<void> {
    const pool = this.pool;
    const cfg = pool.config.health;
    const check = this.check;
    if (check === undefined || gen !== this.generation) return;
    const ac = new AbortController();
    this.inflight.add(ac);
    const timer = setTimeout(() => ac.abort(), cfg.timeout);
    timer.unref();
    const started = Date.now();
    let outcome: CheckOutcome;
    try {
      const ctx = { config: cfg, pool: pool.config, signal: ac.signal, timeout: cfg.timeout };
      outcome = await Promise.race([check(m, ctx), whenAborted(ac.signal)]);
    } catch (err) {
      outcome = { ok: false, detail: err instanceof Error ? err.message : String(err) };
    }
    clearTimeout(timer);
    this.inflight.delete(ac);
    if (gen !== this.generation) return; // stopped or adopted a new pool meanwhile
    this.apply(m, outcome, started);
    const jitter = 0.9 + Math.random() * 0.2;
    this.schedule(m, Math.round(cfg.interval * jitter), gen);
  }

  private apply(m: Member, o: CheckOutcome, started: number): void {
    const now = Date.now();
    m.lastCheck = { ok: o.ok, at: started, ms: now - started, detail: o.detail };
    let s = this.streaks.get(m);
    if (s === undefined) {
      s = { ok: 0, fail: 0 };
      this.streaks.set(m, s);
    }
    const cfg = this.pool.config.health;
    let flipped: string | undefined;
    if (o.ok) {
      s.ok++;
      s.fail = 0;
      if (m.health === 'down' && s.ok >= cfg.rise) {
        m.health = 'up';
        flipped = `health check passed ${s.ok} times: ${o.detail}`;
        this.pool.refresh(flipped);
      }
    } else {
      s.fail++;
      s.ok = 0;
      if (m.health === 'up' && s.fail >= cfg.fall) {
        m.health = 'down';
        flipped = `health check failed ${s.fail} times: ${o.detail}`;
        this.pool.refresh(flipped);
      }
    }
    this.onCheck?.(this.pool, m, flipped);
  }

  /** Event record shape shared with core/logger.ts logEvent: `{ type: "event", event, ... }`. */
  private log(e: ServerStateEvent): void {
    const rec = { type: 'event', ...e };
    if (e.to === 'down') this.logger.warn(rec, `server ${e.pool}/${e.server} is down: ${e.reason}`);
    else this.logger.info(rec, `server ${e.pool}/${e.server} is ${e.to}: ${e.reason}`);
  }
}
