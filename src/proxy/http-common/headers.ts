// Header handling shared by the HTTP/1 and HTTP/2 proxies: route header rules, hop-by-hop
// removal, forwarded headers and the persistence cookie. Everything that can be prepared is
// prepared once per rules object (WeakMap), so the per-request path does lookups only.
import type { CompiledHeaderRules } from '../../router/types.js';

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded as-is. The HTTP/1 proxy keeps
 * `transfer-encoding` (it forwards chunked bytes untouched) and `upgrade` (tunnels) itself.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'transfer-encoding',
  'upgrade',
  'trailer',
]);

/** Rules in the shape the hot path wants; built once per CompiledHeaderRules. */
export interface PreparedRules {
  /** Names whose incoming lines are dropped (`remove` and `set`). */
  readonly drop: ReadonlySet<string>;
  /** Regex replacements by lower-case name. */
  readonly replace: ReadonlyMap<string, readonly { re: RegExp; with: string }[]>;
  /** `set` then `add` lines, serialised as HTTP/1 ("Name: value\r\n..."). */
  readonly appendH1: string;
  /** `set` then `add` pairs (lower-case names) for HTTP/2 and node-style objects. */
  readonly append: readonly [string, string][];
  readonly set: readonly [string, string][];
  readonly add: readonly [string, string][];
  /** True when nothing to do. */
  readonly empty: boolean;
}

const prepared = new WeakMap<CompiledHeaderRules, PreparedRules>();

export function prepareRules(rules: CompiledHeaderRules): PreparedRules {
  let p = prepared.get(rules);
  if (p !== undefined) return p;
  const drop = new Set<string>();
  for (const n of rules.remove) drop.add(n.toLowerCase());
  for (const [n] of rules.set) drop.add(n.toLowerCase());
  const replace = new Map<string, { re: RegExp; with: string }[]>();
  for (const r of rules.replace) {
    const name = r.name.toLowerCase();
    let list = replace.get(name);
    if (list === undefined) {
      list = [];
      replace.set(name, list);
    }
    list.push({ re: r.re, with: r.with });
  }
  const append: [string, string][] = [];
  let appendH1 = '';
  const set = rules.set.map(([n, v]): [string, string] => [n.toLowerCase(), v]);
  const add = rules.add.map(([n, v]): [string, string] => [n.toLowerCase(), v]);
  for (const [n, v] of [...set, ...add]) {
    append.push([n, v]);
    appendH1 += `${n}: ${v}\r\n`;
  }
  p = {
    drop,
    replace,
    appendH1,
    append,
    set,
    add,
    empty: drop.size === 0 && replace.size === 0 && append.length === 0,
  };
  prepared.set(rules, p);
  return p;
}

/** Applies the `replace` rules of `p` for header `lower` to `value`. */
export function replaceValue(p: PreparedRules, lower: string, value: string): string {
  const list = p.replace.get(lower);
  if (list === undefined) return value;
  for (const r of list) value = value.replace(r.re, r.with);
  return value;
}

export type HeaderObject = Record<string, string | string[] | undefined>;

/**
 * Applies rules to a node-style header object (lower-case names) in place: remove, replace,
 * set (replaces), add (appends to any value already there). For the HTTP/2 proxy and bridges.
 */
export function applyRules(h: HeaderObject, rules: CompiledHeaderRules | undefined): void {
  if (rules === undefined) return;
  const p = prepareRules(rules);
  if (p.empty) return;
  for (const name of p.drop) delete h[name];
  for (const [name, list] of p.replace) {
    const v = h[name];
    if (v === undefined) continue;
    if (Array.isArray(v)) {
      h[name] = v.map((x) => {
        for (const r of list) x = x.replace(r.re, r.with);
        return x;
      });
    } else {
      let x = v;
      for (const r of list) x = x.replace(r.re, r.with);
      h[name] = x;
    }
  }
  for (const [n, v] of p.set) h[n] = v;
  for (const [n, v] of p.add) {
    const cur = h[n];
    if (cur === undefined) h[n] = v;
    else if (Array.isArray(cur)) h[n] = [...cur, v];
    else h[n] = [cur, v];
  }
}

/** Removes hop-by-hop headers and those the `connection` header lists, in place. */
export function stripHopByHop(h: HeaderObject): void {
  const conn = h.connection;
  if (conn !== undefined) {
    for (const part of (Array.isArray(conn) ? conn.join(',') : conn).split(',')) {
      const t = part.trim().toLowerCase();
      if (t !== '') delete h[t];
    }
  }
  for (const n of HOP_BY_HOP) delete h[n];
}

/** `X-Forwarded-For` value with `ip` appended to what the client sent. */
export function appendXff(existing: string | string[] | undefined, ip: string): string {
  if (existing === undefined || existing === '') return ip;
  return `${Array.isArray(existing) ? existing.join(', ') : existing}, ${ip}`;
}

/** One RFC 7239 `Forwarded` element: for=…;proto=…[;host=…]. IPv6 is bracketed and quoted. */
export function forwardedElement(ip: string, proto: string, host: string | undefined): string {
  const forv = ip.includes(':') ? `"[${ip}]"` : ip;
  if (host === undefined || host === '') return `for=${forv};proto=${proto}`;
  const h = host.includes('"') || host.includes('\\') ? host.replace(/["\\]/g, '') : host;
  return `for=${forv};proto=${proto};host="${h}"`;
}

/** Appends our element to an existing `Forwarded` value. */
export function appendForwarded(existing: string | string[] | undefined, element: string): string {
  if (existing === undefined || existing === '') return element;
  return `${Array.isArray(existing) ? existing.join(', ') : existing}, ${element}`;
}

/** Value of cookie `name` in a Cookie header (or headers), or undefined. */
export function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  if (Array.isArray(header)) {
    for (const h of header) {
      const v = cookieValue(h, name);
      if (v !== undefined) return v;
    }
    return undefined;
  }
  let pos = 0;
  const len = header.length;
  while (pos < len) {
    let semi = header.indexOf(';', pos);
    if (semi === -1) semi = len;
    const eq = header.indexOf('=', pos);
    if (eq !== -1 && eq < semi && header.slice(pos, eq).trim() === name) {
      let v = header.slice(eq + 1, semi).trim();
      if (v.length >= 2 && v.charCodeAt(0) === 0x22 && v.charCodeAt(v.length - 1) === 0x22)
        v = v.slice(1, -1);
      return v;
    }
    pos = semi + 1;
  }
  return undefined;
}

/**
 * Persistence cookie (pool `persist: { cookie: NAME }`), HAProxy `cookie NAME insert` style:
 * the value names the chosen server (URI-encoded: server names may hold ':' or spaces).
 */
export function persistSetCookie(cookie: string, server: string): string {
  return `${cookie}=${encodeURIComponent(server)}; Path=/; HttpOnly`;
}

/** Server name carried by a persistence cookie value, or undefined if it does not decode. */
export function persistedServer(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}
