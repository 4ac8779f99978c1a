// Shared vocabulary of the gateway. Imports nothing from the rest of src/, so every
// module can depend on it without cycles.

/** What the sniffer decides a client connection speaks. */
export type SniffClass = 'http1' | 'h2' | 'thrift' | 'tls' | 'tcp';

/** What a pool's servers speak (`pools.NAME.protocol`); h2 covers gRPC. */
export type PoolProtocol = 'tcp' | 'h1' | 'h2' | 'thrift';

/**
 * The protocol of one unit of work as routes see it. `h2` here means a non-gRPC HTTP/2
 * stream; a route with `protocol: h2` accepts both `h2` and `grpc` units, `protocol: http`
 * accepts `http1` and `h2` (see router/).
 */
export type WorkProtocol = 'http1' | 'h2' | 'grpc' | 'thrift' | 'tls' | 'tcp';

export type BalanceAlgorithm = 'roundrobin' | 'leastconn' | 'p2c' | 'random' | 'hash' | 'first';

export type HealthCheckType = 'tcp' | 'http' | 'grpc' | 'thrift' | 'none';

/** Member state as stats and the admin API show it. */
export type MemberState = 'up' | 'down' | 'drain' | 'maint';
export type HealthState = 'up' | 'down';
export type AdminState = 'ready' | 'drain' | 'maint';

/**
 * How a unit of work ended, for access logs (`outcome`) and metrics. Open-ended so a
 * protocol can add its own reasons; these are the shared ones.
 */
export type Outcome =
  | 'ok'
  | 'no_server'
  | 'timeout'
  | 'client_reset'
  | 'server_reset'
  | 'connect_failure'
  | 'denied'
  | 'no_route'
  | 'bad_request'
  | 'too_large'
  | 'refused'
  | 'draining'
  | 'cut'
  | 'error'
  | (string & {});

/** All timeouts in milliseconds, already merged (global → listener/pool). */
export interface Timeouts {
  sniff: number;
  connect: number;
  clientIdle: number;
  serverIdle: number;
  request: number;
  tunnel: number;
}

export interface HostPort {
  host: string; // '' for all interfaces; IPv6 without brackets
  port: number;
}

/** Result of sniffing the first bytes of a connection. */
export interface SniffResult {
  cls: SniffClass;
  /** Every byte read while sniffing; the protocol handler must process these first. */
  head: Buffer;
  /** Why this class: a matcher said yes, nothing matched, or the client stayed silent. */
  reason: 'match' | 'unrecognised' | 'timeout' | 'closed';
  /** For `tls`: what the ClientHello said (undefined when it could not be parsed). */
  tls?: { sni?: string; alpn?: string[] };
  /** For `thrift`: what the first message looked like. */
  thrift?: { transport: 'framed' | 'unframed' | 'header'; protocol: 'binary' | 'compact' | 'unknown' };
}

/**
 * What a proxy extracts from one unit of work to route it. Only the fields its protocol
 * has are set. `headers` uses node's lower-case header object shape (gRPC metadata are
 * headers).
 */
export interface RouteKey {
  proto: WorkProtocol;
  source: string; // client IP (IPv4-mapped IPv6 already unwrapped)
  sni?: string;
  host?: string; // HTTP Host / :authority, port stripped by the router when matching
  path?: string;
  method?: string; // HTTP method, gRPC "/pkg.Service/Method", Thrift method name
  service?: string; // gRPC "pkg.Service", Thrift multiplexed service
  headers?: Readonly<Record<string, string | string[] | undefined>>;
}

/** Per-unit record: logged as one access-log line and fed to stats. */
export interface AccessRecord {
  proto: WorkProtocol;
  listener: string;
  route?: string;
  pool?: string;
  server?: string;
  client: string; // "ip:port"
  method?: string;
  path?: string;
  service?: string;
  host?: string;
  status?: number;
  grpc_status?: number;
  thrift_type?: string;
  seqid?: number;
  bytes_in: number; // from the client
  bytes_out: number; // to the client
  duration_ms: number;
  outcome: Outcome;
  detail?: string;
  retries?: number;
}
