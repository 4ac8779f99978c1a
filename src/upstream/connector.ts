// Backend TCP connects with a deadline, and the pick → connect → release/avoid → pick again
// loop that every connection-per-unit proxy (TCP tunnels, WebSocket upgrades) shares.
import net from 'node:net';
import type { Member, Pick, PickRequest, PoolLike } from '../balancer/types.js';

/** Options passed through to `net.connect` (e.g. `onread` for a reused read buffer). */
export interface ConnectOptions {
  onread?: net.OnReadOpts;
  /** Keep the socket's readable side open after the backend's FIN (tunnels forward it). */
  allowHalfOpen?: boolean;
}

/** An Error with a node-style `code` ('ECONNREFUSED', 'ETIMEDOUT', …). */
export interface ConnectError extends Error {
  code: string;
}

function connectError(message: string, code: string): ConnectError {
  const e = new Error(message) as ConnectError;
  e.code = code;
  return e;
}

/**
 * Connects to `member` with no-delay on. Rejects with the socket's error (its `code` kept)
 * or, after `timeoutMs` without a connection, with code 'ETIMEDOUT' and the socket
 * destroyed. The resolved socket has no listeners of ours left.
 */
export function connect(
  member: { host: string; port: number },
  timeoutMs: number,
  opts?: ConnectOptions,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      host: member.host,
      port: member.port,
      noDelay: true,
      allowHalfOpen: opts?.allowHalfOpen ?? false,
      onread: opts?.onread,
    });
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            cleanup();
            socket.destroy();
            reject(
              connectError(
                `connect ETIMEDOUT ${member.host}:${member.port} after ${timeoutMs}ms`,
                'ETIMEDOUT',
              ),
            );
          }, timeoutMs)
        : undefined;
    const onConnect = () => {
      cleanup();
      resolve(socket);
    };
    const onError = (err: Error & { code?: string }) => {
      cleanup();
      socket.destroy();
      reject(connectError(err.message, err.code ?? 'ECONNRESET'));
    };
    // Closed without an error event (e.g. destroyed by a drain): still a failure.
    const onClose = () => {
      cleanup();
      reject(connectError(`connect to ${member.host}:${member.port} closed`, 'ECONNRESET'));
    };
    function cleanup() {
      if (timer !== undefined) clearTimeout(timer);
      socket.removeListener('connect', onConnect);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
    }
    socket.once('connect', onConnect);
    socket.once('error', onError);
    socket.once('close', onClose);
  });
}

export type ConnectResult =
  | { ok: true; socket: net.Socket; pick: Extract<Pick, { ok: true }>; tried: number }
  | { ok: false; reason: 'no_server' | 'full' | 'connect_failure'; tried: number; error?: string };

/**
 * Picks a server and connects; on a connect failure releases that pick as
 * `{ ok: false, failure: 'connect' }` (passive health counts it) and picks again with every
 * failed server in `avoid`, up to `attempts` retries (SPEC `retries.attempts`, 0 = never).
 * `tried` is how many connects were made. A pick that finds nothing after a failure
 * reports `connect_failure` (the client's problem is the failed connect, not an empty pool).
 */
export async function connectWithRetry(
  pool: PoolLike,
  req: PickRequest,
  attempts: number,
  timeoutMs: number,
  opts?: ConnectOptions,
): Promise<ConnectResult> {
  let avoid: Member[] | undefined;
  let tried = 0;
  let lastError: string | undefined;
  for (let i = 0; i <= attempts; i++) {
    const pick = pool.pick(avoid === undefined ? req : { ...req, avoid });
    if (!pick.ok) {
      return tried === 0
        ? { ok: false, reason: pick.reason, tried }
        : { ok: false, reason: 'connect_failure', tried, error: lastError };
    }
    tried++;
    try {
      const socket = await connect(pick.member, timeoutMs, opts);
      return { ok: true, socket, pick, tried };
    } catch (err) {
      const e = err as ConnectError;
      lastError = `${pick.member.name}: ${e.code}`;
      pick.release({ ok: false, failure: 'connect' });
      avoid = avoid === undefined ? [...(req.avoid ?? []), pick.member] : [...avoid, pick.member];
    }
  }
  return { ok: false, reason: 'connect_failure', tried, error: lastError };
}
