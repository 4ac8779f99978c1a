import { type LoadResult, loadConfigFile } from '../config/load.js';
import { msSince } from '../core/duration.js';
import { type Logger, logEvent } from '../core/logger.js';
import type { Gateway } from '../gateway.js';

export type ReloadResult = { ok: true } | { ok: false; errors: string[] };

/**
 * Who asked for a reload, for the log. `primary`: a worker's primary brought it back in
 * line with the config every other worker runs (a rollback, or a worker that started
 * during a reload).
 */
export type ReloadTrigger = 'SIGHUP' | 'admin' | 'api' | 'primary';

/** A validated config with the text it came from, or its errors. */
export type ConfigSource = LoadResult<{ text: string }>;

/** The file's config (or `text`, see loadConfigFile) for a reload, or its errors (already logged: the reload is rejected). */
export function loadForReload(file: string, logger: Logger, by: ReloadTrigger, text?: string): ConfigSource {
  const loaded = loadConfigFile(file, text);
  if (!loaded.ok) {
    logger.error(
      { type: 'event', event: 'reload', ok: false, by, file, errors: loaded.errors },
      'reload rejected: invalid config',
    );
  }
  return loaded;
}

/** A valid file that could not be applied (a bind failed, a worker refused it): logged, rejected. */
export function reloadFailed(
  logger: Logger,
  by: ReloadTrigger,
  file: string,
  errors: string[],
): ReloadResult {
  logger.error({ type: 'event', event: 'reload', ok: false, by, file, errors }, 'reload failed');
  return { ok: false, errors };
}

/**
 * Re-reads the config file (a worker: takes the primary's `text` of it), validates it and
 * swaps it in. An invalid file, or a bind that fails, leaves the running config untouched;
 * either way the log says what happened.
 */
export async function reloadFromFile(
  gw: Gateway,
  file: string,
  logger: Logger,
  by: ReloadTrigger = 'api',
  text?: string,
): Promise<ReloadResult> {
  const started = performance.now();
  const loaded = loadForReload(file, logger, by, text);
  if (!loaded.ok) return loaded;
  const before = gw.currentConfig;
  try {
    await gw.apply(loaded.config);
  } catch (e) {
    return reloadFailed(logger, by, file, [`${file}:1:1: ${(e as Error).message}`]);
  }
  // The admin listener, its auth and the log level are set up once, at start.
  const fixed: string[] = [];
  if (JSON.stringify(before.admin) !== JSON.stringify(loaded.config.admin)) fixed.push('admin');
  if (before.global.log.level !== loaded.config.global.log.level) fixed.push('global.log.level');
  if (before.global.workers !== loaded.config.global.workers) fixed.push('global.workers');
  logEvent(
    logger,
    'reload',
    {
      ok: true,
      by,
      file,
      duration_ms: msSince(started),
      restart_needed: fixed.length > 0 ? fixed : undefined,
    },
    fixed.length > 0 ? `config reloaded; ${fixed.join(', ')} change at restart only` : 'config reloaded',
  );
  return { ok: true };
}
