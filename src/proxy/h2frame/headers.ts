// Header rebuilding between the client stream and the upstream stream (RFC 9113 §8.2.2:
// connection-specific fields must not appear in HTTP/2), route header rules, hash keys.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import type { CompiledHeaderRules } from '../../router/types.js';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  'host', // :authority carries it in HTTP/2
]);

/** Response fields never forwarded to the client: the hop-by-hop ones and `te`. */
export const RESPONSE_SKIP: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'te']);

/**
 * Request headers for the upstream stream: pseudo-headers rebuilt, hop-by-hop removed,
 * `te` kept only as "trailers" (gRPC requires it), `x-forwarded-for` appended.
 */
export function upstreamRequestHeaders(
  h: IncomingHttpHeaders,
  clientIp: string,
  rules: CompiledHeaderRules | undefined,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {
    ':method': h[':method'],
    ':scheme': 'http',
    ':authority': h[':authority'] ?? h.host,
    ':path': h[':path'],
  };
  for (const name in h) {
    if (name.charCodeAt(0) === 58 /* : */ || HOP_BY_HOP.has(name)) continue;
    if (name === 'te') {
      if (h.te === 'trailers') out.te = 'trailers';
      continue;
    }
    if (name === 'x-forwarded-for') continue;
    out[name] = h[name];
  }
  const xff = h['x-forwarded-for'];
  out['x-forwarded-for'] = xff === undefined ? clientIp : `${xff}, ${clientIp}`;
  if (rules !== undefined) applyRules(out, rules);
  return out;
}

/** Response headers for the client: the upstream's, minus hop-by-hop. */
export function clientResponseHeaders(
  h: IncomingHttpHeaders,
  rules: CompiledHeaderRules | undefined,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in h) {
    if (RESPONSE_SKIP.has(name)) continue;
    out[name] = h[name];
  }
  if (rules !== undefined) applyRules(out, rules);
  return out;
}

export function applyRules(out: OutgoingHttpHeaders, r: CompiledHeaderRules): void {
  for (const name of r.remove) delete out[name];
  for (const [name, value] of r.set) out[name] = value;
  for (const [name, value] of r.add) {
    const cur = out[name];
    if (cur === undefined) out[name] = value;
    else if (Array.isArray(cur)) out[name] = [...cur, value];
    else out[name] = [String(cur), value];
  }
  for (const { name, re, with: w } of r.replace) {
    const cur = out[name];
    if (typeof cur === 'string') out[name] = cur.replace(re, w);
  }
}

/** Value of one header as a single string (first of a list), for hashing and routing. */
export function headerString(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Value of cookie NAME from a Cookie header (node joins several with "; "). */
export function cookieValue(cookie: string | undefined, name: string): string | undefined {
  if (cookie === undefined) return undefined;
  let i = 0;
  while (i < cookie.length) {
    let end = cookie.indexOf(';', i);
    if (end < 0) end = cookie.length;
    while (cookie.charCodeAt(i) === 32) i++;
    const eq = cookie.indexOf('=', i);
    if (eq > 0 && eq < end && cookie.slice(i, eq) === name) return cookie.slice(eq + 1, end).trim();
    i = end + 1;
  }
  return undefined;
}
