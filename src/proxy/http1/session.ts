// One client HTTP/1.1 connection on raw sockets: strict head parsing (codec/http1), one
// request at a time in order (pipelining-safe), bodies forwarded as raw slices with
// backpressure both ways, upstream keep-alive sockets from upstream/h1-pool, Upgrade tunnels,
// and HTTP/1 → HTTP/2 bridging for `protocol: h2` pools (see h2-bridge.ts).

import { performance } from 'node:perf_hooks';
import type { Member, Pick, PickRequest } from '../../balancer/types.js';
import {
  BODY_CHUNKED,
  BODY_CLOSE,
  BODY_LENGTH,
  BODY_NONE,
  CHUNK_ERROR,
  CHUNK_MORE,
  ChunkedDecoder,
  F_CONNECTION,
  F_FORWARDED,
  F_KEEP_ALIVE,
  F_OTHER,
  F_PROXY_CONNECTION,
  F_UPGRADE,
  F_XFF,
  FIELD_STRIDE,
  HeadError,
  type Http1Request,
  type Http1Response,
  parseRequest,
  parseResponse,
  responseBodyKind,
} from '../../codec/http1/parser.js';
import type { PoolConfig } from '../../config/runtime.js';
import { DirectWriter } from '../../core/direct-write.js';
import { msSince } from '../../core/duration.js';
import type { ClientConn, ListenerSnapshot } from '../../core/proxy.js';
import { rewrap, rewrappable } from '../../core/rewrap.js';
import type { Outcome, RouteKey } from '../../core/types.js';
import type { CompiledHeaderRules, CompiledRoute } from '../../router/types.js';
import type { H1Conn, H1ServerPool, H1UpstreamHandler } from '../../upstream/h1-pool.js';
import {
  appendForwarded,
  appendXff,
  cookieValue,
  forwardedElement,
  persistedServer,
  persistSetCookie,
  replaceValue,
} from '../http-common/headers.js';
import { refusedReplayAllowed } from '../http-common/retry.js';
import { type H2Bridge, startH2Exchange } from './h2-bridge.js';
import type { Http1ProxyCore } from './index.js';

// Client read side.
const R_HEAD = 0; // waiting for / parsing a request head
const R_BODY = 1; // the request body is being forwarded
const R_REST = 2; // request complete; later bytes (pipelined requests) are buffered
const R_TUNNEL = 3; // Upgrade accepted: bytes go both ways untouched
const R_CLOSED = 4;

// Response side.
const S_NONE = 0; // no exchange
const S_CONNECT = 1; // waiting for an upstream socket / stream
const S_HEAD = 2; // request sent, waiting for the response head
const S_BODY = 3; // streaming the response body

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

const NO_PICK: PickRequest = {};

/** Ends a request head: counting these in buffered bytes counts queued pipelined requests. */
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/**
 * Client reads of every session land here (`onread`, see Session.onRead): no buffer is
 * allocated per read, and none is held by an idle keep-alive connection. A read is
 * processed before the next one can overwrite the buffer; whatever outlives the read
 * callback (a partial or pipelined head, body bytes, a write the kernel did not take at
 * once) is copied out first.
 */
const CLIENT_BUF = Buffer.allocUnsafeSlow(64 * 1024);
const CLIENT_MEM = CLIENT_BUF.buffer;

/** Sessions reading into CLIENT_BUF, and those left on 'data' (TLS, or no internals). */
export const clientReadStats = { shared: 0, fallback: 0 };

/** `b` itself, or a copy when it is a view of the shared client read buffer. */
function owned(b: Buffer): Buffer {
  return b.buffer === CLIENT_MEM ? Buffer.from(b) : b;
}

/** After our FIN, how long a client that has read everything may keep its side open. */
const CLOSE_GRACE_MS = 2000;

/** The route key of one request; `headers` is built only if a route asks for it. */
class RequestKey implements RouteKey {
  readonly proto = 'http1' as const;
  private h: Record<string, string | string[]> | undefined;
  constructor(
    readonly source: string,
    readonly host: string | undefined,
    readonly path: string,
    readonly method: string,
    private readonly req: Http1Request,
  ) {}
  get headers(): Record<string, string | string[]> {
    if (this.h !== undefined) return this.h;
    const h: Record<string, string | string[]> = {};
    const { lower, values } = this.req;
    for (let i = 0; i < lower.length; i++) {
      const n = lower[i];
      const cur = h[n];
      if (cur === undefined) h[n] = values[i];
      else if (Array.isArray(cur)) cur.push(values[i]);
      else h[n] = [cur, values[i]];
    }
    this.h = h;
    return h;
  }
}

function headerValue(req: Http1Request, name: string): string | undefined {
  const { lower, values } = req;
  for (let i = 0; i < lower.length; i++) if (lower[i] === name) return values[i];
  return undefined;
}

function noop(): void {}

function clientBuffer(): Buffer {
  return CLIENT_BUF;
}

export class Session implements H1UpstreamHandler {
  readonly socket: ClientConn['socket'];
  private rstate = R_HEAD;
  private sstate = S_NONE;
  /** Client bytes not yet processed (partial head, or pipelined requests). */
  private buf: Buffer | null = null;
  /** Request body bytes read before the upstream was ready. */
  private early: Buffer | null = null;
  /** Head terminators counted in `buf[0..qScan)`: queued pipelined requests (see flow()). */
  private qHeads = 0;
  private qScan = 0;
  private cPaused = false;
  private upBlocked = false; // upstream write returned false
  private downBlocked = false; // client write returned false
  /** Writes to the client (direct to its handle where it can). */
  private readonly cw: DirectWriter;

  // Timeouts: checked by the proxy's sweep.
  lastActive: number;
  private headStart = 0;
  private sentAt = 0;

  // Current exchange.
  req: Http1Request | null = null;
  snap: ListenerSnapshot | null = null;
  route: CompiledRoute | undefined = undefined;
  poolCfg: PoolConfig | undefined = undefined;
  pick: (Pick & { ok: true }) | null = null;
  up: H1Conn | null = null;
  h2: H2Bridge | null = null;
  private reqLeft = 0;
  private reqChunk: ChunkedDecoder | null = null;
  reqDone = false;
  private ubuf: Buffer | null = null;
  private resKind = BODY_NONE;
  private resLeft = 0;
  private resChunk: ChunkedDecoder | null = null;
  /** Response is sent de-chunked and delimited by close (HTTP/1.0 client). */
  private dechunk = false;
  private reusable = false;
  closeAfter = false;
  private retried = false;
  private attempts = 0;
  private avoid: Member[] | undefined;
  private t0 = 0;
  bytesIn = 0;
  bytesOut = 0;
  status = 0;
  private host: string | undefined;
  private path = '';
  private persistCookie: string | undefined;
  private resRules: CompiledHeaderRules | undefined;

  constructor(
    readonly core: Http1ProxyCore,
    readonly conn: ClientConn,
  ) {
    const accepted = conn.socket;
    let socket = accepted;
    if (rewrappable(accepted)) {
      clientReadStats.shared++;
      socket = rewrap(
        accepted,
        { buffer: clientBuffer, callback: (n: number, b: Uint8Array) => this.onRead(n, b as Buffer) },
        true,
        accepted.allowHalfOpen,
      );
    } else {
      clientReadStats.fallback++;
      socket.on('data', (c: Buffer) => this.onData(c));
    }
    this.socket = socket;
    this.cw = new DirectWriter(socket, () => this.onClientDrain());
    this.lastActive = core.clock;
    socket.setNoDelay(true);
    socket.on('drain', () => this.onClientDrain());
    socket.on('error', noop);
    socket.on('end', () => this.onClientEnd());
    socket.on('close', () => this.onClientClose());
    const head = conn.sniff.head;
    if (head.length > 0) {
      this.buf = head;
      this.parseLoop();
    }
    if (this.rstate !== R_CLOSED && !this.cPaused) socket.resume();
  }

  // ---- client side ----------------------------------------------------------------------

  /**
   * A client read into CLIENT_BUF. The hot case — a new request head — is parsed straight
   * from it (the upstream head is built into a buffer of its own); every other state keeps
   * or forwards the bytes, so gets a copy, as does whatever is still held afterwards.
   */
  private onRead(n: number, buf: Buffer): boolean {
    if (this.rstate !== R_HEAD || this.buf !== null) {
      this.onData(Buffer.from(buf.subarray(0, n)));
      return true;
    }
    this.onData(buf.subarray(0, n));
    if (this.buf !== null) this.buf = owned(this.buf);
    if (this.early !== null) this.early = owned(this.early);
    // Only a retry on another connection re-sends the head; it then builds it from fields.
    if (this.headSrc !== null && this.headSrc.buffer === CLIENT_MEM) this.headSrc = null;
    return true;
  }

  private onData(chunk: Buffer): void {
    this.lastActive = this.core.clock;
    switch (this.rstate) {
      case R_HEAD:
        this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
        this.parseLoop();
        return;
      case R_BODY:
        if (this.sstate === S_CONNECT)
          this.early = this.early === null ? chunk : Buffer.concat([this.early, chunk]);
        else this.takeBody(chunk);
        return;
      case R_REST:
        this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
        this.flow();
        return;
      case R_TUNNEL:
        this.bytesIn += chunk.length;
        if (this.up !== null && !this.up.socket.write(chunk)) {
          this.upBlocked = true;
          this.flow();
        }
        return;
    }
  }

  private parsing = false;

  private parseLoop(): void {
    // Re-entered from afterExchange when a reply is immediate (404 etc.): the outer loop
    // goes on, so pipelined requests never grow the stack.
    if (this.parsing) return;
    this.parsing = true;
    try {
      this.parseHeads();
    } finally {
      this.parsing = false;
    }
  }

  private parseHeads(): void {
    while (this.rstate === R_HEAD && this.buf !== null) {
      if (this.headStart === 0) this.headStart = this.core.clock;
      const buf = this.buf;
      const snap = this.conn.listener.current;
      const r = parseRequest(buf, 0, snap.limits.headerBytes);
      if (r === null) return;
      if (r instanceof HeadError) {
        this.headFailure(snap, r.status, r.status === 431 ? 'too_large' : 'bad_request', r.reason);
        return;
      }
      if (r.headBytes < buf.length) {
        this.buf = buf.subarray(r.headBytes);
        // The parsed head's terminator was counted if the scan had passed it.
        if (this.qScan > r.headBytes - 4) {
          if (this.qHeads > 0) this.qHeads--;
          this.qScan = this.qScan > r.headBytes ? this.qScan - r.headBytes : 0;
        } else this.qScan = this.qHeads = 0;
      } else {
        this.buf = null;
        this.qScan = this.qHeads = 0;
      }
      this.headStart = 0;
      this.headSrc = buf;
      this.startRequest(r, snap);
    }
  }

  /** A head that cannot be served: reply and close (its framing cannot be trusted). */
  private headFailure(snap: ListenerSnapshot, status: number, outcome: Outcome, reason: string): void {
    this.snap = snap;
    this.t0 = performance.now();
    this.bytesIn = this.buf?.length ?? 0;
    this.bytesOut = 0;
    this.buf = null;
    this.req = null;
    this.route = undefined;
    this.host = undefined;
    this.reqDone = false;
    this.errorReply(status, outcome, reason, true);
  }

  /** Pause the client when the upstream is not ready/blocked or too much is buffered. */
  private flow(): void {
    let pause = false;
    switch (this.rstate) {
      case R_BODY:
        pause = this.sstate === S_CONNECT || this.upBlocked;
        break;
      case R_REST: {
        // Pipelined requests wait in `buf` unparsed; bound them in bytes and in count
        // (`limits.pipelined` counts the one being answered too).
        const buf = this.buf;
        if (buf === null) break;
        const limits = this.snap?.limits ?? this.conn.listener.current.limits;
        pause =
          buf.length > limits.headerBytes ||
          this.queuedHeads(buf, limits.pipelined - 1) + 1 >= limits.pipelined;
        break;
      }
      case R_TUNNEL:
        pause = this.upBlocked;
        break;
    }
    if (pause !== this.cPaused) {
      this.cPaused = pause;
      if (pause) this.socket.pause();
      else this.socket.resume();
    }
  }

  /** Counts head terminators in `buf` past the last scan, stopping at `max`. */
  private queuedHeads(buf: Buffer, max: number): number {
    let n = this.qHeads;
    let pos = this.qScan;
    while (n < max) {
      const i = buf.indexOf(HEAD_END, pos);
      if (i === -1) {
        // A terminator cut by the end of `buf` is found by the next scan.
        if (buf.length - 3 > pos) pos = buf.length - 3;
        break;
      }
      n++;
      pos = i + 4;
    }
    this.qHeads = n;
    this.qScan = pos;
    return n;
  }

  private onClientDrain(): void {
    if (!this.downBlocked) return;
    this.downBlocked = false;
    if (this.up !== null) this.up.socket.resume();
    else if (this.h2 !== null) this.h2.resume();
  }

  /** Writes to the client, pausing the upstream when the client is slow. */
  writeDown(data: Buffer | string): void {
    this.bytesOut += data.length;
    const ok = typeof data === 'string' ? this.socket.write(data, 'latin1') : this.cw.write(data);
    // The socket still holds a view of the upstream read buffer: that buffer must not be reused.
    if (this.up !== null && (!ok || this.cw.busy)) this.up.retained = true;
    if (!ok && !this.downBlocked) {
      this.downBlocked = true;
      if (this.up !== null) this.up.socket.pause();
      else if (this.h2 !== null) this.h2.pause();
    }
  }

  private onClientEnd(): void {
    // A half-close after a complete request still gets its response; otherwise stop.
    if (this.rstate === R_REST || (this.rstate === R_HEAD && this.sstate !== S_NONE)) {
      this.closeAfter = true;
      return;
    }
    if (this.rstate === R_TUNNEL) {
      this.up?.socket.end();
      return;
    }
    this.socket.destroy();
  }

  private onClientClose(): void {
    const wasOpen = this.rstate !== R_CLOSED;
    this.rstate = R_CLOSED;
    this.core.sessions.delete(this);
    if (wasOpen && this.sstate !== S_NONE) this.abort('client_reset', 'client closed', undefined);
    if (this.up !== null) {
      this.up.destroy();
      this.up = null;
    }
  }

  // ---- request --------------------------------------------------------------------------

  private startRequest(req: Http1Request, snap: ListenerSnapshot): void {
    this.t0 = performance.now();
    this.req = req;
    this.snap = snap;
    this.targetRewritten = false;
    this.pendingHead = undefined;
    this.bytesIn = req.headBytes;
    this.bytesOut = 0;
    this.status = 0;
    this.retried = false;
    this.attempts = 0;
    this.avoid = undefined;
    this.closeAfter = !req.keepAlive || this.core.draining;
    this.reusable = false;
    this.dechunk = false;
    this.route = undefined;
    this.poolCfg = undefined;
    this.persistCookie = undefined;
    this.resRules = undefined;
    this.reqLeft = req.bodyKind === BODY_LENGTH ? req.contentLength : 0;
    this.reqChunk = null;
    this.reqDone = req.bodyKind === BODY_NONE;
    this.rstate = this.reqDone ? R_REST : R_BODY;
    this.sstate = S_CONNECT;
    // Body bytes already read stay raw until the upstream is ready (then takeBody splits them).
    this.early = null;
    if (!this.reqDone && this.buf !== null) {
      this.early = owned(this.buf);
      this.buf = null;
      this.qScan = this.qHeads = 0;
    }
    this.flow();

    let target = req.target;
    let host = req.host;
    this.host = host;
    this.path = target;
    if (target.charCodeAt(0) !== 0x2f) {
      // absolute-form (RFC 9112 §3.2.2): the authority in the target wins over Host.
      const m = /^https?:\/\/([^/?#]*)(.*)$/i.exec(target);
      if (m !== null) {
        host = m[1];
        target = m[2] === '' ? '/' : m[2];
        req.target = target;
        this.targetRewritten = true;
      } else if (target === '*' && req.method === 'OPTIONS') {
        // asterisk-form: forwarded as is
      } else {
        this.errorReply(400, 'bad_request', 'bad request target', true);
        return;
      }
    }
    if (req.method === 'CONNECT') {
      this.errorReply(405, 'bad_request', 'CONNECT not supported', true);
      return;
    }
    const q = target.indexOf('?');
    this.path = q === -1 ? target : target.slice(0, q);
    this.host = host;

    const key = new RequestKey(this.conn.clientIp, host, this.path, req.method, req);
    const route = snap.router.route(key);
    this.route = route;
    if (route === undefined) {
      this.errorReply(404, 'no_route', 'no route', false);
      return;
    }
    if (route.deny || route.pool === undefined) {
      this.errorReply(403, 'denied', undefined, false);
      return;
    }
    this.poolCfg = route.poolConfig;
    this.resRules = route.responseHeaders;
    if (req.upgrade !== undefined && this.poolCfg?.protocol === 'h2') {
      this.errorReply(501, 'bad_request', 'upgrade to an h2 pool', true);
      return;
    }
    this.pickAndSend();
  }

  private pickRequest(): PickRequest {
    const cfg = this.poolCfg;
    if (cfg === undefined) return NO_PICK;
    const req = this.req!;
    let hashKey: string | undefined;
    let prefer: string | undefined;
    const hash = cfg.hash;
    if (hash !== undefined && cfg.balance === 'hash') {
      if (hash.kind === 'source') hashKey = this.conn.clientIp;
      else if (hash.kind === 'header') hashKey = headerValue(req, hash.name);
      else if (hash.kind === 'cookie') hashKey = cookieValue(headerValue(req, 'cookie'), hash.name);
    }
    if (cfg.persist !== undefined) {
      prefer = persistedServer(cookieValue(headerValue(req, 'cookie'), cfg.persist.cookie));
      this.persistCookie = prefer;
    }
    if (hashKey === undefined && prefer === undefined && this.avoid === undefined) return NO_PICK;
    return { hashKey, prefer, avoid: this.avoid };
  }

  private pickAndSend(): void {
    const route = this.route!;
    const p = route.pool!.pick(this.pickRequest());
    if (!p.ok) {
      this.errorReply(503, p.reason === 'full' ? 'queue_full' : 'no_server', p.reason, !this.reqDone);
      return;
    }
    this.pick = p;
    if (this.poolCfg?.protocol === 'h2') {
      startH2Exchange(this);
      return;
    }
    const sp = this.core.upstreams.forMember(p.member);
    const up = sp.take();
    if (up !== undefined) {
      this.attach(up);
      return;
    }
    this.connectTo(sp);
  }

  /** A new upstream connection for this exchange; one that lands after it ended is dropped. */
  private connectTo(sp: H1ServerPool): void {
    const timeout = this.poolCfg?.timeouts.connect ?? this.snap!.timeouts.connect;
    const req = this.req;
    sp.connect(timeout, (err, c) => {
      if (this.req !== req || this.rstate === R_CLOSED) {
        c?.socket.destroy();
        return;
      }
      if (err !== undefined || c === undefined) this.connectFailed(err);
      else this.attach(c);
    });
  }

  /** Upstream connect failed: retry another server when the pool allows, else 503. */
  connectFailed(err: Error | undefined): void {
    const p = this.pick!;
    this.pick = null;
    const timedOut = (err as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
    p.release({ ok: false, failure: timedOut ? 'timeout' : 'connect' });
    const retries = this.poolCfg?.retries;
    if (retries !== undefined && this.attempts < retries.attempts && retries.on.includes('connect-failure')) {
      this.attempts++;
      if (this.avoid === undefined) this.avoid = [];
      this.avoid.push(p.member);
      this.pickAndSend();
      return;
    }
    this.server = p.member.name;
    this.errorReply(timedOut ? 504 : 503, 'connect_failure', err?.message, !this.reqDone);
  }

  private server: string | undefined;

  private attach(up: H1Conn): void {
    this.up = up;
    up.handler = this;
    this.wasFresh = up.uses <= 1;
    this.sstate = S_HEAD;
    this.upBlocked = false;
    this.ubuf = null;
    const sock = up.socket;
    // Pooled sockets are flowing (released ones were resumed); pause only for a slow client.
    if (this.downBlocked) sock.pause();
    const early = this.early;
    this.early = null;
    if (early === null) this.writeHead(up);
    else {
      sock.cork();
      this.writeHead(up);
      this.takeBody(early);
      sock.uncork();
    }
    this.sentAt = this.core.clock;
    this.lastActive = this.sentAt;
    this.flow();
  }

  private writeHead(up: H1Conn): void {
    const h = this.requestHeadBytes();
    if (h === null) up.socket.write(this.requestHead(), 'latin1');
    else up.w.write(h);
  }

  /**
   * The usual request head for the upstream as ranges of the client's head bytes (no field
   * strings): hop-by-hop lines left out, the connection's forwarded lines appended. null when
   * the head needs field-level work (HTTP/1.0, absolute-form, Upgrade, Connection-listed
   * names, duplicate or list Content-Length, client X-Forwarded-For/Forwarded, drop/replace
   * rules): requestHead() then builds it.
   */
  private requestHeadBytes(): Buffer | null {
    const req = this.req!;
    const src = this.headSrc;
    if (
      src === null ||
      req.minor !== 1 ||
      this.targetRewritten ||
      req.upgrade !== undefined ||
      req.connTokens !== undefined ||
      req.clCount > 1
    ) {
      return null;
    }
    const rules = this.route?.requestHeaders;
    if (rules !== undefined && (rules.drop.size > 0 || rules.replace.size > 0)) return null;
    const o = req.offs;
    const end = req.head.length;
    const base = req.headBase;
    let n = end + 2;
    for (let i = 0; i < o.length; i += FIELD_STRIDE) {
      const k = o[i + 4];
      if (k === F_XFF || k === F_FORWARDED) return null;
      if (k !== F_OTHER && k <= F_UPGRADE)
        n -= (i + FIELD_STRIDE < o.length ? o[i + FIELD_STRIDE] : end) - o[i];
    }
    if (this.fwdBuf === undefined || this.fwdHost !== this.host) {
      this.fwdHost = this.host;
      this.fwdLines = this.forwardedLines(undefined, undefined);
      this.fwdBuf = Buffer.from(this.fwdLines, 'latin1');
    }
    const fwd = this.fwdBuf;
    n += fwd.length;
    const extra = rules !== undefined ? rules.appendH1 : '';
    n += extra.length;
    const out = Buffer.allocUnsafe(n);
    let pos = 0;
    let run = 0;
    for (let i = 0; i < o.length; i += FIELD_STRIDE) {
      const k = o[i + 4];
      // connection, keep-alive, proxy-connection, te, x-forwarded-proto, upgrade
      if (k !== F_OTHER && k <= F_UPGRADE) {
        if (o[i] > run) pos += src.copy(out, pos, base + run, base + o[i]);
        run = i + FIELD_STRIDE < o.length ? o[i + FIELD_STRIDE] : end;
      }
    }
    if (end > run) pos += src.copy(out, pos, base + run, base + end);
    pos += fwd.copy(out, pos);
    if (extra !== '') pos += out.write(extra, pos, 'latin1');
    out[pos++] = 13;
    out[pos] = 10;
    return out;
  }

  /** The buffer the current request's head was parsed from (its bytes from offset 0). */
  private headSrc: Buffer | null = null;
  private targetRewritten = false;
  private fwdBuf: Buffer | undefined = undefined;

  /** The request head for an HTTP/1.1 upstream. */
  private requestHead(): string {
    const req = this.req!;
    const rules = this.route?.requestHeaders;
    const { names, lower, values, connTokens } = req;
    let h = `${req.method} ${req.target} HTTP/1.1\r\n`;
    let xff: string | undefined;
    let fwd: string | undefined;
    let hasHost = false;
    let clSent = false;
    for (let i = 0; i < names.length; i++) {
      const n = lower[i];
      switch (n) {
        case 'connection':
        case 'keep-alive':
        case 'proxy-connection':
        case 'te':
        case 'x-forwarded-proto':
          continue;
        case 'upgrade':
          if (req.upgrade === undefined) continue;
          break;
        case 'x-forwarded-for':
          xff = xff === undefined ? values[i] : `${xff}, ${values[i]}`;
          continue;
        case 'forwarded':
          fwd = fwd === undefined ? values[i] : `${fwd}, ${values[i]}`;
          continue;
        case 'host':
          hasHost = true;
          break;
        case 'content-length':
          // Identical duplicates were accepted: the upstream gets exactly one, normalised.
          if (clSent) continue;
          clSent = true;
          h += `${names[i]}: ${req.contentLength}\r\n`;
          continue;
      }
      if (connTokens?.includes(n)) continue;
      if (rules !== undefined) {
        if (rules.drop.has(n)) continue;
        h += `${names[i]}: ${replaceValue(rules, n, values[i])}\r\n`;
      } else h += `${names[i]}: ${values[i]}\r\n`;
    }
    if (!hasHost) h += `host: ${this.host ?? this.pick!.member.address}\r\n`;
    if (xff === undefined && fwd === undefined) {
      // The usual case: the same lines for every request of this connection and Host.
      if (this.fwdLines === undefined || this.fwdHost !== this.host) {
        this.fwdHost = this.host;
        this.fwdLines = this.forwardedLines(undefined, undefined);
      }
      h += this.fwdLines;
    } else h += this.forwardedLines(xff, fwd);
    if (rules !== undefined) h += rules.appendH1;
    if (req.upgrade !== undefined) h += 'connection: upgrade\r\n';
    return `${h}\r\n`;
  }

  private fwdLines: string | undefined = undefined;
  private fwdHost: string | undefined = undefined;

  private forwardedLines(xff: string | undefined, fwd: string | undefined): string {
    const ip = this.conn.clientIp;
    const proto = this.conn.tls !== undefined ? 'https' : 'http';
    return `x-forwarded-for: ${appendXff(xff, ip)}\r\nx-forwarded-proto: ${proto}\r\nforwarded: ${appendForwarded(fwd, forwardedElement(ip, proto, this.host))}\r\n`;
  }

  /** Splits client bytes into this request's body and what follows; forwards the body. */
  takeBody(chunk: Buffer): void {
    const req = this.req!;
    let body: Buffer | null = chunk;
    let rest: Buffer | null = null;
    if (req.bodyKind === BODY_LENGTH) {
      const n = Math.min(this.reqLeft, chunk.length);
      this.reqLeft -= n;
      if (n < chunk.length) {
        body = n === 0 ? null : chunk.subarray(0, n);
        rest = chunk.subarray(n);
      }
      if (this.reqLeft === 0) this.reqDone = true;
    } else {
      let dec = this.reqChunk;
      if (dec === null) {
        dec = this.h2 !== null ? this.h2Decoder() : new ChunkedDecoder(this.snap!.limits.headerBytes);
        this.reqChunk = dec;
      }
      const end = dec.feed(chunk, 0, chunk.length);
      if (end === CHUNK_ERROR) {
        this.badRequestBody('bad chunked framing');
        return;
      }
      if (end !== CHUNK_MORE) {
        this.reqDone = true;
        if (end < chunk.length) {
          body = chunk.subarray(0, end);
          rest = chunk.subarray(end);
        }
      }
      if (this.h2 !== null) body = null; // the decoder's sink wrote the data
    }
    if (body !== null) {
      this.bytesIn += body.length;
      this.writeUp(body);
    } else if (req.bodyKind === BODY_CHUNKED) this.bytesIn += chunk.length - (rest?.length ?? 0);
    if (this.reqDone) {
      this.rstate = R_REST;
      if (rest !== null) {
        this.buf = this.buf === null ? rest : Buffer.concat([rest, this.buf]);
        this.qScan = this.qHeads = 0;
      }
      if (this.h2 !== null) this.h2.end();
      this.flow();
      if (this.sstate === S_NONE) this.afterExchange();
    }
  }

  private h2Decoder(): ChunkedDecoder {
    const st = this.h2!;
    return new ChunkedDecoder(this.snap!.limits.headerBytes, (b, s, e) => {
      if (e > s && !st.write(b.subarray(s, e))) {
        this.upBlocked = true;
        this.flow();
      }
    });
  }

  private writeUp(body: Buffer): void {
    if (this.up !== null) {
      if (!this.up.w.write(body)) {
        this.upBlocked = true;
        this.flow();
      }
    } else if (this.h2 !== null) {
      if (!this.h2.write(body)) {
        this.upBlocked = true;
        this.flow();
      }
    }
  }

  private badRequestBody(reason: string): void {
    if (this.sstate === S_HEAD || this.sstate === S_CONNECT) {
      this.errorReply(400, 'bad_request', reason, true);
    } else {
      this.abort('bad_request', reason, undefined);
      this.socket.destroy();
    }
  }

  onUpstreamDrain(): void {
    this.h2Drain();
  }

  h2Drain(): void {
    if (!this.upBlocked) return;
    this.upBlocked = false;
    this.flow();
  }

  // ---- response -------------------------------------------------------------------------

  onUpstreamData(_c: H1Conn, chunk: Buffer): void {
    this.lastActive = this.core.clock;
    if (this.rstate === R_TUNNEL) {
      this.writeDown(chunk);
      return;
    }
    if (this.sstate === S_BODY) {
      this.responseBody(chunk);
      return;
    }
    if (this.sstate !== S_HEAD) {
      // Bytes after a complete response: the upstream broke framing.
      this.reusable = false;
      return;
    }
    // A partial head is kept across reads: copy it out of the reused read buffer.
    let buf = this.ubuf === null ? chunk : Buffer.concat([this.ubuf, chunk]);
    const req = this.req!;
    const maxHead = this.snap!.limits.headerBytes;
    for (;;) {
      const r = parseResponse(buf, 0, maxHead);
      if (r === null) {
        this.ubuf = buf === chunk ? Buffer.from(chunk) : buf;
        return;
      }
      this.ubuf = null;
      if (r instanceof HeadError) {
        this.upstreamFailed(502, 'bad_response', r.reason, 'other');
        return;
      }
      const rest = r.headBytes < buf.length ? buf.subarray(r.headBytes) : null;
      if (r.status === 101) {
        if (req.upgrade === undefined) {
          this.upstreamFailed(502, 'bad_response', 'unexpected 101', 'other');
          return;
        }
        this.startTunnel(r, rest);
        return;
      }
      if (r.status < 200) {
        // 1xx (100 Continue, 103 Early Hints) passes through untouched; HTTP/1.0 clients
        // must not get them (RFC 9110 §15.2).
        if (req.minor === 1) this.writeDown(buf.subarray(0, r.headBytes));
        if (rest === null) return;
        buf = rest;
        continue;
      }
      this.responseHead(r, buf, rest);
      return;
    }
  }

  private responseHead(r: Http1Response, src: Buffer, rest: Buffer | null): void {
    const req = this.req!;
    this.status = r.status;
    this.sstate = S_BODY;
    const kind = responseBodyKind(r, req.method);
    this.resKind = kind;
    this.reusable = r.keepAlive && kind !== BODY_CLOSE;
    if (kind === BODY_CLOSE) this.closeAfter = true;
    if (kind === BODY_CHUNKED && req.minor === 0) {
      this.dechunk = true;
      this.closeAfter = true;
    }
    if (kind === BODY_LENGTH) this.resLeft = r.contentLength;
    else if (kind === BODY_CHUNKED) {
      this.resChunk = this.dechunk
        ? new ChunkedDecoder(this.snap!.limits.headerBytes, (b, s, e) => {
            if (e > s) this.writeDown(b.subarray(s, e));
          })
        : new ChunkedDecoder(this.snap!.limits.headerBytes);
    }
    if (this.poolCfg !== undefined && r.status >= 502 && r.status <= 504) this.statusFailure = true;
    const rules = this.resRules;
    if (
      !this.dechunk &&
      r.connTokens === undefined &&
      (rules === undefined || (rules.drop.size === 0 && rules.replace.size === 0))
    ) {
      // The usual case: the head leaves as ranges of the server's bytes (no field strings),
      // with the body bytes that came with it in the same buffer (one write).
      if (kind === BODY_NONE) {
        this.writeDown(this.clientHeadBytes(r, src, null));
        if (rest !== null) this.reusable = false;
        this.endExchange('ok');
        return;
      }
      if (rest !== null && kind === BODY_LENGTH && rest.length <= this.resLeft) {
        this.resLeft -= rest.length;
        this.writeDown(this.clientHeadBytes(r, src, rest));
        if (this.resLeft === 0) this.endExchange('ok');
        return;
      }
      const head = this.clientHeadBytes(r, src, null);
      if (rest === null) this.writeDown(head);
      else {
        this.pendingHead = head;
        this.responseBody(rest);
      }
      return;
    }
    const head = this.clientHead(r.status, r.reason, r.names, r.lower, r.values, r.connTokens, this.dechunk);
    if (kind === BODY_NONE) {
      this.writeDown(head);
      if (rest !== null) this.reusable = false;
      this.endExchange('ok');
      return;
    }
    if (rest !== null && !this.dechunk) {
      // Head and the body bytes that came with it leave in one write (one syscall).
      this.pendingHead = head;
      this.responseBody(rest);
      return;
    }
    this.writeDown(head);
    if (rest !== null) this.responseBody(rest);
  }

  /**
   * The client's response head built from ranges of the server's head bytes `src[0..)`:
   * hop-by-hop lines left out, our lines appended, `body` (if any) after it in one buffer.
   * Only for heads without Connection-listed names and without drop/replace rules.
   */
  private clientHeadBytes(r: Http1Response, src: Buffer, body: Buffer | null): Buffer {
    const o = r.offs;
    const end = r.head.length; // through the CRLF of the last field line
    let extra = '';
    const rules = this.resRules;
    if (rules !== undefined) extra = rules.appendH1;
    const persist = this.poolCfg?.persist;
    if (persist !== undefined && this.pick !== null && this.persistCookie !== this.pick.member.name) {
      extra += `set-cookie: ${persistSetCookie(persist.cookie, this.pick.member.name)}\r\n`;
    }
    if (this.closeAfter) extra += 'connection: close\r\n';
    else if (this.req!.minor === 0) extra += 'connection: keep-alive\r\n';
    let n = end + extra.length + 2 + (body === null ? 0 : body.length);
    for (let i = 0; i < o.length; i += FIELD_STRIDE) {
      const k = o[i + 4];
      if (k === F_CONNECTION || k === F_KEEP_ALIVE || k === F_PROXY_CONNECTION) {
        n -= (i + FIELD_STRIDE < o.length ? o[i + FIELD_STRIDE] : end) - o[i];
      }
    }
    const out = Buffer.allocUnsafe(n);
    let pos = 0;
    let run = 0;
    for (let i = 0; i < o.length; i += FIELD_STRIDE) {
      const k = o[i + 4];
      if (k === F_CONNECTION || k === F_KEEP_ALIVE || k === F_PROXY_CONNECTION) {
        if (o[i] > run) pos += src.copy(out, pos, run, o[i]);
        run = i + FIELD_STRIDE < o.length ? o[i + FIELD_STRIDE] : end;
      }
    }
    if (end > run) pos += src.copy(out, pos, run, end);
    out[7] = 0x31; // "HTTP/1.0 " from the server: we speak 1.1 to the client
    if (extra !== '') pos += out.write(extra, pos, 'latin1');
    out[pos++] = 13;
    out[pos++] = 10;
    if (body !== null) body.copy(out, pos);
    return out;
  }

  private pendingHead: string | Buffer | undefined = undefined;

  /** writeDown, prefixed with a response head still waiting to be written. */
  private writeBody(b: Buffer): void {
    const head = this.pendingHead;
    if (head === undefined) {
      this.writeDown(b);
      return;
    }
    this.pendingHead = undefined;
    const out = Buffer.allocUnsafe(head.length + b.length);
    if (typeof head === 'string') out.write(head, 0, 'latin1');
    else head.copy(out, 0);
    b.copy(out, head.length);
    this.writeDown(out);
  }

  private statusFailure = false;

  /** Serialises a response head for the client (shared with the HTTP/2 bridge). */
  clientHead(
    status: number,
    reason: string,
    names: readonly string[],
    lower: readonly string[],
    values: readonly string[],
    connTokens: readonly string[] | undefined,
    dropTe: boolean,
  ): string {
    const rules = this.resRules;
    let h = `HTTP/1.1 ${status} ${reason}\r\n`;
    for (let i = 0; i < names.length; i++) {
      const n = lower[i];
      switch (n) {
        case 'connection':
        case 'keep-alive':
        case 'proxy-connection':
          continue;
        case 'transfer-encoding':
          if (dropTe) continue;
          break;
      }
      if (connTokens?.includes(n)) continue;
      if (rules !== undefined) {
        if (rules.drop.has(n)) continue;
        h += `${names[i]}: ${replaceValue(rules, n, values[i])}\r\n`;
      } else h += `${names[i]}: ${values[i]}\r\n`;
    }
    if (rules !== undefined) h += rules.appendH1;
    const persist = this.poolCfg?.persist;
    if (persist !== undefined && this.pick !== null && this.persistCookie !== this.pick.member.name) {
      h += `set-cookie: ${persistSetCookie(persist.cookie, this.pick.member.name)}\r\n`;
    }
    if (this.closeAfter) h += 'connection: close\r\n';
    else if (this.req!.minor === 0) h += 'connection: keep-alive\r\n';
    return `${h}\r\n`;
  }

  private responseBody(chunk: Buffer): void {
    switch (this.resKind) {
      case BODY_LENGTH: {
        const n = Math.min(this.resLeft, chunk.length);
        this.resLeft -= n;
        if (n < chunk.length) {
          this.reusable = false;
          this.writeBody(chunk.subarray(0, n));
        } else this.writeBody(chunk);
        if (this.resLeft === 0) this.endExchange('ok');
        return;
      }
      case BODY_CHUNKED: {
        const dec = this.resChunk!;
        const end = dec.feed(chunk, 0, chunk.length);
        if (end === CHUNK_ERROR) {
          this.abort('server_reset', 'bad chunked response', 'other');
          this.socket.destroy();
          return;
        }
        if (!this.dechunk) {
          if (end === CHUNK_MORE || end === chunk.length) this.writeBody(chunk);
          else this.writeBody(chunk.subarray(0, end));
        }
        if (end !== CHUNK_MORE) {
          if (end < chunk.length) this.reusable = false;
          this.endExchange('ok');
        }
        return;
      }
      default:
        this.writeBody(chunk);
    }
  }

  onUpstreamClose(_c: H1Conn, err: Error | undefined): void {
    this.up = null;
    if (this.rstate === R_TUNNEL) {
      this.rstate = R_CLOSED;
      this.endExchange('ok');
      this.closeClient();
      return;
    }
    if (this.sstate === S_BODY && this.resKind === BODY_CLOSE) {
      this.reusable = false;
      this.endExchange('ok');
      return;
    }
    const detail = err?.message ?? 'server closed';
    if (this.sstate === S_HEAD) {
      // A reused keep-alive socket the server closed as we reused it (nodejs/node#47130):
      // nothing came back, and a request without a body is safe to send again once.
      if (this.ubuf === null && !this.retried && this.req!.bodyKind === BODY_NONE && !this.wasFresh) {
        this.retried = true;
        this.sstate = S_CONNECT;
        this.connectTo(this.core.upstreams.forMember(this.pick!.member));
        return;
      }
      this.upstreamFailed(502, 'server_reset', detail, 'reset');
      return;
    }
    if (this.sstate === S_BODY) {
      this.abort('server_reset', detail, 'reset');
      this.socket.destroy();
    }
  }

  private wasFresh = false;

  // ---- tunnel ---------------------------------------------------------------------------

  private startTunnel(r: Http1Response, rest: Buffer | null): void {
    const up = this.up!;
    this.status = 101;
    this.sstate = S_BODY;
    this.rstate = R_TUNNEL;
    this.reusable = false;
    let h = `HTTP/1.1 101 ${r.reason}\r\n`;
    const { names, lower, values } = r;
    for (let i = 0; i < names.length; i++) {
      const n = lower[i];
      if (n === 'connection' || n === 'keep-alive') continue;
      h += `${names[i]}: ${values[i]}\r\n`;
    }
    this.writeDown(`${h}connection: upgrade\r\n\r\n`);
    if (rest !== null) this.writeDown(rest);
    // Client bytes after the upgrade request belong to the new protocol.
    const early = this.buf;
    this.buf = null;
    if (early !== null) {
      this.bytesIn += early.length;
      up.socket.write(early);
    }
    up.socket.on('end', () => this.socket.end());
    this.flow();
  }

  // ---- endings --------------------------------------------------------------------------

  /** The upstream failed before a response head: reply with `status` and drop the socket. */
  private upstreamFailed(
    status: number,
    outcome: Outcome,
    detail: string,
    failure: 'reset' | 'other' | 'timeout',
  ): void {
    const up = this.up;
    this.up = null;
    up?.destroy();
    const p = this.pick;
    this.pick = null;
    this.server = p?.member.name;
    p?.release({ ok: false, failure, bytesIn: this.bytesIn, bytesOut: 0 });
    this.errorReply(status, outcome, detail, !this.reqDone);
  }

  /** Lets go of the exchange's upstream (socket or h2 stream) and releases its pick as failed. */
  private dropUpstream(failure: 'reset' | 'other' | 'timeout' | undefined): void {
    const up = this.up;
    this.up = null;
    up?.destroy();
    if (this.h2 !== null) {
      const st = this.h2;
      this.h2 = null;
      st.cancel();
    }
    const p = this.pick;
    this.pick = null;
    if (p !== null) {
      this.server = p.member.name;
      p.release(
        failure === undefined
          ? { ok: false, bytesIn: this.bytesIn, bytesOut: this.bytesOut }
          : { ok: false, failure, bytesIn: this.bytesIn, bytesOut: this.bytesOut },
      );
    }
  }

  /** Cuts the exchange without a reply (after the response head was sent, or client gone). */
  abort(
    outcome: Outcome,
    detail: string | undefined,
    failure: 'reset' | 'other' | 'timeout' | undefined,
  ): void {
    if (this.sstate === S_NONE) return;
    this.dropUpstream(failure);
    this.record(outcome, detail);
    this.sstate = S_NONE;
    this.closeAfter = true;
  }

  /** The response is complete. */
  endExchange(outcome: Outcome): void {
    const p = this.pick;
    this.pick = null;
    if (p !== null) {
      this.server = p.member.name;
      if (this.statusFailure) {
        this.statusFailure = false;
        p.release({ ok: false, failure: 'status', bytesIn: this.bytesIn, bytesOut: this.bytesOut });
      } else p.release({ ok: true, bytesIn: this.bytesIn, bytesOut: this.bytesOut });
    }
    const up = this.up;
    this.up = null;
    if (up !== null) {
      if (this.reusable && this.reqDone && !this.upBlocked) {
        up.pool.release(
          up,
          this.poolCfg?.timeouts.serverIdle ?? this.snap!.timeouts.serverIdle,
          this.core.clock,
        );
        if (this.downBlocked) up.socket.resume();
      } else up.destroy();
    }
    const st = this.h2;
    this.h2 = null;
    // A response that ended before the request body: the stream must not wait for it forever.
    if (st !== null) st.cancel();
    this.resChunk = null;
    this.record(outcome, undefined);
    this.sstate = S_NONE;
    if (this.rstate === R_CLOSED) return;
    this.afterExchange();
  }

  /** Ends our side; the sweep destroys the socket if the client does not close its side. */
  private closeClient(): void {
    this.rstate = R_CLOSED;
    this.lastActive = this.core.clock;
    this.socket.end();
  }

  /** After a response: next request, or close. */
  private afterExchange(): void {
    if (this.rstate === R_TUNNEL || this.rstate === R_CLOSED) return;
    if (this.closeAfter || this.rstate === R_BODY) {
      // A request body the upstream did not wait for is still arriving: close.
      this.closeClient();
      return;
    }
    if (this.rstate !== R_REST) return;
    this.rstate = R_HEAD;
    this.req = null;
    this.headSrc = null;
    this.lastActive = this.core.clock;
    this.wasFresh = false;
    this.upBlocked = false;
    this.flow();
    if (this.buf !== null) this.parseLoop();
  }

  private record(outcome: Outcome, detail: string | undefined): void {
    const req = this.req;
    const route = this.route;
    this.core.ctx.finish({
      proto: 'http1',
      listener: this.conn.listener.name,
      route: route?.name,
      pool: route?.pool?.name,
      server: this.server,
      client: this.conn.clientAddr,
      method: req?.method,
      host: this.host,
      path: req !== null ? this.path : undefined,
      status: this.status,
      bytes_in: this.bytesIn,
      bytes_out: this.bytesOut,
      duration_ms: msSince(this.t0),
      outcome,
      detail,
    });
    this.server = undefined;
  }

  /** A gateway-generated reply with a short text body. */
  errorReply(status: number, outcome: Outcome, detail: string | undefined, close: boolean): void {
    if (this.rstate === R_CLOSED) return;
    this.dropUpstream(undefined);
    // An unread request body would be parsed as the next request: close instead.
    if (!this.reqDone) close = true;
    if (close) this.closeAfter = true;
    const text = STATUS_TEXT[status] ?? 'Error';
    const body = `${text}\n`;
    this.status = status;
    this.writeDown(
      `HTTP/1.1 ${status} ${text}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n${
        this.closeAfter ? 'connection: close\r\n' : ''
      }\r\n${body}`,
    );
    this.record(outcome, detail);
    this.sstate = S_NONE;
    if (this.closeAfter) {
      this.closeClient();
      return;
    }
    this.afterExchange();
  }

  // ---- timers (called by the proxy's sweep) ---------------------------------------------

  sweep(now: number): void {
    const t = this.snap?.timeouts ?? this.conn.listener.current.timeouts;
    switch (this.rstate) {
      case R_CLOSED:
        // We sent FIN (allowHalfOpen listeners): a client that never closes its side must
        // not hold the socket. Give a slow reader of the last response `client_idle`.
        if (
          !this.socket.destroyed &&
          now - this.lastActive > (this.cw.busy ? t.clientIdle : CLOSE_GRACE_MS)
        ) {
          this.socket.destroy();
        }
        return;
      case R_TUNNEL:
        if (now - this.lastActive > t.tunnel) {
          this.rstate = R_CLOSED;
          this.abort('timeout', 'tunnel idle', undefined);
          this.socket.destroy();
        }
        return;
    }
    switch (this.sstate) {
      case S_NONE: {
        if (this.rstate !== R_HEAD) return;
        if (this.buf !== null && this.headStart !== 0) {
          // Slowloris: the whole head must arrive within `timeouts.request`.
          if (now - this.headStart > t.request) {
            this.headFailure(this.conn.listener.current, 408, 'timeout', 'request head timeout');
          }
        } else if (now - this.lastActive > t.clientIdle) {
          this.rstate = R_CLOSED;
          this.socket.destroy();
        }
        return;
      }
      case S_CONNECT:
        return; // bounded by the connect timeout
      case S_HEAD:
        if (this.rstate === R_BODY) {
          // The client stopped sending its body: not the server's failure.
          if (now - this.lastActive > t.clientIdle)
            this.errorReply(408, 'timeout', 'request body idle', true);
        } else if (now - this.sentAt > t.request && now - this.lastActive > t.request) {
          this.upstreamFailed(504, 'timeout', 'no response', 'timeout');
        }
        return;
      case S_BODY: {
        const idle = this.poolCfg?.timeouts.serverIdle ?? t.serverIdle;
        if (now - this.lastActive > Math.max(idle, t.request)) {
          // Stalled on a client that does not read is not the server's failure.
          this.abort('timeout', 'response stalled', this.downBlocked ? undefined : 'timeout');
          this.socket.destroy();
        }
        return;
      }
    }
  }

  /** Graceful stop: idle connections close now, busy ones after their response. */
  drain(): void {
    if (this.rstate === R_HEAD && this.sstate === S_NONE && this.buf === null) this.closeClient();
    else this.closeAfter = true;
  }

  /** Cut at the drain deadline. */
  cut(): void {
    if (this.sstate !== S_NONE) this.abort('cut', 'gateway stopping', undefined);
    this.rstate = R_CLOSED;
    this.socket.destroy();
    // After a re-wrap the accepted socket closes with ours only a tick later; the gateway
    // counts what is still open right after the drain as unclassified: close it now.
    this.conn.socket.destroy();
  }

  // ---- used by the HTTP/2 bridge --------------------------------------------------------

  /** The h2 stream is open and the request head sent: forward what body there is. */
  h2Started(st: H2Bridge): void {
    this.h2 = st;
    // A client still blocked from the previous response: hold the server's credit.
    if (this.downBlocked) st.pause();
    // A replayed body may already wait for the server's window.
    this.upBlocked = st.blocked;
    this.sstate = S_HEAD;
    this.sentAt = this.core.clock;
    this.lastActive = this.sentAt;
    const early = this.early;
    this.early = null;
    if (early !== null) this.takeBody(early);
    this.flow();
  }

  /**
   * The bridge replays a refused stream: wait for the new one as for the first (client
   * paused, body bytes it still sends held in `early` for h2Started).
   */
  h2Replaying(): void {
    this.h2 = null;
    this.sstate = S_CONNECT;
    this.upBlocked = false;
    this.flow();
  }

  h2ResponseHead(status: number, head: string): void {
    this.status = status;
    this.sstate = S_BODY;
    if (this.poolCfg !== undefined && status >= 502 && status <= 504) this.statusFailure = true;
    this.writeDown(head);
  }

  get h2ReqMinor(): number {
    return this.req?.minor ?? 1;
  }

  get isHeadRequest(): boolean {
    return this.req?.method === 'HEAD';
  }

  h2Failed(
    status: number,
    outcome: Outcome,
    detail: string,
    failure: 'reset' | 'other' | 'timeout' | 'connect' | undefined,
  ) {
    if (this.sstate === S_BODY) {
      this.abort(outcome, detail, failure === 'connect' ? 'other' : failure);
      this.socket.destroy();
      return;
    }
    this.h2 = null;
    const p = this.pick;
    this.pick = null;
    if (p !== null) {
      this.server = p.member.name;
      p.release(
        failure === undefined
          ? { ok: false, bytesIn: this.bytesIn, bytesOut: 0 }
          : { ok: false, failure, bytesIn: this.bytesIn, bytesOut: 0 },
      );
    }
    this.errorReply(status, outcome, detail, !this.reqDone);
  }

  get requestTarget(): { method: string; path: string; authority: string } {
    const req = this.req!;
    return { method: req.method, path: req.target, authority: this.host ?? this.pick!.member.address };
  }

  /**
   * The bridge wants to replay a refused stream: allowed by the pool's retry budget as on
   * the HTTP/2 proxy (refusedReplayAllowed). The server is given back as for a reset and the replay goes to another server when the pool
   * has one, else to the same one on a fresh connection. False: no replay (over budget, or no
   * server usable now); the bridge answers 502.
   */
  h2Repick(goaway: boolean): boolean {
    const p = this.pick;
    if (p === null || !refusedReplayAllowed(this.poolCfg!.retries, this.attempts, goaway)) return false;
    this.pick = null;
    this.server = p.member.name;
    p.release({ ok: false, failure: 'reset', bytesIn: 0, bytesOut: 0 });
    this.attempts++;
    if (this.avoid === undefined) this.avoid = [];
    this.avoid.push(p.member);
    // Another server when the pool has one, else the same one on a fresh connection.
    const next = this.route!.pool!.pick({ ...this.pickRequest(), avoidIsPreference: true });
    if (!next.ok) return false;
    this.pick = next;
    return true;
  }

  get requestHasBody(): boolean {
    return this.req!.bodyKind !== BODY_NONE;
  }

  get requestChunked(): boolean {
    return this.req!.bodyKind === BODY_CHUNKED;
  }

  /** Trailer fields of the chunked request body, once it is complete (h2 pools only). */
  requestTrailers(): [string, string][] | undefined {
    const dec = this.reqChunk;
    return dec?.done && dec.trailers !== '' ? dec.trailerPairs() : undefined;
  }
}
