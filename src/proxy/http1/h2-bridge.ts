// HTTP/1 client → `protocol: h2` pool: one HTTP/2 stream per request on the sessions of
// upstream/h2-pool.ts. Request: pseudo-headers from the
// request line and Host, hop-by-hop headers dropped, chunked bodies de-chunked into DATA.
// Response: Content-Length kept when the server sent one, otherwise re-chunked for HTTP/1.1
// clients (close-delimited for HTTP/1.0); HTTP/2 trailers become chunked trailers.
import type { ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { type H2Waiter, sharedH2Pool, type UpstreamSession } from '../../upstream/h2-pool.js';
import {
  appendForwarded,
  appendXff,
  forwardedElement,
  HOP_BY_HOP,
  prepareRules,
  replaceValue,
} from '../http-common/headers.js';
import type { Session } from './session.js';

const REFUSED_STREAM = 7;

function h2RequestHeaders(s: Session): OutgoingHttpHeaders {
  const req = s.req!;
  const conn = s.conn;
  const t = s.requestTarget;
  const proto = conn.tls !== undefined ? 'https' : 'http';
  const out: OutgoingHttpHeaders = {
    ':method': t.method,
    ':path': t.path,
    ':scheme': proto,
    ':authority': t.authority,
  };
  const rules = s.route?.requestHeaders !== undefined ? prepareRules(s.route.requestHeaders) : undefined;
  let xff: string | undefined;
  let fwd: string | undefined;
  const { lower, values, connTokens } = req;
  for (let i = 0; i < lower.length; i++) {
    const n = lower[i];
    if (HOP_BY_HOP.has(n) || n === 'host' || n === 'expect' || n === 'x-forwarded-proto') {
      // RFC 9113 §8.2.2: TE may only carry "trailers" over HTTP/2.
      if (n === 'te' && values[i].toLowerCase() === 'trailers') out.te = 'trailers';
      continue;
    }
    if (connTokens?.includes(n)) continue;
    if (n === 'x-forwarded-for') {
      xff = xff === undefined ? values[i] : `${xff}, ${values[i]}`;
      continue;
    }
    if (n === 'forwarded') {
      fwd = fwd === undefined ? values[i] : `${fwd}, ${values[i]}`;
      continue;
    }
    if (rules?.drop.has(n)) continue;
    if (n === 'content-length') {
      out[n] = String(req.contentLength);
      continue;
    }
    const v = rules !== undefined ? replaceValue(rules, n, values[i]) : values[i];
    const cur = out[n];
    if (cur === undefined) out[n] = v;
    else if (n === 'cookie') out[n] = `${cur}; ${v}`;
    else if (Array.isArray(cur)) cur.push(v);
    else out[n] = [String(cur), v];
  }
  out['x-forwarded-for'] = appendXff(xff, conn.clientIp);
  out['x-forwarded-proto'] = proto;
  out.forwarded = appendForwarded(fwd, forwardedElement(conn.clientIp, proto, t.authority));
  if (rules !== undefined) {
    for (const [n, v] of rules.set) out[n] = v;
    for (const [n, v] of rules.add) {
      const cur = out[n];
      if (cur === undefined) out[n] = v;
      else if (Array.isArray(cur)) cur.push(v);
      else out[n] = [String(cur), v];
    }
  }
  return out;
}

/** Routes the session's current request to an h2 pool member. */
export function startH2Exchange(s: Session): void {
  const member = s.pick!.member;
  const cfg = s.poolCfg!;
  const req = s.req!;
  const pool = sharedH2Pool();
  const timeouts = { connect: cfg.timeouts.connect, serverIdle: cfg.timeouts.serverIdle };
  // HTTP/2 has no Expect handshake: say 100 Continue ourselves (RFC 9110 §10.1.1 lets a proxy).
  if (req.expectContinue && req.minor === 1 && s.requestHasBody) s.writeDown('HTTP/1.1 100 Continue\r\n\r\n');
  const waiter: H2Waiter = {
    onSession(us) {
      if (s.req !== req || s.pick === null) {
        us.unreserve();
        return;
      }
      open(s, us);
    },
    onSessionError(why, detail) {
      if (s.req !== req || s.pick === null) return;
      s.connectFailed(
        Object.assign(new Error(detail), { code: why === 'timeout' ? 'ETIMEDOUT' : 'ECONNREFUSED' }),
      );
    },
  };
  const us = pool.acquire(member, timeouts, waiter);
  if (us !== undefined) open(s, us);
}

function open(s: Session, us: UpstreamSession): void {
  const req = s.req!;
  const hasBody = s.requestHasBody;
  // A chunked body may end with trailer fields: its stream ends by sendTrailers().
  const chunked = s.requestChunked;
  const st = us.request(h2RequestHeaders(s), !hasBody, chunked);
  if (st === undefined) {
    // A closed session is the server's doing; headers node refuses are the request's.
    const closed = us.lastError === 'session closed';
    s.h2Failed(502, closed ? 'server_reset' : 'bad_request', us.lastError, closed ? 'reset' : undefined);
    return;
  }
  if (chunked) st.once('wantTrailers', () => sendRequestTrailers(s, st as ClientHttp2Stream));
  let responded = false;
  let reChunk = false;
  let trailers: IncomingHttpHeaders | undefined;
  st.on('response', (h: IncomingHttpHeaders) => {
    if (s.req !== req) return;
    responded = true;
    const status = Number(h[':status']) || 502;
    const names: string[] = [];
    const values: string[] = [];
    for (const k of Object.keys(h)) {
      if (k.charCodeAt(0) === 0x3a || HOP_BY_HOP.has(k)) continue;
      const v = h[k];
      if (v === undefined) continue;
      if (Array.isArray(v)) {
        for (const x of v) {
          names.push(k);
          values.push(x);
        }
      } else {
        names.push(k);
        values.push(v);
      }
    }
    const noBody = s.isHeadRequest || status === 204 || status === 304 || status < 200;
    if (!noBody && h['content-length'] === undefined) {
      if (s.h2ReqMinor === 1) {
        reChunk = true;
        names.push('transfer-encoding');
        values.push('chunked');
      } else s.closeAfter = true;
    }
    s.h2ResponseHead(status, s.clientHead(status, reasonOf(status), names, names, values, undefined, false));
  });
  st.on('data', (chunk: Buffer) => {
    if (s.req !== req || chunk.length === 0) return;
    s.lastActive = s.core.clock;
    if (reChunk) {
      s.writeDown(`${chunk.length.toString(16)}\r\n`);
      s.writeDown(chunk);
      s.writeDown('\r\n');
    } else s.writeDown(chunk);
  });
  st.on('trailers', (t: IncomingHttpHeaders) => {
    trailers = t;
  });
  st.on('drain', () => s.h2Drain());
  st.on('end', () => {
    if (s.req !== req || !responded) return;
    if (reChunk) {
      let tail = '0\r\n';
      if (trailers !== undefined) {
        for (const k of Object.keys(trailers)) {
          const v = trailers[k];
          if (k.charCodeAt(0) === 0x3a || v === undefined) continue;
          for (const x of Array.isArray(v) ? v : [v]) tail += `${k}: ${x}\r\n`;
        }
      }
      s.writeDown(`${tail}\r\n`);
    }
    s.endExchange('ok');
  });
  st.on('error', () => {});
  st.on('close', () => {
    if (s.req !== req || s.h2 !== st) return;
    const code = st.rstCode;
    if (!responded) {
      // Refused streams never reached the application (RFC 9113 §8.7): replay once.
      if (code === REFUSED_STREAM && !s.wasRetried && !hasBody) {
        s.markRetried();
        s.h2 = null;
        const member = s.pick!.member;
        const cfg = s.poolCfg!;
        const again = sharedH2Pool().acquire(
          member,
          { connect: cfg.timeouts.connect, serverIdle: cfg.timeouts.serverIdle },
          {
            onSession(us2) {
              if (s.req !== req || s.pick === null) us2.unreserve();
              else open(s, us2);
            },
            onSessionError(_why, detail) {
              if (s.req === req) s.h2Failed(502, 'server_reset', detail, 'reset');
            },
          },
        );
        if (again !== undefined) open(s, again);
        return;
      }
      s.h2Failed(502, 'server_reset', `stream closed (code ${code})`, 'reset');
      return;
    }
    s.h2Failed(502, 'server_reset', `stream reset (code ${code})`, 'reset');
  });
  s.h2Started(st as ClientHttp2Stream);
}

// Fields that must not appear in trailers (RFC 9110 §6.5.1: framing, routing, controls) or
// that node:http2 refuses as connection-specific.
const NOT_IN_TRAILERS: ReadonlySet<string> = new Set([
  'content-length',
  'content-type',
  'content-encoding',
  'content-range',
  'host',
  'expect',
  'cache-control',
  'authorization',
  'set-cookie',
  'cookie',
  'http2-settings',
]);

/** Ends the request stream with the client's chunked trailer fields (or none). */
function sendRequestTrailers(s: Session, st: ClientHttp2Stream): void {
  const out: OutgoingHttpHeaders = {};
  // Once the exchange is over (the server answered first), the session's decoder may
  // belong to the next request: end without trailers.
  const pairs = s.h2 === st ? s.requestTrailers() : undefined;
  if (pairs !== undefined) {
    for (const [n, v] of pairs) {
      if (HOP_BY_HOP.has(n) || NOT_IN_TRAILERS.has(n)) continue;
      const cur = out[n];
      if (cur === undefined) out[n] = v;
      else if (Array.isArray(cur)) cur.push(v);
      else out[n] = [String(cur), v];
    }
  }
  try {
    st.sendTrailers(out);
  } catch {
    // The stream closed meanwhile (reset, client gone): nothing left to end.
  }
}

function reasonOf(status: number): string {
  switch (status) {
    case 200:
      return 'OK';
    case 201:
      return 'Created';
    case 204:
      return 'No Content';
    case 301:
      return 'Moved Permanently';
    case 302:
      return 'Found';
    case 304:
      return 'Not Modified';
    case 400:
      return 'Bad Request';
    case 403:
      return 'Forbidden';
    case 404:
      return 'Not Found';
    case 500:
      return 'Internal Server Error';
    case 502:
      return 'Bad Gateway';
    case 503:
      return 'Service Unavailable';
    case 504:
      return 'Gateway Timeout';
    default:
      return 'Status';
  }
}
