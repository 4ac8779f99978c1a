// Runs a gateway from a config file until a signal stops it (SPEC §1 "Signals").
import { startAdmin } from '../admin/server.js';
import { loadConfigFile } from '../config/load.js';
import { createLogger, type Logger, logEvent } from '../core/logger.js';
import type { HostPort } from '../core/types.js';
import { Gateway } from '../gateway.js';
import { type ReloadTrigger, reloadFromFile } from './reload.js';

export interface Running {
  gateway: Gateway;
  logger: Logger;
  /** Graceful stop; resolves when everything is closed. `signal` is for the log. */
  stop(signal?: string): Promise<void>;
  reload(by?: ReloadTrigger): ReturnType<typeof reloadFromFile>;
  adminAddress?: HostPort;
}

export async function startFromFile(
  file: string,
  opts: { pretty?: boolean; logger?: Logger } = {},
): Promise<Running> {
  const loaded = loadConfigFile(file);
  if (!loaded.ok) throw Object.assign(new Error('invalid config'), { configErrors: loaded.errors });
  const cfg = loaded.config;
  const logger = opts.logger ?? createLogger({ level: cfg.global.log.level, pretty: opts.pretty });
  const gateway = await Gateway.start(cfg, logger);
  const reload = (by: ReloadTrigger = 'api') => reloadFromFile(gateway, file, logger, by);
  let admin: Awaited<ReturnType<typeof startAdmin>> | undefined;
  if (cfg.admin) {
    try {
      admin = await startAdmin({
        bind: cfg.admin.bind,
        auth: cfg.admin.auth
          ? { user: cfg.admin.auth.user, password: process.env[cfg.admin.auth.passwordEnv] ?? '' }
          : undefined,
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

/** CLI entry: binds signals, returns the process exit code. */
export async function runUntilSignal(file: string, opts: { pretty?: boolean }): Promise<number> {
  let running: Running;
  try {
    running = await startFromFile(file, opts);
  } catch (e) {
    const errs = (e as { configErrors?: string[] }).configErrors;
    process.stderr.write(`${errs ? errs.join('\n') : (e as Error).message}\n`);
    return 1;
  }
  const { logger } = running;
  logEvent(logger, 'started', { file, pid: process.pid });
  const workers = running.gateway.currentConfig.global.workers;
  if (workers !== 1) {
    // Multi-process mode is not built yet (docs/configuration.md); say so rather than pretend.
    logger.warn(
      { type: 'event', event: 'workers_unsupported', workers },
      'global.workers other than 1 is not supported yet; running one process',
    );
  }
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
