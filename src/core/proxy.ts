import type net from 'node:net';
import type { Logger } from 'pino';
import type { PoolLike } from '../balancer/types.js';
import type { Limits, ListenerConfig, PoolConfig } from '../config/runtime.js';
import type { Router } from '../router/types.js';
import type { AccessRecord, SniffClass, SniffResult, Timeouts } from './types.js';

/**
 * The live view of one listener. `current` is replaced whole on reload; a connection keeps
 * the ListenerState and reads `current` when each new unit of work starts, so in-flight
 * work finishes on the snapshot it started with and new work sees the new config.
 */
export interface ListenerState {
  readonly name: string;
  current: ListenerSnapshot;
  /** Live client connections of this listener (for stats). */
  connections: { active: number; total: number; refused: number; sniffTimeouts: number };
}

export interface ListenerSnapshot {
  readonly config: ListenerConfig;
  readonly router: Router;
  readonly timeouts: Timeouts;
  readonly limits: Limits;
  /** Pools of this snapshot by name, with their configs. */
  readonly pools: ReadonlyMap<string, { pool: PoolLike; config: PoolConfig }>;
  /** No route wants anything but raw TCP: connections skip sniffing and tunnel at once. */
  readonly tcpOnly?: boolean;
}

/** A classified client connection handed to a protocol proxy. */
export interface ClientConn {
  /** Paused; nothing has been unshifted. `sniff.head` holds the bytes read so far. */
  readonly socket: net.Socket;
  readonly sniff: SniffResult;
  readonly listener: ListenerState;
  readonly clientIp: string; // IPv4-mapped IPv6 unwrapped
  readonly clientAddr: string; // "ip:port" for logs
  /** Set when TLS was terminated by the gateway (then `socket` is the TLSSocket). */
  readonly tls?: { sni?: string; alpn?: string };
}

/** One protocol's proxy. Registered per sniff class in proxy/registry.ts. */
export interface ProtocolProxy {
  handle(conn: ClientConn): void;
  /**
   * Graceful stop: stop taking new work on existing connections (GOAWAY, Connection: close,
   * close Thrift connections between calls), let in-flight work finish, resolve when
   * nothing is left or at `deadline` (epoch ms), cutting what remains then. Resolves with
   * the number of connections it had to cut (0 when everything finished in time).
   */
  drain(deadline: number): Promise<number>;
  /** Connections this proxy currently holds. */
  readonly activeConnections: number;
}

/** What every proxy gets from the gateway at construction. */
export interface GatewayContext {
  readonly logger: Logger;
  /** Log the access record (if access logs are on) and feed stats. Once per unit. */
  finish(record: AccessRecord): void;
  /** True once a graceful stop has begun. */
  readonly draining: boolean;
}

export type ProxyFactory = (ctx: GatewayContext) => ProtocolProxy;
export type ProxyRegistry = Partial<Record<SniffClass, ProxyFactory>>;
