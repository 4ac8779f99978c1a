// The admin listener (SPEC §4): stats page, JSON, Prometheus, health, runtime server state
// and weight, reload. node:http is enough: this is not a hot path, and every input it
// takes (path, headers, body) is bounded before it is looked at.

import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { PoolLike } from '../balancer/types.js';
import { isLoopbackHost } from '../core/address.js';
import type { AdminState, HostPort } from '../core/types.js';
import type { GatewayView, StatsRegistry } from '../stats/registry.js';
import { renderHtml } from '../stats/render/html.js';
import { buildStats, type StatsJson } from '../stats/render/json.js';
import { CONTENT_TYPE as PROM_TYPE, renderPrometheus } from '../stats/render/prometheus.js';

export type ReloadResult = { ok: true } | { ok: false; errors: string[] };

export interface AdminOptions {
  bind: HostPort;
  /** Basic auth; the password is already resolved from its environment variable. */
  auth?: { user: string; password: string };
  /** This process's counters; required unless `remote` is given. */
  stats?: StatsRegistry;
  /**
   * Multi-process mode: the stats, metrics and server steering of the worker processes
   * (src/lifecycle/primary.ts). When set, `stats` and `view` are not used.
   */
  remote?: AdminRemote;
  /** Current listeners and pools; defaults to the registry's provider. */
  view?: () => GatewayView;
  reload: () => Promise<ReloadResult>;
  draining: () => boolean;
  logger: Logger;
  /** Serve /metrics (admin.metrics); when false it answers 404. Default true. */
  metrics?: boolean;
  /** Largest request body accepted (bytes); larger gets 413. Default 64 KiB. */
  maxBody?: number;
  /** Refresh interval the stats page starts with (ms). */
  refreshMs?: number;
}

export interface SteerRequest {
  pool: string;
  server: string;
  what: 'state' | 'weight';
  /** Already validated: an AdminState for 'state', an integer 0–256 for 'weight'. */
  value: AdminState | number;
  /** Who asked, for the log. */
  client: string;
}

/** The HTTP status and JSON body the admin API answers with. */
export interface SteerResult {
  status: number;
  body: Record<string, unknown>;
}

export interface AdminRemote {
  stats(): Promise<StatsJson>;
  metrics(): Promise<string>;
  steer(req: SteerRequest): Promise<SteerResult>;
}

/** The admin basic-auth credentials of a config, the password read from its variable. */
export function adminAuth(
  auth: { user: string; passwordEnv: string } | undefined,
): { user: string; password: string } | undefined {
  return auth ? { user: auth.user, password: process.env[auth.passwordEnv] ?? '' } : undefined;
}

export interface AdminServer {
  close(): Promise<void>;
  /** Where it listens (the real port when bind.port was 0). */
  readonly address: HostPort;
}

/** A pool the admin API can steer; the balancer's Pool has both methods. */
interface SteerablePool extends PoolLike {
  setAdmin(name: string, state: AdminState): boolean;
  setWeight(name: string, weight: number): boolean;
}

function steerable(p: PoolLike): p is SteerablePool {
  const s = p as Partial<SteerablePool>;
  return typeof s.setAdmin === 'function' && typeof s.setWeight === 'function';
}

const ADMIN_STATES: readonly AdminState[] = ['ready', 'drain', 'maint'];

function lookup(
  view: () => GatewayView,
  poolName: string,
  serverName: string,
): { pool: SteerablePool; member: SteerablePool['members'][number] } {
  const entry = view().pools.get(poolName);
  if (entry === undefined) throw new HttpError(404, `no pool named "${poolName}"`);
  if (!steerable(entry.pool)) throw new HttpError(501, `pool "${poolName}" cannot be changed at runtime`);
  const member = entry.pool.members.find((m) => m.name === serverName);
  if (member === undefined) throw new HttpError(404, `no server named "${serverName}" in pool "${poolName}"`);
  return { pool: entry.pool, member };
}

/**
 * Sets a server's admin state or weight in this process and logs it; the admin listener
 * and, in multi-process mode, each worker (on the primary's request) call this.
 */
export function applySteer(view: () => GatewayView, req: SteerRequest, log: Logger): SteerResult {
  try {
    const { pool, member } = lookup(view, req.pool, req.server);
    const { pool: poolName, server: serverName, client } = req;
    const isState = req.what === 'state';
    const from = isState ? member.admin : member.weight;
    const applied = isState
      ? pool.setAdmin(serverName, req.value as AdminState)
      : pool.setWeight(serverName, req.value as number);
    if (!applied) throw new HttpError(404, `no server named "${serverName}"`);
    log.info(
      {
        type: 'event',
        event: 'admin',
        action: isState ? 'set_state' : 'set_weight',
        pool: poolName,
        server: serverName,
        from,
        to: req.value,
        client,
      },
      isState ? 'admin state changed' : 'weight changed',
    );
    return {
      status: 200,
      body: {
        ok: true,
        pool: poolName,
        server: serverName,
        state: member.state,
        admin: member.admin,
        weight: member.weight,
      },
    };
  } catch (e) {
    if (e instanceof HttpError) return { status: e.status, body: { ok: false, errors: [e.message] } };
    throw e;
  }
}
const MAX_URL = 2048;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** SHA-256 both sides so timingSafeEqual gets equal lengths and the length leaks nothing. */
function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function checkAuth(header: string | undefined, expected: Buffer): boolean {
  if (header === undefined || header.length > 1024) return false;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  const given = m ? Buffer.from(m[1], 'base64').toString('utf8') : '';
  // Always compare, even on a malformed header, so timing does not tell which case it was.
  return timingSafeEqual(digest(given), expected) && m !== null;
}

function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max) {
      reject(new HttpError(413, `body larger than ${max} bytes`, { connection: 'close' }));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new HttpError(413, `body larger than ${max} bytes`, { connection: 'close' }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function readJson(req: http.IncomingMessage, max: number): Promise<Record<string, unknown>> {
  const body = await readBody(req, max);
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not valid JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new HttpError(400, 'body must be a JSON object');
  return v as Record<string, unknown>;
}

function send(
  res: http.ServerResponse,
  status: number,
  body: string,
  type: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) return;
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function sendJson(
  res: http.ServerResponse,
  status: number,
  v: unknown,
  headers?: Record<string, string>,
): void {
  send(res, status, `${JSON.stringify(v)}\n`, 'application/json; charset=utf-8', headers);
}

/** The one loopback test, shared with config validation. */
export const isLoopback = isLoopbackHost;

export function startAdmin(opts: AdminOptions): Promise<AdminServer> {
  // Config validation refuses these too; the admin API can drain every server and reload,
  // so it must never end up open to the network by another path.
  if (!opts.auth && !isLoopback(opts.bind.host)) {
    const where = opts.bind.host === '' ? `:${opts.bind.port}` : `${opts.bind.host}:${opts.bind.port}`;
    return Promise.reject(new Error(`admin bind ${where} is not loopback: admin.auth is required`));
  }
  if (opts.auth && (opts.auth.user === '' || opts.auth.password === '')) {
    return Promise.reject(
      new Error('admin.auth needs a user and a non-empty password (is password_env set?)'),
    );
  }
  const remote = opts.remote;
  const stats = opts.stats;
  if (remote === undefined && stats === undefined)
    return Promise.reject(new Error('startAdmin needs `stats` or `remote`'));
  // Unused (and absent) with `remote`: the workers hold the pools.
  const view = opts.view ?? stats?.view ?? ((): GatewayView => ({ listeners: [], pools: new Map() }));
  const maxBody = opts.maxBody ?? 64 * 1024;
  const log = opts.logger;
  const expected = opts.auth ? digest(`${opts.auth.user}:${opts.auth.password}`) : undefined;
  const metricsOn = opts.metrics !== false;
  // One reload at a time: a second POST waits for the first and then runs its own.
  let reloading: Promise<unknown> = Promise.resolve();

  const statsJson = (): Promise<StatsJson> =>
    remote ? remote.stats() : Promise.resolve(buildStats(stats as StatsRegistry));

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const rawUrl = req.url ?? '/';
    if (rawUrl.length > MAX_URL) throw new HttpError(414, 'URL too long');
    const q = rawUrl.indexOf('?');
    const path = q >= 0 ? rawUrl.slice(0, q) : rawUrl;

    // Probes (load balancers, orchestrators) rarely carry credentials, and the answer
    // tells nothing but "serving" or "draining".
    if (path === '/healthz') {
      if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'use GET', { allow: 'GET, HEAD' });
      const draining = opts.draining();
      send(res, draining ? 503 : 200, draining ? 'draining\n' : 'ok\n', 'text/plain; charset=utf-8');
      return;
    }

    if (expected !== undefined && !checkAuth(req.headers.authorization, expected)) {
      throw new HttpError(401, 'authentication required', {
        'www-authenticate': 'Basic realm="switchyard admin", charset="UTF-8"',
      });
    }

    const get = method === 'GET' || method === 'HEAD';
    switch (path) {
      case '/':
      case '/stats':
        if (!get) throw new HttpError(405, 'use GET', { allow: 'GET, HEAD' });
        send(
          res,
          200,
          renderHtml(await statsJson(), { refreshMs: opts.refreshMs }),
          'text/html; charset=utf-8',
          {
            'content-security-policy':
              "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
          },
        );
        return;
      case '/stats.json':
        if (!get) throw new HttpError(405, 'use GET', { allow: 'GET, HEAD' });
        sendJson(res, 200, await statsJson());
        return;
      case '/metrics':
        if (!metricsOn) throw new HttpError(404, 'metrics are off (admin.metrics: false)');
        if (!get) throw new HttpError(405, 'use GET', { allow: 'GET, HEAD' });
        send(
          res,
          200,
          remote ? await remote.metrics() : await renderPrometheus(stats as StatsRegistry),
          PROM_TYPE,
        );
        return;
      case '/reload': {
        if (method !== 'POST') throw new HttpError(405, 'use POST', { allow: 'POST' });
        await readBody(req, maxBody); // ignored, but drained and bounded
        const run = reloading.then(() => opts.reload());
        reloading = run.catch(() => undefined);
        let result: ReloadResult;
        try {
          result = await run;
        } catch (err) {
          log.error({ type: 'event', event: 'reload', ok: false, by: 'admin', err }, 'reload failed');
          sendJson(res, 500, { ok: false, errors: [err instanceof Error ? err.message : String(err)] });
          return;
        }
        if (result.ok) sendJson(res, 200, { ok: true });
        else sendJson(res, 400, { ok: false, errors: result.errors });
        return;
      }
    }

    // /pools/{pool}/servers/{server}/{state|weight}
    const parts = path.split('/');
    if (parts.length === 6 && parts[0] === '' && parts[1] === 'pools' && parts[3] === 'servers') {
      const what = parts[5];
      if (what !== 'state' && what !== 'weight') throw new HttpError(404, 'not found');
      if (method !== 'POST') throw new HttpError(405, 'use POST', { allow: 'POST' });
      let poolName: string;
      let serverName: string;
      try {
        poolName = decodeURIComponent(parts[2]);
        serverName = decodeURIComponent(parts[4]);
      } catch {
        throw new HttpError(400, 'bad percent-encoding in path');
      }
      // Locally, unknown names answer 404 before the body is read; the workers of a
      // multi-process gateway are asked only with a valid body.
      if (!remote) lookup(view, poolName, serverName);
      const body = await readJson(req, maxBody);
      const client = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
      let value: AdminState | number;
      if (what === 'state') {
        const state = body.state;
        if (typeof state !== 'string' || !ADMIN_STATES.includes(state as AdminState)) {
          throw new HttpError(400, 'state must be one of "ready", "drain", "maint"');
        }
        value = state as AdminState;
      } else {
        const weight = body.weight;
        if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > 256) {
          throw new HttpError(400, 'weight must be an integer from 0 to 256');
        }
        value = weight;
      }
      const steer: SteerRequest = { pool: poolName, server: serverName, what, value, client };
      const r = remote ? await remote.steer(steer) : applySteer(view, steer, log);
      sendJson(res, r.status, r.body);
      return;
    }
    throw new HttpError(404, 'not found');
  }

  const server = http.createServer(
    {
      // Slow or idle admin clients must not hold sockets forever.
      requestTimeout: 30_000,
      headersTimeout: 10_000,
      keepAliveTimeout: 5_000,
      maxHeaderSize: 16 * 1024,
    },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        if (err instanceof HttpError) {
          sendJson(res, err.status, { ok: false, errors: [err.message] }, err.headers);
          return;
        }
        log.error(
          { type: 'event', event: 'admin', err, url: req.url?.slice(0, 200) },
          'admin request failed',
        );
        sendJson(res, 500, { ok: false, errors: ['internal error'] });
      });
    },
  );
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(opts.bind.port, opts.bind.host === '' ? undefined : opts.bind.host, () => {
      server.off('error', onError);
      server.on('error', (err) => log.error({ type: 'event', event: 'admin', err }, 'admin server error'));
      const a = server.address() as AddressInfo;
      const address: HostPort = { host: a.address, port: a.port };
      const bind = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
      log.info({ type: 'event', event: 'listener_start', listener: 'admin', bind }, 'admin listening');
      resolve({
        address,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
