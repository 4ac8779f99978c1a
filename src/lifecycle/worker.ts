// A worker process of a multi-process gateway (docs/operations.md "Multiple processes"):
// runs every listener of the config, no admin listener, and answers the primary over the
// cluster IPC channel. Nothing here is on a hot path: the channel carries admin requests,
// reloads and the stop, never traffic.
import cluster from 'node:cluster';
import { applySteer, type SteerRequest } from '../admin/server.js';
import { logEvent } from '../core/logger.js';
import { snapshotOf } from '../stats/merge.js';
import { renderPrometheus } from '../stats/render/prometheus.js';
import type { ReloadTrigger } from './reload.js';
import { type Running, startOrReport } from './run.js';

/** Primary → worker. Requests carry an id the reply repeats. */
export type ToWorker =
  | { sy: 'stats'; id: number }
  | { sy: 'steer'; id: number; req: SteerRequest }
  | { sy: 'reload'; id: number; by: ReloadTrigger }
  | { sy: 'stop'; signal?: string };

/** Worker → primary. */
export type FromWorker = { sy: 'ready' } | { sy: 'reply'; id: number; data: unknown };

export function isFromWorker(m: unknown): m is FromWorker {
  return (
    typeof m === 'object' &&
    m !== null &&
    ((m as FromWorker).sy === 'ready' || (m as FromWorker).sy === 'reply')
  );
}

function isToWorker(m: unknown): m is ToWorker {
  if (typeof m !== 'object' || m === null) return false;
  const sy = (m as ToWorker).sy;
  return sy === 'stats' || sy === 'steer' || sy === 'reload' || sy === 'stop';
}

function send(m: FromWorker): void {
  if (process.send && process.connected) process.send(m);
}

async function answer(running: Running, m: Exclude<ToWorker, { sy: 'stop' }>): Promise<unknown> {
  const gw = running.gateway;
  switch (m.sy) {
    case 'stats':
      return snapshotOf(gw.stats, await renderPrometheus(gw.stats, { process: false }));
    case 'steer':
      return applySteer(() => gw.view(), m.req, running.logger);
    case 'reload':
      return running.reload(m.by);
  }
}

/** Runs until the primary (or a signal) stops it; returns the exit code. */
export async function runWorker(file: string, opts: { pretty?: boolean }): Promise<number> {
  const id = cluster.worker?.id ?? 0;
  const running = await startOrReport(file, { pretty: opts.pretty, admin: false, bindings: { worker: id } });
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
    send({ sy: 'ready' });
  });
}
