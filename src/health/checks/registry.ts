import type { Member } from '../../balancer/types.js';
import type { HealthConfig, PoolConfig } from '../../config/runtime.js';
import type { HealthCheckType } from '../../core/types.js';

export interface CheckContext {
  config: HealthConfig;
  pool: PoolConfig;
  /** Aborted at `timeout` or when the scheduler stops: release sockets at once. */
  signal: AbortSignal;
  timeout: number;
}

/** `detail` is shown in stats (`health.last`), e.g. "connected", "HTTP 503", "NOT_SERVING". */
export interface CheckOutcome {
  ok: boolean;
  detail: string;
}

/** A check must resolve (never reject is preferred; a rejection counts as a failure). */
export type HealthCheck = (member: Member, ctx: CheckContext) => Promise<CheckOutcome>;

const checks = new Map<string, HealthCheck>();

/** Register (or replace) the check for a `health.type`. Called at module load by checks/*.ts. */
export function registerCheck(type: Exclude<HealthCheckType, 'none'> | (string & {}), fn: HealthCheck): void {
  checks.set(type, fn);
}

export function getCheck(type: string): HealthCheck | undefined {
  return checks.get(type);
}

export function registeredChecks(): string[] {
  return [...checks.keys()];
}
