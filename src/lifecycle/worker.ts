// A worker process of a multi-process gateway (docs/operations.md "Multiple processes"):
// runs every listener of the config, no admin listener, and answers the primary over the
// cluster IPC channel. Nothing here is on a hot path: the channel carries admin requests,
// reloads and the stop, never traffic.
import cluster from 'node:cluster';
import { applySteer, type SteerRequest } from '../admin/server.js';
import { logEvent } from '../core/logger.js';
import { type HealthVerdict, isHealthVerdict, RemoteHealth } from '../health/remote.js';
import { snapshotOf } from '../stats/merge.js';
import { processMetricsJson, renderPrometheus } from '../stats/render/prometheus.js';
import type { ReloadTrigger } from './reload.js';
import { type Running, startOrReport } from './run.js';

/** Primary → worker. Requests carry an id the reply repeats. */
export type ToWorker =
  /** `proc`: include this process's metrics (for /metrics). */
  | { sy: 'stats'; id: number; proc?: boolean }
  | { sy: 'steer'; id: number; req: SteerRequest }
  /** `text`: the config file as the primary read and validated it; the worker applies exactly that. */
  | { sy: 'reload'; id: number; by: ReloadTrigger; text: string }
  | { sy: 'stop'; signal?: string }
  /** Active-health verdicts of the primary; `full`: its whole state (after a reload, or asked). */
  | { sy: 'health'; full: boolean; verdicts: HealthVerdict[] }
  /** The config text every worker runs, sent just before the full `health` a starting worker asks for. */
  | { sy: 'config'; text: string };

/**
 * Worker → primary. `health_sync` asks for a full `health` message (a starting worker);
 * `ready.file`: it started from the file, the primary's text having not come in time.
 */
export type FromWorker =
  | { sy: 'ready'; file?: boolean }
  | { sy: 'health_sync' }
  | { sy: 'reply'; id: number; data: unknown };

export function isFromWorker(m: unknown): m is FromWorker {
  if (typeof m !== 'object' || m === null) return false;
  const sy = (m as FromWorker).sy;
  return sy === 'ready' || sy === 'reply' || sy === 'health_sync';
}

function isToWorker(m: unknown): m is Exclude<ToWorker, { sy: 'health' } | { sy: 'config' }> {
  if (typeof m !== 'object' || m === null) return false;
  const sy = (m as ToWorker).sy;
  return sy === 'stats' || sy === 'steer' || sy === 'reload' || sy === 'stop';
}

function isHealthMessage(m: unknown): m is Extract<ToWorker, { sy: 'health' }> {
  if (typeof m !== 'object' || m === null) return false;
  const h = m as { sy?: unknown; full?: unknown; verdicts?: unknown };
  return h.sy === 'health' && typeof h.full === 'boolean' && Array.isArray(h.verdicts);
}

function isConfigMessage(m: unknown): m is Extract<ToWorker, { sy: 'config' }> {
  if (typeof m !== 'object' || m === null) return false;
  const c = m as { sy?: unknown; text?: unknown };
  return c.sy === 'config' && typeof c.text === 'string';
}

/** How long a starting worker waits for the primary's health state before starting anyway. */
const HEALTH_SYNC_TIMEOUT_MS = 3_000;

function send(m: FromWorker): void {
  if (process.send && process.connected) process.send(m);
}

async function answer(
  running: Running,
  m: Exclude<ToWorker, { sy: 'stop' } | { sy: 'health' } | { sy: 'config' }>,
): Promise<unknown> {
  const gw = running.gateway;
  switch (m.sy) {
    case 'stats':
      return snapshotOf(
        gw.stats,
        await renderPrometheus(gw.stats, { process: false }),
        m.proc === true ? await processMetricsJson(String(cluster.worker?.id ?? 0)) : undefined,
      );
    case 'steer':
      return applySteer(() => gw.view(), m.req, running.logger);
    case 'reload':
      return running.reload(m.by, m.text);
  }
}

/** Runs until the primary (or a signal) stops it; returns the exit code. */
export async function runWorker(file: string, opts: { pretty?: boolean }): Promise<number> {
  const id = cluster.worker?.id ?? 0;
  // Active checks run in the primary; this worker applies its verdicts. The current ones are
  // asked for (and awaited) before the gateway starts, so the pools are built with them and
  // no connection is served on a server the primary already knows to be down. The config
  // text comes with them: the one the primary validated and every other worker runs.
  const remoteHealth = new RemoteHealth();
  let text: string | undefined;
  let synced: (() => void) | undefined;
  const firstSync = new Promise<void>((resolve) => {
    synced = resolve;
    setTimeout(resolve, HEALTH_SYNC_TIMEOUT_MS).unref();
  });
  process.on('message', (m: unknown) => {
    if (isConfigMessage(m)) {
      text = m.text;
      return;
    }
    if (!isHealthMessage(m)) return;
    remoteHealth.set(m.verdicts.filter(isHealthVerdict), m.full);
    if (m.full) synced?.();
  });
  send({ sy: 'health_sync' });
  await firstSync;
  // Without an answer in time: the file as it is now (the primary reloads this worker with
  // its text once it is up, if they differ).
  const started = text;
  const running = await startOrReport(file, {
    pretty: opts.pretty,
    admin: false,
    bindings: { worker: id },
    remoteHealth,
    text: started,
  });
  if (running === undefined) return 1;
  const { logger } = running;
  logEvent(logger, 'started', { file, pid: process.pid });
  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      running.stop(signal).then(() => {
        logger.flush?.();
        resolve(0);
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    // The primary reloads every worker; a SIGHUP sent to the whole process group must not
    // reload this one twice (nor kill it: the default action).
    process.on('SIGHUP', () => {});
    // The primary is gone (killed): nobody can stop or steer this worker any more.
    process.on('disconnect', () => stop('disconnect'));
    process.on('message', (m: unknown) => {
      if (!isToWorker(m)) return;
      if (m.sy === 'stop') {
        stop(m.signal ?? 'primary');
        return;
      }
      answer(running, m).then(
        (data) => send({ sy: 'reply', id: m.id, data }),
        (err: unknown) => {
          logger.error({ type: 'event', event: 'ipc', err, request: m.sy }, 'worker request failed');
          send({ sy: 'reply', id: m.id, data: { error: err instanceof Error ? err.message : String(err) } });
        },
      );
    });
    send({ sy: 'ready', file: started === undefined });
  });
}
