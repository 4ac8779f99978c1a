// HTTP/1 client → `protocol: h2` pool: one HTTP/2 stream per request on the frame-level
// upstream pool (upstream/h2frame-pool.ts, shared with the HTTP/2 proxy). Request:
// pseudo-headers from the request line and Host, hop-by-hop headers dropped, chunked bodies
// de-chunked into DATA and their trailer fields sent as HTTP/2 trailers. Response:
// Content-Length kept when the server sent one, otherwise re-chunked for HTTP/1.1 clients
// (close-delimited for HTTP/1.0); HTTP/2 trailers become chunked trailers.
//
// Per request one H2Bridge: it is the pool waiter and the stream's user (no closures per
// request or per chunk). Flow control: the server's stream window is credited as response
// bytes are written to the client, and not while the client socket is blocked (pause →
// credit held, resume → credited), so a slow client stops the server after one window;
// request body writes report false while DATA waits for the server's window, and the
// session resumes reading the client when it went out (onSent).
//
// Replay: a stream the server refused before processing it (REFUSED_STREAM, or above a
// GOAWAY's last-stream-id) is sent again, headers and the request body so far, within the
// pool's retry budget and on another server when there is one (session.h2Repick), while
// that body is ≤ limits.retry_buffer and no response has started (as the HTTP/2 proxy does).
// The body is kept as references to the chunks the session hands over: the session never
// hands over a view of its shared client read buffer (it copies body bytes out of it first,
// session.ts onRead), so the bridge copies nothing itself.

import type { Http1Request } from '../../codec/http1/parser.js';
import { ErrorCode } from '../../codec/http2/constants.js';
import type { HpackDecoder } from '../../codec/http2/hpack.js';
import type { FrameStreamUser, H2Stream } from '../../upstream/h2frame-conn.js';
import {
  type FrameWaiter,
  type H2AcquireFailure,
  sharedFramePool,
  type UpConn,
} from '../../upstream/h2frame-pool.js';
import {
  appendForwarded,
  appendXff,
  forwardedElement,
  HOP_BY_HOP,
  replaceValue,
} from '../http-common/headers.js';
import type { Session } from './session.js';

type Fields = Record<string, string | string[]>;

function h2RequestHeaders(s: Session): Fields {
  const req = s.req!;
  const conn = s.conn;
  const t = s.requestTarget;
  const proto = conn.tls !== undefined ? 'https' : 'http';
  const out: Fields = {
    ':method': t.method,
    ':path': t.path,
    ':scheme': proto,
    ':authority': t.authority,
  };
  const rules = s.route?.requestHeaders;
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
    else out[n] = [cur, v];
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
      else out[n] = [cur, v];
    }
  }
  return out;
}

/** Routes the session's current request to an h2 pool member. */
export function startH2Exchange(s: Session): void {
  const req = s.req!;
  // HTTP/2 has no Expect handshake: say 100 Continue ourselves (RFC 9110 §10.1.1 lets a proxy).
  if (req.expectContinue && req.minor === 1 && s.requestHasBody) s.writeDown('HTTP/1.1 100 Continue\r\n\r\n');
  new H2Bridge(s, req).acquire();
}

/** One HTTP/1 request sent as one HTTP/2 stream: the pool waiter and the stream's user. */
export class H2Bridge implements FrameStreamUser, FrameWaiter {
  readonly s: Session;
  readonly req: Http1Request;
  readonly headers: Fields;
  readonly hasBody: boolean;
  up: UpConn | undefined = undefined;
  u: H2Stream | undefined = undefined;
  /** Detached from the session (the exchange ended or failed): late events are ignored. */
  done = false;
  /** Acquiring again for a refused stream: a failure now is the server's, not a connect failure. */
  replaying = false;
  responded = false;
  /** The response ended (END_STREAM seen). */
  upEnded = false;
  reChunk = false;
  /** Chunked trailer lines for the client (re-chunked responses only). */
  tail = '';
  /** The client socket is blocked: response bytes written meanwhile are credited on resume. */
  paused = false;
  credit = 0;
  /** A request body write returned false: the session waits for h2Drain(). */
  blocked = false;
  /** Request body chunks sent so far, kept for a replay (references, not copies). */
  kept: Buffer[] | null = null;
  keptBytes = 0;
  /** Still keeping the body: a replay is possible, no response yet, within the limit. */
  keep: boolean;
  /** The body outgrew `retryBuffer`: a refused stream is answered 502 instead of replayed. */
  tooLarge = false;
  readonly retryBuffer: number;

  constructor(s: Session, req: Http1Request) {
    this.s = s;
    this.req = req;
    this.headers = h2RequestHeaders(s);
    this.hasBody = s.requestHasBody;
    this.keep = this.hasBody;
    this.retryBuffer = s.snap!.limits.retryBuffer;
  }

  /** No replay can come any more: the kept body is let go. */
  private stopKeeping(): void {
    this.keep = false;
    this.kept = null;
  }

  acquire(): void {
    const s = this.s;
    const c = sharedFramePool().acquire(s.pick!.member, s.poolCfg!.timeouts, this);
    if (c !== undefined) this.onConn(c);
  }

  // ---- FrameWaiter

  onConn(c: UpConn): void {
    const s = this.s;
    if (this.done || s.req !== this.req || s.pick === null) {
      c.unreserve();
      return;
    }
    const u = c.open(this, this.headers, !this.hasBody);
    if (u === undefined) {
      // Closed or draining since the slot was reserved: nothing was sent.
      this.refused(`server connection went away: ${c.lastError}`, true);
      return;
    }
    this.up = c;
    this.u = u;
    if (this.replaying) {
      // The body so far goes first; what the client sends next follows via the session
      // (h2Started) and is kept too, for a further replay while the budget lasts.
      this.replaying = false;
      const kept = this.kept;
      if (kept !== null) {
        for (let i = 0; i < kept.length; i++) c.sendData(u, kept[i], false);
      }
      // A body that was complete before the refusal ends here (the session ended it once).
      if (this.hasBody && s.reqDone) this.end();
      if (u.q !== null) this.blocked = true;
    }
    s.h2Started(this);
  }

  onConnError(why: H2AcquireFailure, detail: string): void {
    const s = this.s;
    if (this.done || s.req !== this.req || s.pick === null) return;
    if (this.replaying) {
      this.fail(502, 'server_reset', detail);
      return;
    }
    this.done = true;
    s.connectFailed(
      Object.assign(new Error(detail), { code: why === 'timeout' ? 'ETIMEDOUT' : 'ECONNREFUSED' }),
    );
  }

  // ---- used by the session

  /** Request body bytes; false when they wait for the server's window (call h2Drain later). */
  write(b: Buffer): boolean {
    if (this.keep) {
      const n = this.keptBytes + b.length;
      if (n > this.retryBuffer) {
        this.stopKeeping();
        this.tooLarge = true;
      } else {
        this.keptBytes = n;
        if (this.kept === null) this.kept = [b];
        else this.kept.push(b);
      }
    }
    const u = this.u;
    if (u === undefined || u.closed) return true;
    this.up!.sendData(u, b, false);
    if (u.q === null) return true;
    this.blocked = true;
    return false;
  }

  /** The request body is complete: END_STREAM, or the chunked body's trailer fields. */
  end(): void {
    const u = this.u;
    if (u === undefined || u.closed || u.localEnded) return;
    const t = this.s.requestTrailers();
    if (t !== undefined) {
      const out = trailerFields(t);
      if (out !== undefined) {
        this.up!.sendTrailers(u, out);
        return;
      }
    }
    this.up!.endStream(u);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    const k = this.credit;
    this.credit = 0;
    const u = this.u;
    if (k > 0 && u !== undefined) this.up!.consume(u, k);
  }

  /**
   * The session is done with this exchange. An unfinished stream is reset (CANCEL): after a
   * complete response only when our side has not ended (the server did not wait for the
   * request body), so that it does not hold a slot waiting for a body that will not come.
   */
  cancel(): void {
    this.done = true;
    this.stopKeeping();
    const u = this.u;
    if (u === undefined || u.closed) return;
    if (this.upEnded && u.localEnded) return;
    this.u = undefined;
    this.up!.resetStream(u, ErrorCode.CANCEL);
  }

  // ---- FrameStreamUser (only the upstream side)

  onHeaders(st: H2Stream, d: HpackDecoder, endStream: boolean): void {
    if (st !== this.u || this.done) return;
    const s = this.s;
    const names = d.names;
    const values = d.values;
    const count = d.count;
    if (!this.responded) {
      if (d.oversize) {
        this.fail(502, 'bad_response', 'response header list too large');
        return;
      }
      this.responded = true;
      // The server took the request: it is never replayed now.
      this.stopKeeping();
      let status = 0;
      let hasLength = false;
      const outNames: string[] = [];
      const outValues: string[] = [];
      for (let i = 0; i < count; i++) {
        const n = names[i];
        if (n.charCodeAt(0) === 0x3a) {
          if (n === ':status') status = Number(values[i]);
          continue;
        }
        // Names and values were checked by the pool (RFC 9113 §8.2.1; onBadHeaders): no CR
        // or LF can split the HTTP/1 head.
        if (HOP_BY_HOP.has(n)) continue;
        if (n === 'content-length') hasLength = true;
        outNames.push(n);
        outValues.push(values[i]);
      }
      if (!(status >= 200 && status <= 999)) {
        this.fail(502, 'bad_response', 'bad :status in response', ErrorCode.PROTOCOL_ERROR);
        return;
      }
      const noBody = s.isHeadRequest || status === 204 || status === 304 || status < 200;
      if (!noBody && !hasLength) {
        if (s.h2ReqMinor === 1) {
          this.reChunk = true;
          outNames.push('transfer-encoding');
          outValues.push('chunked');
        } else s.closeAfter = true;
      }
      s.h2ResponseHead(
        status,
        s.clientHead(status, reasonOf(status), outNames, outNames, outValues, undefined, false),
      );
      if (endStream) this.responseEnd();
      return;
    }
    // Trailers: HTTP/1.1 has a place for them only in a chunked body.
    if (this.reChunk) {
      let tail = '';
      for (let i = 0; i < count; i++) {
        const n = names[i];
        if (n.charCodeAt(0) === 0x3a) continue;
        tail += `${n}: ${values[i]}\r\n`;
      }
      this.tail = tail;
    }
    if (endStream) this.responseEnd();
  }

  onData(st: H2Stream, data: Buffer, endStream: boolean): void {
    if (st !== this.u || this.done) return;
    if (!this.responded) {
      // DATA before the response HEADERS (RFC 9113 §8.1: malformed).
      this.fail(502, 'bad_response', 'DATA before response headers');
      return;
    }
    const n = data.length;
    if (n > 0) {
      const s = this.s;
      s.lastActive = s.core.clock;
      if (this.reChunk) {
        s.writeDown(`${n.toString(16)}\r\n`);
        s.writeDown(data);
        s.writeDown('\r\n');
      } else s.writeDown(data);
      // writeDown may have paused us (client socket full): credit the server on resume.
      if (this.paused) this.credit += n;
      else this.up!.consume(st, n);
    }
    if (endStream) this.responseEnd();
  }

  onReset(st: H2Stream, code: number): void {
    if (st !== this.u) return;
    this.u = undefined;
    if (this.done) return;
    if (!this.responded) {
      // Refused streams never reached the application (RFC 9113 §8.7): replayed.
      if (code === ErrorCode.REFUSED_STREAM)
        this.refused(`stream closed (code ${code})`, this.up?.draining === true);
      else this.fail(502, 'server_reset', `stream closed (code ${code})`);
      return;
    }
    this.fail(502, 'server_reset', `stream reset (code ${code})`);
  }

  onLost(st: H2Stream, refused: boolean): void {
    if (st !== this.u) return;
    this.u = undefined;
    if (this.done) return;
    if (!this.responded) {
      // Above a GOAWAY's last-stream-id: never processed, replayed like REFUSED_STREAM.
      if (refused) this.refused('stream refused (GOAWAY)', true);
      else this.fail(502, 'server_reset', `connection lost before response: ${this.up!.lastError}`);
      return;
    }
    this.fail(502, 'server_reset', `connection lost mid-response: ${this.up!.lastError}`);
  }

  onSent(st: H2Stream, n: number): void {
    // Called while the stream's queue still counts these bytes: the queue empties when they
    // were the last of it.
    if (!this.blocked || st !== this.u || (st.q !== null && st.qBytes > n)) return;
    this.blocked = false;
    if (!this.done) this.s.h2Drain();
  }

  onBadHeaders(st: H2Stream, why: string): void {
    if (st !== this.u || this.done) return;
    // The pool resets the server's stream (PROTOCOL_ERROR) right after: not ours to do.
    this.u = undefined;
    this.fail(502, 'bad_response', `server sent a malformed response: ${why}`);
  }

  onStreamError(st: H2Stream, code: number): void {
    // The server broke HTTP/2 on its stream (we reset it with `code` next): a reset.
    this.onReset(st, code);
  }

  onClose(st: H2Stream): void {
    if (st === this.u) this.u = undefined;
  }

  // ---- endings

  private responseEnd(): void {
    this.upEnded = true;
    const s = this.s;
    if (this.reChunk) s.writeDown(`0\r\n${this.tail}\r\n`);
    s.endExchange('ok');
  }

  /**
   * The server refused the stream unprocessed (`goaway`: above a GOAWAY's last-stream-id or
   * on a draining connection): replay it with the kept body while the pool's retry budget
   * allows (session.h2Repick), else 502.
   */
  private refused(detail: string, goaway: boolean): void {
    if (this.tooLarge) this.fail(502, 'error', 'request body too large to replay on another server');
    else if (this.s.h2Repick(goaway)) this.replay();
    else this.fail(502, 'server_reset', detail);
  }

  /**
   * Sends the request again on a fresh stream to the server the session picked anew: the
   * head, then the kept body (onConn). The session waits as for a first stream meanwhile:
   * the client is paused and what it still sends is held until h2Started.
   */
  private replay(): void {
    const s = this.s;
    s.h2Replaying();
    this.up = undefined;
    this.u = undefined;
    this.blocked = false;
    // The session is detached meanwhile (s.h2 = null) and would not resume us: h2Started
    // pauses the new stream again if the client is still blocked.
    this.paused = false;
    this.credit = 0;
    this.replaying = true;
    this.acquire();
  }

  /** Fails the exchange (502 before the response head, a cut connection after it). */
  private fail(
    status: number,
    outcome: 'server_reset' | 'bad_response' | 'error',
    detail: string,
    rst: number = ErrorCode.CANCEL,
  ): void {
    this.done = true;
    this.stopKeeping();
    const u = this.u;
    if (u !== undefined) {
      this.u = undefined;
      if (!u.closed) this.up!.resetStream(u, rst);
    }
    // A refused stream that could not be replayed ('error') counts as a reset, as on HTTP/2.
    this.s.h2Failed(status, outcome, detail, outcome === 'bad_response' ? 'other' : 'reset');
  }
}

// Fields that must not appear in trailers (RFC 9110 §6.5.1: framing, routing, controls,
// authentication, cookies).
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

/** The client's chunked trailer fields that may be HTTP/2 trailers; undefined when none. */
function trailerFields(pairs: [string, string][]): Fields | undefined {
  let out: Fields | undefined;
  for (const [n, v] of pairs) {
    if (HOP_BY_HOP.has(n) || NOT_IN_TRAILERS.has(n)) continue;
    if (out === undefined) out = {};
    const cur = out[n];
    if (cur === undefined) out[n] = v;
    else if (Array.isArray(cur)) cur.push(v);
    else out[n] = [cur, v];
  }
  return out;
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
