// Header handling shared by the HTTP/1 and HTTP/2 proxies: route header rules (compiled at
// config load, router/compile.ts), hop-by-hop names, forwarded headers and the persistence
// cookie.
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

/** Applies the `replace` rules of `p` for header `lower` to `value`. */
export function replaceValue(p: CompiledHeaderRules, lower: string, value: string): string {
  const list = p.replace.get(lower);
  if (list === undefined) return value;
  for (const r of list) value = value.replace(r.re, r.with);
  return value;
}

/** A node-style header object (lower-case names), as the HTTP/2 proxy and bridges build. */
export type HeaderObject = Record<string, string | string[] | number | undefined>;

/**
 * Applies route rules to a header object in place, in the order the HTTP/1 path applies
 * them to head lines: remove, replace (each string value of that name), set (replaces), add
 * (appends to any value already there).
 */
export function applyRules(h: HeaderObject, p: CompiledHeaderRules): void {
  if (p.empty) return;
  for (const name of p.drop) delete h[name];
  for (const name of p.replace.keys()) {
    const v = h[name];
    if (typeof v === 'string') h[name] = replaceValue(p, name, v);
    else if (Array.isArray(v)) h[name] = v.map((x) => replaceValue(p, name, x));
  }
  for (const [n, v] of p.set) h[n] = v;
  for (const [n, v] of p.add) {
    const cur = h[n];
    if (cur === undefined) h[n] = v;
    else if (Array.isArray(cur)) h[n] = [...cur, v];
    else h[n] = [String(cur), v];
  }
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
