import type { PoolLike } from '../balancer/types.js';
import type { PoolConfig } from '../config/runtime.js';
import type { RouteKey } from '../core/types.js';

/** Header rewrite rules compiled at config load (regexes built once). */
export interface CompiledHeaderRules {
  set: readonly [string, string][]; // lower-case names
  add: readonly [string, string][];
  remove: readonly string[];
  replace: readonly { name: string; re: RegExp; with: string }[];
}

export interface CompiledRoute {
  readonly name: string;
  readonly index: number;
  /** The pool of the same config snapshot; undefined only when `deny`. */
  readonly pool: PoolLike | undefined;
  /** That pool's config (timeouts, retries, hash, persist, thrift). */
  readonly poolConfig: PoolConfig | undefined;
  readonly deny: boolean;
  readonly requestHeaders?: CompiledHeaderRules;
  readonly responseHeaders?: CompiledHeaderRules;
}

/** First-match route table of one listener, compiled once per config load. */
export interface Router {
  route(key: RouteKey): CompiledRoute | undefined;
  /** True when some route could match this work protocol (lets a proxy refuse early). */
  accepts(proto: RouteKey['proto']): boolean;
}
