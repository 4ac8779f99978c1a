// Passive health (SPEC §2 `outlier`): pure counting over outcomes the proxies report through
// `release`. No I/O and no imports beyond balancer types, which is why balancer/pool.ts may
// call it on the hot path while the rest of health/ (timers, sockets) stays out of balancer/.
import type { Member, Release } from '../balancer/types.js';

export interface OutlierConfig {
  consecutiveFailures: number;
  eject: number; // ms
}

/**
 * Failures that say something about the server: connect failure, reset before the reply,
 * gRPC UNAVAILABLE, HTTP 502/503/504 (`status`), a timeout. `other` (a client reset, a bad
 * request) is counted as an error but neither counts towards nor clears ejection.
 */
export function isOutlierFailure(failure: Release['failure']): boolean {
  return (
    failure === 'connect' ||
    failure === 'reset' ||
    failure === 'unavailable' ||
    failure === 'status' ||
    failure === 'timeout'
  );
}

/**
 * Feeds one outcome. Returns true when this outcome ejected the member (the caller then
 * rebuilds the picker and reports the state change). Failures of work that was already in
 * flight when the member got ejected do not extend the ejection.
 */
export function recordOutcome(m: Member, r: Release, cfg: OutlierConfig | undefined, now: number): boolean {
  if (r.ok) {
    m.consecutiveFailures = 0;
    return false;
  }
  if (cfg === undefined || cfg.consecutiveFailures <= 0 || !isOutlierFailure(r.failure)) return false;
  if (m.ejectedUntil > now) return false;
  if (++m.consecutiveFailures < cfg.consecutiveFailures) return false;
  m.consecutiveFailures = 0;
  m.ejectedUntil = now + cfg.eject;
  return true;
}
