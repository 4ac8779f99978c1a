// Runs a gateway from a config file until a signal stops it (SPEC §1 "Signals"). With
// `global.workers` other than 1 this process becomes the primary of a cluster
// (./primary.ts) and each worker runs startFromFile without the admin listener (./worker.ts).
import cluster from 'node:cluster';
import os from 'node:os';
import { adminAuth, startAdmin } from '../admin/server.js';
import { loadConfigFile } from '../config/load.js';
import { createLogger, type Logger, logEvent } from '../core/logger.js';
import type { HostPort } from '../core/types.js';
import { Gateway, type GatewayOptions } from '../gateway.js';
import { runPrimary } from './primary.js';
import { type ReloadTrigger, reloadFromFile } from './reload.js';
import { runWorker } from './worker.js';

export interface Running {
  gateway: Gateway;
  logger: Logger;
  /** Graceful stop; resolves when everything is closed. `signal` is for the log. */
  stop(signal?: string): Promise<void>;
  /** Re-reads the file, or applies `text` (a worker: the primary's text of it). */
  reload(by?: ReloadTrigger, text?: string): ReturnType<typeof reloadFromFile>;
  adminAddress?: HostPort;
}

export async function startFromFile(
  file: string,
  opts: {
    pretty?: boolean;
    logger?: Logger;
    /** Start the admin listener when the config has one (default true; workers: false). */
    admin?: boolean;
    /** Fields added to every log record (a worker's `worker: id`). */
    bindings?: Record<string, unknown>;
    /** A worker's health verdicts from the primary (no active checks run then). */
    remoteHealth?: GatewayOptions['remoteHealth'];
    /** The file's text to start with instead of reading it (a worker: the primary's). */
    text?: string;
  } = {},
): Promise<Running> {
  const loaded = loadConfigFile(file, opts.text);
  if (!loaded.ok) throw Object.assign(new Error('invalid config'), { configErrors: loaded.errors });
  const cfg = loaded.config;
  let logger = opts.logger ?? createLogger({ level: cfg.global.log.level, pretty: opts.pretty });
  if (opts.bindings) logger = logger.child(opts.bindings);
  const gateway = await Gateway.start(cfg, logger, { remoteHealth: opts.remoteHealth });
  const reload = (by: ReloadTrigger = 'api', text?: string) =>
    reloadFromFile(gateway, file, logger, by, text);
  let admin: Awaited<ReturnType<typeof startAdmin>> | undefined;
  if (cfg.admin && opts.admin !== false) {
    try {
      admin = await startAdmin({
        bind: cfg.admin.bind,
        auth: adminAuth(cfg.admin.auth),
        stats: gateway.stats,
        view: () => gateway.view(),
        reload: () => reload('admin'),
        draining: () => gateway.draining,
        logger,
        metrics: cfg.admin.metrics,
      });
    } catch (e) {
      await gateway.stop(0);
      throw e;
    }
  }
  let stopping: Promise<void> | undefined;
  return {
    gateway,
    logger,
    reload,
    adminAddress: admin?.address,
    stop(signal?: string) {
      stopping ??= (async () => {
        logEvent(logger, 'stop', { grace_ms: gateway.currentConfig.global.grace, signal }, 'graceful stop');
        await gateway.stop();
        await admin?.close();
        logEvent(logger, 'stopped', {});
      })();
      return stopping;
    },
  };
}

/** startFromFile for a CLI process: a config or bind error goes to stderr (exit 1). */
export async function startOrReport(
  file: string,
  opts: Parameters<typeof startFromFile>[1],
): Promise<Running | undefined> {
  try {
    return await startFromFile(file, opts);
  } catch (e) {
    const errs = (e as { configErrors?: string[] }).configErrors;
    process.stderr.write(`${errs ? errs.join('\n') : (e as Error).message}\n`);
    return undefined;
  }
}

/** CLI entry: binds signals, returns the process exit code. */
export async function runUntilSignal(file: string, opts: { pretty?: boolean }): Promise<number> {
  if (cluster.isWorker) return runWorker(file, opts);
  const loaded = loadConfigFile(file);
  if (!loaded.ok) {
    process.stderr.write(`${loaded.errors.join('\n')}\n`);
    return 1;
  }
  const n = processCount(loaded.config.global.workers);
  if (n !== 1) return runPrimary(file, loaded, n, opts);
  const running = await startOrReport(file, opts);
  if (running === undefined) return 1;
  const { logger } = running;
  logEvent(logger, 'started', { file, pid: process.pid });
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      running.stop(signal).then(() => {
        logger.flush?.();
        resolve(0);
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => {
      void running.reload('SIGHUP');
    });
  });
}

/** `global.workers` as a process count: 0 ("auto") is one per core the process may use. */
export function processCount(workers: number): number {
  return workers === 0 ? os.availableParallelism() : workers;
}
