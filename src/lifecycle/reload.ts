import { loadConfigFile } from '../config/load.js';
import { type Logger, logEvent } from '../core/logger.js';
import type { Gateway } from '../gateway.js';

export type ReloadResult = { ok: true } | { ok: false; errors: string[] };

/**
 * Re-reads the config file, validates it and swaps it in. An invalid file, or a bind that
 * fails, leaves the running config untouched; either way the log says what happened.
 */
export async function reloadFromFile(gw: Gateway, file: string, logger: Logger): Promise<ReloadResult> {
  const loaded = loadConfigFile(file);
  if (!loaded.ok) {
    logEvent(logger, 'reload', { ok: false, errors: loaded.errors }, 'reload rejected: invalid config');
    return { ok: false, errors: loaded.errors };
  }
  try {
    await gw.apply(loaded.config);
  } catch (e) {
    const errors = [`${file}:1:1: ${(e as Error).message}`];
    logEvent(logger, 'reload', { ok: false, errors }, 'reload failed');
    return { ok: false, errors };
  }
  logEvent(logger, 'reload', { ok: true, file }, 'config reloaded');
  return { ok: true };
}
