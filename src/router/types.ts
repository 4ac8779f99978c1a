import type { PoolLike } from '../balancer/types.js';
import type { PoolConfig } from '../config/runtime.js';
import type { RouteKey } from '../core/types.js';

/**
 * Header rewrite rules compiled at config load into the shape every proxy applies them in:
 * `remove`, then `replace`, then `set`, then `add` (docs/http1.md, Headers). Names are
 * lower-case; regexes are built once.
 */
export interface CompiledHeaderRules {
  /** Names whose incoming fields are dropped (`remove` and `set`). */
  readonly drop: ReadonlySet<string>;
  /** Regex replacements by name. */
  readonly replace: ReadonlyMap<string, readonly { re: RegExp; with: string }[]>;
  readonly set: readonly [string, string][];
  readonly add: readonly [string, string][];
  /** `set` then `add` lines, serialised as HTTP/1 ("name: value\r\n..."). */
  readonly appendH1: string;
  /** Nothing to do. */
  readonly empty: boolean;
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
