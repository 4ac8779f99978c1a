// Route tables compiled once per config load: each route becomes a short list of
// predicates over the RouteKey, tried in config order (first match wins).
import type { PoolLike } from '../balancer/types.js';
import type { HeaderRulesConfig, PoolConfig, RouteConfig, RouteProtocol } from '../config/runtime.js';
import type { RouteKey, WorkProtocol } from '../core/types.js';
import { compileCidrs } from './cidr.js';
import { compileGlob, type StringTest } from './glob.js';
import type { CompiledHeaderRules, CompiledRoute, Router } from './types.js';

/** Which units of work a route's `match.protocol` accepts (SPEC §2 "Route match keys"). */
const ACCEPTS: Record<RouteProtocol, readonly WorkProtocol[]> = {
  http: ['http1', 'h2'],
  grpc: ['grpc'],
  h2: ['h2', 'grpc'],
  thrift: ['thrift'],
  tls: ['tls'],
  tcp: ['tcp'],
};
const ALL: readonly WorkProtocol[] = ['http1', 'h2', 'grpc', 'thrift', 'tls', 'tcp'];

type Predicate = (key: RouteKey) => boolean;

function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end < 0 ? host : host.slice(1, end);
  }
  const colon = host.indexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}

function headerTest(name: string, test: StringTest): Predicate {
  return (key) => {
    const v = key.headers?.[name];
    if (v === undefined) return false;
    if (typeof v === 'string') return test(v);
    for (const item of v) if (test(item)) return true;
    return false;
  };
}

export function compileHeaderRules(r: HeaderRulesConfig | undefined): CompiledHeaderRules | undefined {
  if (!r) return undefined;
  const set = r.set.map(([n, v]): [string, string] => [n.toLowerCase(), v]);
  const add = r.add.map(([n, v]): [string, string] => [n.toLowerCase(), v]);
  const drop = new Set<string>(r.remove.map((n) => n.toLowerCase()));
  for (const [n] of set) drop.add(n);
  const replace = new Map<string, { re: RegExp; with: string }[]>();
  for (const x of r.replace) {
    const name = x.name.toLowerCase();
    let list = replace.get(name);
    if (list === undefined) {
      list = [];
      replace.set(name, list);
    }
    list.push({ re: new RegExp(x.pattern, 'g'), with: x.with });
  }
  let appendH1 = '';
  for (const [n, v] of [...set, ...add]) appendH1 += `${n}: ${v}\r\n`;
  return {
    drop,
    replace,
    set,
    add,
    appendH1,
    empty: drop.size === 0 && replace.size === 0 && set.length === 0 && add.length === 0,
  };
}

interface Entry {
  route: CompiledRoute;
  protos: ReadonlySet<WorkProtocol>;
  tests: Predicate[];
}

function compileRoute(
  cfg: RouteConfig,
  index: number,
  pools: ReadonlyMap<string, { pool: PoolLike; config: PoolConfig }>,
): Entry {
  const m = cfg.match;
  const tests: Predicate[] = [];
  if (m.source?.length) {
    const set = compileCidrs(m.source);
    tests.push((k) => set.has(k.source));
  }
  if (m.sni !== undefined) {
    const t = compileGlob(m.sni, true);
    tests.push((k) => k.sni !== undefined && t(k.sni));
  }
  if (m.host !== undefined) {
    const t = compileGlob(m.host, true);
    tests.push((k) => k.host !== undefined && t(stripPort(k.host)));
  }
  if (m.path !== undefined) {
    const t = compileGlob(m.path);
    tests.push((k) => k.path !== undefined && t(k.path));
  }
  if (m.pathPrefix !== undefined) {
    const prefix = m.pathPrefix;
    tests.push((k) => k.path?.startsWith(prefix) === true);
  }
  if (m.method !== undefined) {
    const t = compileGlob(m.method);
    tests.push((k) => k.method !== undefined && t(k.method));
  }
  if (m.service !== undefined) {
    const t = compileGlob(m.service);
    tests.push((k) => k.service !== undefined && t(k.service));
  }
  for (const [name, value] of m.headers ?? []) tests.push(headerTest(name, compileGlob(value)));
  const p = cfg.pool ? pools.get(cfg.pool) : undefined;
  return {
    route: {
      name: cfg.name,
      index,
      pool: p?.pool,
      poolConfig: p?.config,
      deny: cfg.deny,
      requestHeaders: compileHeaderRules(cfg.requestHeaders),
      responseHeaders: compileHeaderRules(cfg.responseHeaders),
    },
    protos: new Set(m.protocol ? ACCEPTS[m.protocol] : ALL),
    tests,
  };
}

export function compileRouter(
  routes: readonly RouteConfig[],
  pools: ReadonlyMap<string, { pool: PoolLike; config: PoolConfig }>,
): Router {
  const entries = routes.map((r, i) => compileRoute(r, i, pools));
  // Per work protocol, only the routes that can match it: most keys skip most routes.
  const byProto = new Map<WorkProtocol, Entry[]>();
  for (const p of ALL)
    byProto.set(
      p,
      entries.filter((e) => e.protos.has(p)),
    );
  return {
    route(key: RouteKey): CompiledRoute | undefined {
      const list = byProto.get(key.proto);
      if (!list) return undefined;
      outer: for (let i = 0; i < list.length; i++) {
        const e = list[i];
        for (let j = 0; j < e.tests.length; j++) if (!e.tests[j](key)) continue outer;
        return e.route;
      }
      return undefined;
    },
    accepts(proto: WorkProtocol): boolean {
      return (byProto.get(proto)?.length ?? 0) > 0;
    },
  };
}
