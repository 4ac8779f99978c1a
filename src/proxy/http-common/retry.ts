import type { PoolConfig } from '../../config/runtime.js';

/**
 * Whether a stream an h2 server refused may be sent again, after `done` replays of this
 * request: REFUSED_STREAM when `retries.on` has `refused-stream`, within `retries.attempts`.
 * Streams above a GOAWAY's last-stream-id were never processed: replaying them is routine
 * (SPEC §3), so at least once even with `retries.attempts: 0`. Shared by the HTTP/2 proxy
 * and the HTTP/1 → h2 bridge.
 */
export function refusedReplayAllowed(r: PoolConfig['retries'], done: number, goaway: boolean): boolean {
  if (goaway && done < Math.max(1, r.attempts)) return true;
  return done < r.attempts && r.on.includes('refused-stream');
}
