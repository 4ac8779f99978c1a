// Every default of the config file, in one place (SPEC §2 "Defaults").
import type { Timeouts } from '../core/types.js';
import type { HealthConfig, Limits } from './runtime.js';

export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = {
  sniff: 1000,
  connect: 3000,
  clientIdle: 60_000,
  serverIdle: 60_000,
  request: 30_000,
  tunnel: 3_600_000,
};

export const DEFAULT_LIMITS: Readonly<Limits> = {
  sniffBytes: 16 * 1024, // a ClientHello with many extensions still fits
  headerBytes: 64 * 1024,
  h2Streams: 256,
  h2ResetsPerSecond: 200,
  thriftFrame: 16 * 1024 * 1024,
  pipelined: 128,
  retryBuffer: 64 * 1024,
  queue: 1024,
};

export const DEFAULT_GLOBAL = {
  grace: 10_000,
  maxconn: 20_000,
  workers: 1,
  logLevel: 'info',
  accessLog: true,
} as const;

/** A pool without `health` gets a TCP check (SPEC §2). */
export const DEFAULT_HEALTH: Readonly<HealthConfig> = {
  type: 'tcp',
  interval: 2000,
  timeout: 1000,
  rise: 2,
  fall: 3,
  service: '',
  path: '/',
  expect: [200, 399],
  method: 'ping',
};

export const DEFAULT_RETRIES = { attempts: 2, on: ['connect-failure', 'refused-stream'] } as const;

export const DEFAULT_OUTLIER_EJECT = 30_000;

export const DEFAULT_PROTOCOLS = ['http1', 'h2', 'thrift', 'tls', 'tcp'] as const;
