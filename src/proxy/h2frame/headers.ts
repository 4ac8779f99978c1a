// Header rebuilding between the client stream and the upstream stream (RFC 9113 §8.2.2:
// connection-specific fields must not appear in HTTP/2), route header rules, hash keys.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import type { CompiledHeaderRules } from '../../router/types.js';
import { applyRules, type HeaderObject } from '../http-common/headers.js';

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
  if (rules !== undefined) applyRules(out as HeaderObject, rules);
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
  if (rules !== undefined) applyRules(out as HeaderObject, rules);
  return out;
}

/** Value of one header as a single string (first of a list), for hashing and routing. */
export function headerString(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}
