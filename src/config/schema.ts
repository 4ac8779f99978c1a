// The config file's shape (SPEC §2), as written by users: snake_case keys, durations as
// strings or ms. Every object is strict, so a typo is an error rather than a silent default.
import net from 'node:net';
import { z } from 'zod';
import { parseHostPort } from '../core/address.js';
import { parseDuration } from '../core/duration.js';

const duration = z.union([z.string(), z.number()]).refine((v) => parseDuration(v) !== undefined, {
  message: 'invalid duration: use e.g. 250ms, 5s, 2m, 1h or whole milliseconds',
});

const address = z.string().superRefine((v, ctx) => {
  const r = parseHostPort(v);
  if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
});

export function isValidCidr(v: string): boolean {
  const slash = v.indexOf('/');
  const ip = slash < 0 ? v : v.slice(0, slash);
  const kind = net.isIP(ip);
  if (kind === 0) return false;
  if (slash < 0) return true;
  const bitsText = v.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText)) return false;
  return Number(bitsText) <= (kind === 4 ? 32 : 128);
}

const cidr = z.string().refine(isValidCidr, { message: 'invalid CIDR: use e.g. 10.0.0.0/8 or ::1/128' });

const count = z.number().int().nonnegative();
const positive = z.number().int().positive();
/** Sizes: bytes as a number, or "64KiB", "16MiB", "1GiB"/"kb"/"mb" variants. */
const size = z.union([
  z.number().int().positive(),
  z.string().regex(/^\d+\s*(b|kb|kib|k|mb|mib|m|gb|gib|g)?$/i),
]);

const timeouts = z
  .object({
    sniff: duration,
    connect: duration,
    client_idle: duration,
    server_idle: duration,
    request: duration,
    tunnel: duration,
  })
  .partial()
  .strict();

const limits = z
  .object({
    sniff_bytes: size,
    header_bytes: size,
    h2_streams: positive,
    h2_resets_per_second: positive,
    thrift_frame: size,
    pipelined: positive,
    retry_buffer: size,
    queue: count,
  })
  .partial()
  .strict();

const sniffClass = z.enum(['http1', 'h2', 'thrift', 'tls', 'tcp']);
const routeProtocol = z.enum(['http', 'grpc', 'h2', 'thrift', 'tls', 'tcp']);

const headerRules = z
  .object({
    set: z.record(z.string(), z.string()),
    add: z.record(z.string(), z.string()),
    remove: z.array(z.string()),
    replace: z.array(z.object({ name: z.string(), pattern: z.string(), with: z.string() }).strict()),
  })
  .partial()
  .strict();

const match = z
  .object({
    protocol: routeProtocol,
    host: z.string(),
    path: z.string(),
    path_prefix: z.string(),
    method: z.string(),
    service: z.string(),
    headers: z.record(z.string(), z.string()),
    sni: z.string(),
    source: z.array(cidr),
  })
  .partial()
  .strict();

const route = z
  .object({
    name: z.string().optional(),
    match: match.optional(),
    pool: z.string().optional(),
    deny: z.boolean().optional(),
    request_headers: headerRules.optional(),
    response_headers: headerRules.optional(),
  })
  .strict();

const listener = z
  .object({
    name: z.string().min(1),
    bind: z.union([address, z.array(address).min(1)]),
    maxconn: positive.optional(),
    tls: z.object({ cert: z.string(), key: z.string() }).strict().optional(),
    sniff: z
      .object({ protocols: z.array(sniffClass).min(1) })
      .partial()
      .strict()
      .optional(),
    timeouts: timeouts.optional(),
    limits: limits.optional(),
    routes: z.array(route),
  })
  .strict();

const hashOn = z.string().regex(/^(source|thrift-method|(header|cookie|grpc-metadata):[A-Za-z0-9_.-]+)$/, {
  message: 'hash.on must be source, thrift-method, header:NAME, cookie:NAME or grpc-metadata:NAME',
});

const expectRange = z.union([
  z.number().int().min(100).max(599),
  z.string().regex(/^\d{3}(-\d{3})?$/, { message: 'expect must be a status or range like "200-399"' }),
]);

const health = z
  .object({
    type: z.enum(['tcp', 'http', 'grpc', 'thrift', 'none']),
    interval: duration,
    timeout: duration,
    rise: positive,
    fall: positive,
    service: z.string(),
    path: z.string().startsWith('/'),
    expect: expectRange,
    host: z.string(),
    method: z.string().min(1),
  })
  .partial()
  .strict();

const server = z
  .object({
    name: z.string().min(1).optional(),
    address,
    weight: z.number().int().min(0).max(256).optional(),
    maxconn: count.optional(),
    backup: z.boolean().optional(),
  })
  .strict();

const pool = z
  .object({
    protocol: z.enum(['tcp', 'h1', 'h2', 'thrift']),
    balance: z.enum(['roundrobin', 'leastconn', 'p2c', 'random', 'hash', 'first']).optional(),
    hash: z.object({ on: hashOn }).strict().optional(),
    health: health.optional(),
    persist: z
      .object({ cookie: z.string().regex(/^[A-Za-z0-9_.-]+$/) })
      .strict()
      .optional(),
    retries: z
      .object({
        attempts: z.number().int().min(0).max(5),
        on: z.array(z.enum(['connect-failure', 'refused-stream', 'unavailable', 'reset', '5xx'])),
      })
      .partial()
      .strict()
      .optional(),
    outlier: z.object({ consecutive_failures: positive, eject: duration }).partial().strict().optional(),
    thrift: z
      .object({
        transport: z.enum(['framed', 'unframed']),
        protocol: z.enum(['binary', 'compact']),
        strip_service: z.boolean(),
        pipelining: z.boolean(),
      })
      .partial()
      .strict()
      .optional(),
    timeouts: timeouts.optional(),
    servers: z.array(server).min(1),
  })
  .strict();

export const configSchema = z
  .object({
    global: z
      .object({
        grace: duration,
        maxconn: positive,
        workers: z.union([z.literal('auto'), z.number().int().min(1).max(64)]),
        timeouts,
        limits,
        log: z
          .object({
            level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']),
            access: z.boolean(),
          })
          .partial()
          .strict(),
      })
      .partial()
      .strict()
      .optional(),
    admin: z
      .object({
        bind: address,
        auth: z
          .object({ user: z.string().min(1), password_env: z.string().min(1) })
          .strict()
          .optional(),
        metrics: z.boolean().optional(),
      })
      .strict()
      .optional(),
    listeners: z.array(listener).min(1),
    pools: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/), pool).optional(),
  })
  .strict();

export type RawConfig = z.infer<typeof configSchema>;
export type RawPool = z.infer<typeof pool>;
export type RawListener = z.infer<typeof listener>;
export type RawTimeouts = z.infer<typeof timeouts>;
export type RawLimits = z.infer<typeof limits>;
export type RawHeaderRules = z.infer<typeof headerRules>;
export type RawHealth = z.infer<typeof health>;
