// The validated, normalised config: durations in ms, addresses parsed, defaults filled.
// Produced once per load by config/load.ts; compile.ts turns it into live objects.
import type { MemberSpec } from '../balancer/types.js';
import type {
  BalanceAlgorithm,
  HealthCheckType,
  HostPort,
  PoolProtocol,
  SniffClass,
  Timeouts,
} from '../core/types.js';

/** Route `match.protocol` values (SPEC §2). */
export type RouteProtocol = 'http' | 'grpc' | 'h2' | 'thrift' | 'tls' | 'tcp';

/** Input-controlled sizes and counts; each has a default (config/defaults.ts). */
export interface Limits {
  sniffBytes: number; // bytes the sniffer may buffer before deciding
  headerBytes: number; // HTTP/1 header block, HTTP/2 header list size
  h2Streams: number; // concurrent streams per client HTTP/2 connection
  h2ResetsPerSecond: number; // client RST_STREAM rate before GOAWAY(ENHANCE_YOUR_CALM)
  thriftFrame: number; // largest Thrift frame / message
  pipelined: number; // queued requests/calls per client connection
  retryBuffer: number; // request body bytes kept for a possible retry
  queue: number; // requests waiting for a server slot per pool
}

export interface LogConfig {
  level: string;
  /** One access record per unit of work; off for benchmarks. */
  access: boolean;
}

export interface GlobalConfig {
  grace: number;
  maxconn: number;
  workers: number;
  timeouts: Timeouts;
  limits: Limits;
  log: LogConfig;
}

export interface AdminConfig {
  bind: HostPort;
  bindText: string;
  auth?: { user: string; passwordEnv: string };
  /** Prometheus metrics collection; off saves the counting cost. */
  metrics: boolean;
}

export interface TlsConfig {
  cert: string; // path, resolved against the config file's folder
  key: string;
}

export interface HeaderRulesConfig {
  set: [string, string][];
  add: [string, string][];
  remove: string[];
  replace: { name: string; pattern: string; with: string }[];
}

export interface MatchConfig {
  protocol?: RouteProtocol;
  host?: string;
  path?: string;
  pathPrefix?: string;
  method?: string;
  service?: string;
  headers?: [string, string][]; // lower-cased names, exact or glob values
  sni?: string;
  source?: string[]; // CIDRs, validated
}

export interface RouteConfig {
  name: string; // given, or "LISTENER/routes[i]"
  match: MatchConfig;
  pool?: string;
  deny: boolean;
  requestHeaders?: HeaderRulesConfig;
  responseHeaders?: HeaderRulesConfig;
}

export interface ListenerConfig {
  name: string;
  binds: HostPort[];
  bindText: string[];
  maxconn: number;
  tls?: TlsConfig;
  protocols: SniffClass[];
  timeouts: Timeouts;
  limits: Limits;
  routes: RouteConfig[];
}

export type HashOn =
  | { kind: 'source' }
  | { kind: 'header' | 'cookie' | 'grpc-metadata'; name: string }
  | { kind: 'thrift-method' };

export interface HealthConfig {
  type: HealthCheckType;
  interval: number;
  timeout: number;
  rise: number;
  fall: number;
  service: string; // grpc
  path: string; // http
  host?: string; // http
  expect: [number, number]; // http status range, inclusive
  method: string; // thrift
}

export type RetryOn = 'connect-failure' | 'refused-stream' | 'unavailable' | 'reset' | '5xx';

export interface ThriftPoolConfig {
  transport: 'framed' | 'unframed';
  protocol: 'binary' | 'compact';
  stripService: boolean;
  /** Servers accept several calls in flight on one connection. */
  pipelining: boolean;
}

export interface PoolConfig {
  name: string;
  protocol: PoolProtocol;
  balance: BalanceAlgorithm;
  hash?: HashOn;
  health: HealthConfig;
  persist?: { cookie: string };
  retries: { attempts: number; on: RetryOn[] };
  outlier?: { consecutiveFailures: number; eject: number };
  thrift: ThriftPoolConfig;
  timeouts: Timeouts;
  servers: MemberSpec[];
}

export interface GatewayConfig {
  /** Absolute path of the file this came from (for reload and error messages). */
  file: string;
  global: GlobalConfig;
  admin?: AdminConfig;
  listeners: ListenerConfig[];
  pools: Map<string, PoolConfig>;
}
