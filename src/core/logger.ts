import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines on stdout (SPEC §1); `pretty` pipes them through pino-pretty for humans.
 * Records carry `type: "access"` (one per unit of work) or `type: "event"`.
 */
export function createLogger(opts: {
  level?: string;
  pretty?: boolean;
  destination?: NodeJS.WritableStream;
}): Logger {
  const base = { level: opts.level ?? 'info', base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  if (opts.pretty) {
    return pino({
      ...base,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: true } },
    });
  }
  if (opts.destination) return pino(base, opts.destination);
  // Async stdout: under load SonicBoom batches writes while one is pending, so access
  // logging never blocks the event loop on a slow pipe, yet single events show at once.
  return pino(base, pino.destination({ dest: 1, sync: false }));
}

/** Event records share one shape: `{ type: "event", event, ...fields }`. */
export function logEvent(logger: Logger, event: string, fields: Record<string, unknown>, msg?: string): void {
  logger.info({ type: 'event', event, ...fields }, msg ?? event);
}
