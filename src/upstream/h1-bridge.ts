// HTTP/2 client → `protocol: h1` pool member: the API the HTTP/2 proxy calls (docs/http1.md
// "Bridging"). One node:http keep-alive Agent per server. node:http is used here rather than
// the raw path of the HTTP/1 proxy because the bridge must translate (trailers, re-chunking,
// header objects) and node:http already speaks in exactly those objects; the raw path is for
// the HTTP/1 → HTTP/1 hot path, where the benchmark is.
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { IncomingHttpHeaders as H2IncomingHeaders } from 'node:http2';
import { isFieldValue, isToken } from '../codec/http1/parser.js';
import { HOP_BY_HOP } from '../proxy/http-common/headers.js';

export interface H1BridgeTimeouts {
  /** Connect timeout (ms): the request emits 'error' with code ETIMEDOUT after it. */
  connect: number;
  /** Idle pooled sockets are closed after this (ms). */
  serverIdle: number;
}

export interface H1BridgeRequest {
  method: string;
  /** Origin-form target ("/path?query"). */
  path: string;
  /** HTTP/1 headers, lower-case names, no pseudo-headers, `host` included. See h2ToH1Headers. */
  headers: OutgoingHttpHeaders;
}

const agents = new WeakMap<object, http.Agent>();

function agentFor(target: { host: string; port: number }, idle: number): http.Agent {
  let a = agents.get(target);
  if (a === undefined) {
    a = new http.Agent({
      keepAlive: true,
      maxSockets: Number.POSITIVE_INFINITY,
      maxFreeSockets: 256,
      timeout: idle,
    });
    agents.set(target, a);
  }
  return a;
}

/**
 * Starts one HTTP/1.1 request to `target` (a balancer Member) over a pooled keep-alive socket.
 * The caller writes the body (or `end()`s at once), may `addTrailers()` before `end()` when
 * the body is chunked (no content-length), and listens for 'response' (an IncomingMessage:
 * `statusCode`, `headers`, then data, then `trailers`) and 'error' (code ETIMEDOUT for a
 * connect timeout, ECONNREFUSED, ECONNRESET …). Abort with `destroy()`.
 */
export function h1Request(
  target: { host: string; port: number },
  timeouts: H1BridgeTimeouts,
  req: H1BridgeRequest,
): http.ClientRequest {
  const agent = agentFor(target, timeouts.serverIdle);
  let creq: http.ClientRequest;
  try {
    creq = http.request({
      host: target.host,
      port: target.port,
      method: req.method,
      path: req.path,
      headers: req.headers,
      agent,
      setHost: false,
    });
  } catch (e) {
    // node refuses the method, path or a header (ERR_INVALID_CHAR, ERR_UNESCAPED_CHARACTERS…):
    // never throw into the caller; hand back a request that fails with that error instead.
    const failed = http.request({ host: target.host, port: target.port, method: 'GET', path: '/', agent });
    failed.destroy(e as Error);
    return failed;
  }
  creq.on('socket', (socket) => {
    if (!socket.connecting) return;
    const timer = setTimeout(() => {
      const e = new Error(`connect timeout after ${timeouts.connect}ms`) as NodeJS.ErrnoException;
      e.code = 'ETIMEDOUT';
      creq.destroy(e);
    }, timeouts.connect);
    socket.once('connect', () => clearTimeout(timer));
    socket.once('close', () => clearTimeout(timer));
  });
  return creq;
}

/**
 * HTTP/2 request headers → HTTP/1 headers: pseudo-headers dropped, `:authority` becomes
 * `host`, connection-specific fields dropped (RFC 9113 §8.2.2), multiple cookie fields
 * joined with "; " (RFC 9113 §8.2.3).
 */
export function h2ToH1Headers(h: H2IncomingHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const k of Object.keys(h)) {
    const v = h[k];
    if (v === undefined || k.charCodeAt(0) === 0x3a || HOP_BY_HOP.has(k)) continue;
    // HTTP/2 allows field bytes HTTP/1 (and node:http) refuse: such fields are dropped.
    if (!isToken(k)) continue;
    if (Array.isArray(v)) {
      const ok = v.filter(isFieldValue);
      if (ok.length === 0) continue;
      out[k] = k === 'cookie' ? ok.join('; ') : ok;
    } else if (isFieldValue(v)) out[k] = v;
  }
  const authority = h[':authority'];
  if (out.host === undefined && typeof authority === 'string') out.host = authority;
  return out;
}

/**
 * HTTP/1 response headers → HTTP/2 response headers (`:status` added; hop-by-hop fields and
 * the ones `connection` lists dropped). Works for trailers too (pass `status` undefined).
 */
export function h1ToH2Headers(headers: IncomingHttpHeaders, status: number | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  if (status !== undefined) out[':status'] = status;
  const conn = headers.connection;
  const listed = conn === undefined ? undefined : conn.split(',').map((t) => t.trim().toLowerCase());
  for (const k of Object.keys(headers)) {
    const v = headers[k];
    if (v === undefined || HOP_BY_HOP.has(k) || listed?.includes(k)) continue;
    out[k] = v;
  }
  return out;
}

/** Convenience for the caller's 'response' handler: status and HTTP/2 headers in one call. */
export function h2ResponseHeaders(res: IncomingMessage): OutgoingHttpHeaders {
  return h1ToH2Headers(res.headers, res.statusCode ?? 502);
}
