// HTTP/2 (h2c prior knowledge) and gRPC proxy: every client stream is routed, balanced and
// forwarded on its own over pooled upstream sessions (src/upstream/h2-pool.ts).
//
// Driven on node:http2 directly (docs/http2-grpc.md has the measurements): no pipe(), no
// Node stream glue; every event listener is a module-level function that finds its
// per-stream state through a property on the stream, so a stream costs one Exchange object,
// its header objects and a few listener registrations.
import type { ClientRequest, IncomingMessage } from 'node:http';
import http2, {
  type ClientHttp2Stream,
  type Http2Server,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Member, Pick, PickRequest, PoolLike } from '../../balancer/types.js';
import {
  encodeGrpcMessage,
  GrpcStatus,
  grpcServiceOf,
  grpcStatusForRst,
  isGrpcContentType,
  parseGrpcTimeout,
} from '../../codec/grpc/index.js';
import type { Limits, PoolConfig } from '../../config/runtime.js';
import type { ClientConn, GatewayContext, ListenerSnapshot, ProtocolProxy } from '../../core/proxy.js';
import type { Outcome, RouteKey } from '../../core/types.js';
import type { CompiledRoute } from '../../router/types.js';
import { h1Request, h2ResponseHeaders, h2ToH1Headers } from '../../upstream/h1-bridge.js';
import {
  type H2AcquireFailure,
  type H2SessionPool,
  type H2Waiter,
  sharedH2Pool,
  type UpstreamSession,
} from '../../upstream/h2-pool.js';
import {
  applyRules,
  clientResponseHeaders,
  cookieValue,
  headerString,
  upstreamRequestHeaders,
} from './headers.js';

const {
  NGHTTP2_NO_ERROR,
  NGHTTP2_CANCEL,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_FLAG_END_STREAM,
} = http2.constants;

const kConn = Symbol('switchyard.h2conn');
const kX = Symbol('switchyard.exchange');
type TaggedSession = ServerHttp2Session & { [kConn]?: ConnState };
type ClientStream = ServerHttp2Stream & { [kX]?: Exchange };
type UpStream = ClientHttp2Stream & { [kX]?: Exchange };

const RESPOND_TRAILERS = { waitForTrailers: true } as const;
const RESPOND_END = { endStream: true } as const;
const EMPTY_TRAILERS: OutgoingHttpHeaders = {};
// Flow-control windows we advertise to clients: large enough for 4 MiB messages to stream
// without a round trip per 64 KiB, small enough to bound what a slow peer makes us hold.
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 16 << 20;

export interface Http2ProxyOptions {
  /** Upstream session pool (defaults to the process-wide one the HTTP/1 proxy shares). */
  upstream?: H2SessionPool;
}

export function createHttp2Proxy(ctx: GatewayContext, opts: Http2ProxyOptions = {}): ProtocolProxy {
  return new Http2Proxy(ctx, opts.upstream ?? sharedH2Pool());
}

function noop(): void {}

/** One client HTTP/2 connection. */
class ConnState {
  readonly conn: ClientConn;
  readonly session: ServerHttp2Session;
  readonly proxy: Http2Proxy;
  /** Exchanges not yet finished. */
  active = 0;
  resetWindow = 0;
  resets = 0;
  cut = false;

  constructor(proxy: Http2Proxy, conn: ClientConn, session: ServerHttp2Session) {
    this.proxy = proxy;
    this.conn = conn;
    this.session = session;
  }

  /**
   * Rapid-reset defence (CVE-2023-44487): a client that resets more than
   * `limits.h2ResetsPerSecond` streams in a second gets GOAWAY(ENHANCE_YOUR_CALM) and is
   * closed; the streams it reset were cancelled upstream as they went.
   */
  countReset(limit: number): void {
    const now = Date.now();
    if (now - this.resetWindow >= 1000) {
      this.resetWindow = now;
      this.resets = 0;
    }
    if (++this.resets <= limit || this.cut) return;
    this.cut = true;
    this.proxy.ctx.logger.warn(
      { event: 'h2_rapid_reset', client: this.conn.clientAddr, listener: this.conn.listener.name, limit },
      'client reset streams too fast: GOAWAY(ENHANCE_YOUR_CALM)',
    );
    const s = this.session;
    try {
      s.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
    } catch {
      // already closing
    }
    // Let the GOAWAY frame flush, then drop the connection and everything on it.
    setImmediate(destroySession, s);
  }
}

function destroySession(s: ServerHttp2Session): void {
  if (!s.destroyed) s.destroy();
}

class Http2Proxy implements ProtocolProxy {
  readonly ctx: GatewayContext;
  readonly upstream: H2SessionPool;
  private readonly servers = new Map<string, Http2Server>();
  readonly conns = new Set<ConnState>();
  /** The connection being handed to node:http2 (its 'session' event fires synchronously). */
  private pending: ClientConn | undefined;
  private drainWaiter: (() => void) | undefined;
  /** Reused for every pick: Pool.pick reads it synchronously. */
  readonly pickReq: { hashKey: string | undefined; avoid: Member[] | undefined } = {
    hashKey: undefined,
    avoid: undefined,
  };

  constructor(ctx: GatewayContext, upstream: H2SessionPool) {
    this.ctx = ctx;
    this.upstream = upstream;
  }

  get activeConnections(): number {
    return this.conns.size;
  }

  handle(conn: ClientConn): void {
    const { socket } = conn;
    socket.on('error', noop);
    // HTTP/2 writes small frames; Nagle + delayed ACK would add up to 40 ms per exchange.
    socket.setNoDelay(true);
    const server = this.serverFor(conn.listener.current.limits);
    // node:http2 picks up bytes already buffered on the socket (readableLength) when the
    // session starts, so the sniffed preface is replayed by unshifting it (test/h2-handoff).
    if (conn.sniff.head.length > 0) socket.unshift(conn.sniff.head);
    this.pending = conn;
    try {
      server.emit('connection', socket);
    } finally {
      this.pending = undefined;
    }
  }

  private serverFor(lim: Limits): Http2Server {
    const key = `${lim.h2Streams}/${lim.headerBytes}`;
    let s = this.servers.get(key);
    if (s !== undefined) return s;
    s = http2.createServer({
      settings: {
        maxConcurrentStreams: lim.h2Streams,
        maxHeaderListSize: lim.headerBytes,
        initialWindowSize: STREAM_WINDOW,
        enablePush: false,
      },
      maxHeaderListPairs: 256,
      // CONTINUATION/invalid-frame floods and streams refused above maxConcurrentStreams
      // end the session after these counts (node's own defences, test/h2-protection).
      maxSessionInvalidFrames: 100,
      maxSessionRejectedStreams: 100,
      maxSessionMemory: 64,
    });
    s.on('session', (session: TaggedSession) => this.onSession(session));
    s.on('stream', onStream);
    s.on('sessionError', noop);
    this.servers.set(key, s);
    return s;
  }

  private onSession(session: TaggedSession): void {
    const conn = this.pending;
    if (conn === undefined) {
      session.destroy();
      return;
    }
    const cs = new ConnState(this, conn, session);
    session[kConn] = cs;
    this.conns.add(cs);
    session.on('error', noop);
    session.on('close', () => {
      this.conns.delete(cs);
      if (this.conns.size === 0 && this.drainWaiter !== undefined) this.drainWaiter();
    });
    try {
      session.setLocalWindowSize(CONNECTION_WINDOW);
    } catch {
      // the default window still works
    }
    const idle = conn.listener.current.timeouts.clientIdle;
    if (idle > 0) {
      session.setTimeout(idle, () => {
        // Only an idle connection is closed: a quiet long-lived stream is not idle.
        if (cs.active === 0) session.close();
      });
    }
    if (this.ctx.draining) session.close();
  }

  async drain(deadline: number): Promise<void> {
    for (const cs of this.conns) {
      try {
        cs.session.close(); // GOAWAY(NO_ERROR); streams in flight finish
      } catch {
        // already closing
      }
    }
    if (this.conns.size > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.drainWaiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    this.drainWaiter = undefined;
    for (const cs of this.conns) cs.session.destroy();
    this.upstream.close(false);
  }
}

/** Per-stream state: one client stream and its current upstream attempt. */
class Exchange implements H2Waiter {
  readonly cs: ConnState;
  readonly proxy: Http2Proxy;
  readonly stream: ClientStream;
  readonly headers: IncomingHttpHeaders;
  readonly snap: ListenerSnapshot;
  readonly start: number;
  grpc = false;
  path = '';
  method = '';
  service: string | undefined;
  route: CompiledRoute | undefined;
  pool: PoolLike | undefined;
  poolConfig: PoolConfig | undefined;
  lease: Pick | undefined;
  member: Member | undefined;
  session: UpstreamSession | undefined;
  up: UpStream | undefined;
  outHeaders: OutgoingHttpHeaders | undefined;
  /** Request body kept for a retry while no response has started; null once given up. */
  buf: Buffer[] | null = [];
  bufBytes = 0;
  bytesIn = 0;
  bytesOut = 0;
  status = 0;
  grpcStatus = -1;
  trailers: OutgoingHttpHeaders | undefined;
  /** Trailers the gateway makes (deadline, backend lost mid-stream); win over upstream's. */
  localTrailers: OutgoingHttpHeaders | undefined;
  responded = false;
  upEnded = false;
  clientEnded = false;
  attached = false;
  finished = false;
  waiting = false;
  retries = 0;
  avoid: Member[] | undefined;
  timer: NodeJS.Timeout | undefined;
  timeoutMs = 0;
  outcome: Outcome = 'ok';
  detail: string | undefined;
  failure: 'connect' | 'reset' | 'unavailable' | 'status' | 'timeout' | 'other' | undefined;

  constructor(cs: ConnState, stream: ClientStream, headers: IncomingHttpHeaders) {
    this.cs = cs;
    this.proxy = cs.proxy;
    this.stream = stream;
    this.headers = headers;
    this.snap = cs.conn.listener.current;
    this.start = performance.now();
  }

  begin(): void {
    const h = this.headers;
    const path = h[':path'] ?? '';
    const method = h[':method'] ?? '';
    this.path = path;
    const grpc = isGrpcContentType(h['content-type']);
    this.grpc = grpc;
    const conn = this.cs.conn;
    const key: RouteKey = {
      proto: grpc ? 'grpc' : 'h2',
      source: conn.clientIp,
      sni: conn.tls?.sni,
      host: h[':authority'] ?? headerString(h, 'host'),
      path,
      method: grpc ? path : method,
      service: undefined,
      headers: h,
    };
    if (grpc) {
      this.service = grpcServiceOf(path);
      key.service = this.service;
      this.method = path;
    } else {
      this.method = method;
    }
    const route = this.snap.router.route(key);
    this.route = route;
    if (route === undefined) {
      this.fail(GrpcStatus.UNIMPLEMENTED, 404, 'no route for this request', 'no_route');
      return;
    }
    if (route.deny) {
      this.fail(GrpcStatus.PERMISSION_DENIED, 403, 'denied by gateway route', 'denied');
      return;
    }
    const pc = route.poolConfig;
    if (route.pool === undefined || pc === undefined) {
      this.fail(GrpcStatus.UNAVAILABLE, 503, 'route has no pool', 'no_server');
      return;
    }
    this.pool = route.pool;
    this.poolConfig = pc;
    if (pc.protocol === 'h1' && !grpc) {
      this.h1 = true;
    } else if (pc.protocol !== 'h2') {
      // gRPC needs HTTP/2 end to end (trailers); tcp/thrift pools cannot take a stream.
      const why = `pool ${pc.name} speaks ${pc.protocol}; ${grpc ? 'gRPC' : 'HTTP/2'} needs an h2 pool`;
      this.proxy.ctx.logger.warn({ event: 'h2_pool_protocol', pool: pc.name, route: route.name }, why);
      this.fail(GrpcStatus.UNAVAILABLE, 502, why, 'error');
      return;
    }
    const ms = grpc ? parseGrpcTimeout(h['grpc-timeout']) : this.snap.timeouts.request;
    if (ms > 0) {
      this.timeoutMs = ms;
      this.timer = setTimeout(onTimeout, ms, this);
    }
    if (!this.h1) this.outHeaders = upstreamRequestHeaders(h, conn.clientIp, route.requestHeaders);
    this.pickAndSend();
  }

  private hashKey(): string | undefined {
    const hash = this.poolConfig!.hash;
    if (hash === undefined) return undefined;
    switch (hash.kind) {
      case 'source':
        return this.cs.conn.clientIp;
      case 'header':
      case 'grpc-metadata':
        return headerString(this.headers, hash.name);
      case 'cookie':
        return cookieValue(headerString(this.headers, 'cookie'), hash.name);
      default:
        return undefined;
    }
  }

  pickAndSend(): void {
    const req = this.proxy.pickReq;
    req.hashKey = this.hashKey();
    req.avoid = this.avoid;
    let p = this.pool!.pick(req as PickRequest);
    if (!p.ok && this.avoid !== undefined && this.retryOnSame) {
      // A replay after GOAWAY/REFUSED_STREAM may go back to the same server on a new session.
      req.avoid = undefined;
      p = this.pool!.pick(req as PickRequest);
    }
    req.avoid = undefined;
    if (!p.ok) {
      const why =
        p.reason === 'full'
          ? `every server of pool ${this.pool!.name} is at maxconn`
          : `no server available in pool ${this.pool!.name}`;
      this.fail(GrpcStatus.UNAVAILABLE, 503, why, 'no_server');
      return;
    }
    this.lease = p;
    this.member = p.member;
    if (this.h1) {
      this.sendH1();
      return;
    }
    const s = this.proxy.upstream.acquire(p.member, this.poolConfig!.timeouts, this);
    if (s !== undefined) this.onSession(s);
    else this.waiting = true;
  }

  retryOnSame = false;

  onSession(s: UpstreamSession): void {
    this.waiting = false;
    if (this.finished || this.responded) {
      s.unreserve();
      return;
    }
    this.session = s;
    const first = !this.attached;
    const endStream = first ? this.stream.endAfterHeaders : this.clientEnded && this.bufBytes === 0;
    const up: UpStream | undefined = s.request(this.outHeaders!, endStream);
    if (up === undefined) {
      this.attemptFailed('refused', s.lastError, NGHTTP2_REFUSED_STREAM);
      return;
    }
    this.up = up;
    up[kX] = this;
    up.on('response', onUpResponse);
    up.on('trailers', onUpTrailers);
    up.on('data', onUpData);
    up.on('end', onUpEnd);
    up.on('close', onUpClose);
    up.on('drain', onUpDrain);
    up.on('error', noop);
    const stream = this.stream;
    if (first) {
      this.attachClient();
    } else {
      // Replay what the first attempt sent, then keep streaming.
      const buf = this.buf!;
      for (let i = 0; i < buf.length; i++) up.write(buf[i]);
      if (this.clientEnded) {
        if (!endStream) up.end();
      } else stream.resume();
    }
  }

  attachClient(): void {
    const stream = this.stream;
    this.attached = true;
    stream.on('data', onClientData);
    stream.on('end', onClientEnd);
    stream.on('drain', onClientDrain);
    // A connect failure before this attempt paused the stream; 'data' alone would not resume it.
    if (stream.isPaused()) stream.resume();
  }

  /**
   * HTTP/2 client → `protocol: h1` pool (not gRPC), through upstream/h1-bridge.ts. Off the
   * hot path (a translation either way), so plain closures are fine here.
   */
  sendH1(): void {
    const h = this.headers;
    const headers = h2ToH1Headers(h);
    const xff = h['x-forwarded-for'];
    headers['x-forwarded-for'] =
      xff === undefined ? this.cs.conn.clientIp : `${xff}, ${this.cs.conn.clientIp}`;
    if (this.route!.requestHeaders !== undefined) applyRules(headers, this.route!.requestHeaders);
    const creq = h1Request(this.member!, this.poolConfig!.timeouts, {
      method: h[':method'] ?? 'GET',
      path: h[':path'] ?? '/',
      headers,
    });
    this.h1req = creq;
    const stream = this.stream;
    creq.on('drain', () => stream.resume());
    creq.on('response', (res: IncomingMessage) => this.onH1Response(creq, res));
    creq.on('error', (e: NodeJS.ErrnoException) => {
      if (this.h1req !== creq || this.finished) return;
      this.h1req = undefined;
      const code = e.code ?? '';
      if (!this.responded && (code === 'ECONNREFUSED' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH')) {
        this.attemptFailed('connect', `${code} ${e.message}`, 0);
      } else if (!this.responded) {
        this.failure = 'reset';
        this.fail(GrpcStatus.UNAVAILABLE, 502, `server ${this.member!.name}: ${e.message}`, 'server_reset');
      } else {
        this.failure = 'reset';
        this.outcome = 'server_reset';
        this.detail = `server ${this.member!.name}: ${e.message}`;
        if (!stream.closed) stream.close(NGHTTP2_INTERNAL_ERROR);
      }
    });
    if (!this.attached) this.attachClient();
    else {
      for (const c of this.buf ?? []) creq.write(c);
      if (!this.clientEnded) stream.resume();
    }
    if (this.clientEnded || stream.endAfterHeaders) creq.end();
  }

  onH1Response(creq: ClientRequest, res: IncomingMessage): void {
    if (this.h1req !== creq || this.finished) {
      res.resume();
      return;
    }
    const stream = this.stream;
    this.buf = null;
    this.status = res.statusCode ?? 502;
    if (stream.destroyed || stream.closed) return;
    this.responded = true;
    const out = h2ResponseHeaders(res);
    if (this.route!.responseHeaders !== undefined) applyRules(out, this.route!.responseHeaders);
    try {
      stream.respond(out, RESPOND_TRAILERS);
    } catch {
      stream.close(NGHTTP2_INTERNAL_ERROR);
      return;
    }
    stream.on('drain', () => res.resume());
    res.on('data', (c: Buffer) => {
      this.bytesOut += c.length;
      if (!stream.write(c)) res.pause();
    });
    res.on('end', () => {
      this.upEnded = true;
      const t = res.trailers;
      let any = false;
      for (const _ in t) {
        any = true;
        break;
      }
      if (any) this.trailers = clientResponseHeaders(t, undefined);
      if (!stream.writableEnded && !stream.destroyed) stream.end();
    });
    res.on('error', () => {});
  }

  h1 = false;
  h1req: ClientRequest | undefined;

  onSessionError(why: H2AcquireFailure, detail: string): void {
    this.waiting = false;
    if (this.finished) return;
    this.attemptFailed(
      'connect',
      `${why === 'timeout' ? 'connect timeout' : 'connect failed'}: ${detail}`,
      0,
    );
  }

  /** The current attempt ended before any response reached the client. */
  attemptFailed(kind: 'connect' | 'refused' | 'lost' | 'reset', detail: string, rst: number): void {
    const goaway = this.session?.draining === true;
    this.up = undefined;
    this.session = undefined;
    if (this.lease?.ok) this.lease.release({ ok: false, failure: kind === 'connect' ? 'connect' : 'reset' });
    this.lease = undefined;
    if (this.canRetry(kind, goaway)) {
      this.retries++;
      this.retryOnSame = kind !== 'connect';
      if (this.avoid === undefined) this.avoid = [];
      this.avoid.push(this.member!);
      if (this.attached) this.stream.pause();
      this.pickAndSend();
      return;
    }
    const server = this.member?.name ?? '?';
    if (kind === 'connect') {
      this.failure = 'connect';
      this.fail(GrpcStatus.UNAVAILABLE, 502, `server ${server}: ${detail}`, 'connect_failure');
    } else if (kind === 'lost') {
      this.failure = 'reset';
      this.fail(
        GrpcStatus.UNAVAILABLE,
        502,
        `server ${server}: connection lost before response`,
        'server_reset',
      );
    } else {
      this.failure = 'reset';
      const code = grpcStatusForRst(rst);
      this.fail(code, 502, `server ${server} reset the stream (HTTP/2 code ${rst})`, 'server_reset');
    }
  }

  private canRetry(kind: 'connect' | 'refused' | 'lost' | 'reset', goaway: boolean): boolean {
    if (this.buf === null || this.responded) return false;
    const r = this.poolConfig!.retries;
    if (kind === 'connect') return this.retries < r.attempts && r.on.includes('connect-failure');
    if (kind !== 'refused') return false;
    // Streams above a GOAWAY's last-stream-id were never processed: replaying them is
    // routine (SPEC §3) even with retries off, once.
    if (goaway && this.retries < Math.max(1, r.attempts)) return true;
    return this.retries < r.attempts && r.on.includes('refused-stream');
  }

  /**
   * Ends the exchange with a gateway-made status: trailers-only for gRPC (PITFALLS: never
   * a bare HTTP error), a short text body otherwise; a stream already answering gets
   * gRPC trailers, or a reset.
   */
  fail(code: number, httpStatus: number, msg: string, outcome: Outcome): void {
    if (this.outcome === 'ok') {
      this.outcome = outcome;
      this.detail = msg;
    }
    const up = this.up;
    if (up !== undefined) {
      this.up = undefined;
      if (!up.closed) up.close(NGHTTP2_CANCEL);
    }
    if (this.waiting && this.member !== undefined) {
      this.proxy.upstream.cancel(this.member, this);
      this.waiting = false;
    }
    if (this.h1req !== undefined) {
      this.h1req.destroy();
      this.h1req = undefined;
    }
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    if (!this.responded) {
      this.responded = true;
      try {
        if (this.grpc) {
          this.status = 200;
          this.grpcStatus = code;
          stream.respond(
            {
              ':status': 200,
              'content-type': 'application/grpc',
              'grpc-status': String(code),
              'grpc-message': encodeGrpcMessage(msg),
            },
            RESPOND_END,
          );
        } else {
          this.status = httpStatus;
          stream.respond({ ':status': httpStatus, 'content-type': 'text/plain; charset=utf-8' });
          stream.end(`${msg}\n`);
        }
      } catch {
        stream.close(NGHTTP2_INTERNAL_ERROR);
        return;
      }
      // RFC 9113 §8.1: a complete response before the whole request may be followed by
      // RST_STREAM(NO_ERROR) so the client stops sending.
      if (!this.clientEnded && !stream.endAfterHeaders) stream.close(NGHTTP2_NO_ERROR);
    } else if (this.grpc && !stream.writableEnded) {
      this.grpcStatus = code;
      this.localTrailers = { 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(msg) };
      stream.end();
      if (!this.clientEnded) stream.once('finish', closeNoError);
    } else {
      stream.close(NGHTTP2_INTERNAL_ERROR);
    }
  }

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.cs.active--;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const up = this.up;
    if (up !== undefined && !up.closed) up.close(NGHTTP2_CANCEL);
    if (this.waiting && this.member !== undefined) this.proxy.upstream.cancel(this.member, this);
    if (this.h1req !== undefined && !this.upEnded) this.h1req.destroy();
    let failure = this.failure;
    if (failure === undefined) {
      if (this.grpc ? this.grpcStatus === GrpcStatus.UNAVAILABLE : this.status >= 502 && this.status <= 504) {
        failure = this.grpc ? 'unavailable' : 'status';
        // A gateway-made 14 (no server) is not the server's fault.
        if (this.outcome !== 'ok') failure = undefined;
      }
    }
    const lease = this.lease;
    if (lease?.ok) {
      lease.release({
        ok: failure === undefined && this.outcome !== 'server_reset',
        failure,
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
      });
    }
    const pc = this.poolConfig;
    this.proxy.ctx.finish({
      proto: this.grpc ? 'grpc' : 'h2',
      listener: this.cs.conn.listener.name,
      route: this.route?.name,
      pool: pc?.name,
      server: this.member?.name,
      client: this.cs.conn.clientAddr,
      method: this.method,
      path: this.path,
      service: this.service,
      host: this.headers[':authority'],
      status: this.status === 0 ? undefined : this.status,
      grpc_status: this.grpcStatus < 0 ? undefined : this.grpcStatus,
      bytes_in: this.bytesIn,
      bytes_out: this.bytesOut,
      duration_ms: Math.round((performance.now() - this.start) * 1000) / 1000,
      outcome: this.outcome,
      detail: this.detail,
      retries: this.retries === 0 ? undefined : this.retries,
    });
  }
}

function closeNoError(this: ServerHttp2Stream): void {
  if (!this.closed) this.close(NGHTTP2_NO_ERROR);
}

// ---- client stream events (this = the client stream) ----

function onStream(stream: ClientStream, headers: IncomingHttpHeaders): void {
  const cs = (stream.session as TaggedSession | undefined)?.[kConn];
  if (cs === undefined) {
    stream.close(NGHTTP2_REFUSED_STREAM);
    return;
  }
  const x = new Exchange(cs, stream, headers);
  stream[kX] = x;
  cs.active++;
  stream.on('close', onClientClose);
  stream.on('error', noop);
  stream.on('wantTrailers', onWantTrailers);
  x.begin();
}

function onClientData(this: ClientStream, chunk: Buffer): void {
  const x = this[kX]!;
  const n = chunk.length;
  x.bytesIn += n;
  const buf = x.buf;
  if (buf !== null) {
    x.bufBytes += n;
    if (x.bufBytes > x.snap.limits.retryBuffer) x.buf = null;
    else buf.push(chunk);
  }
  const up = x.up ?? x.h1req;
  if (up !== undefined) {
    if (!up.write(chunk)) this.pause();
  } else if (!x.finished) {
    this.pause(); // between attempts; the replay writes the buffer
  }
}

function onClientEnd(this: ClientStream): void {
  const x = this[kX]!;
  x.clientEnded = true;
  const up = x.up ?? x.h1req;
  if (up !== undefined && !up.writableEnded) up.end();
}

function onClientDrain(this: ClientStream): void {
  this[kX]!.up?.resume();
}

function onWantTrailers(this: ClientStream): void {
  const x = this[kX]!;
  try {
    this.sendTrailers(x.localTrailers ?? x.trailers ?? EMPTY_TRAILERS);
  } catch {
    this.close(NGHTTP2_INTERNAL_ERROR);
  }
}

function onClientClose(this: ClientStream): void {
  const x = this[kX]!;
  if (x.finished) return;
  const complete = x.upEnded || x.outcome !== 'ok';
  if (!complete) {
    // The client reset or went away mid-call: cancel the backend stream (finish does).
    x.outcome = 'client_reset';
    x.detail = `client closed the stream (HTTP/2 code ${this.rstCode ?? 0})`;
    if (!x.cs.cut) x.cs.countReset(x.snap.limits.h2ResetsPerSecond);
  }
  x.finish();
}

// ---- upstream stream events (this = the upstream stream) ----

function onUpResponse(this: UpStream, headers: IncomingHttpHeaders, flags: number): void {
  const x = this[kX]!;
  if (x.up !== this || x.finished) return;
  x.buf = null;
  x.status = Number(headers[':status']);
  if (x.grpc) {
    const gs = headers['grpc-status'];
    if (gs !== undefined) x.grpcStatus = Number(gs);
  }
  const stream = x.stream;
  if (stream.destroyed || stream.closed) return;
  x.responded = true;
  const out = clientResponseHeaders(headers, x.route!.responseHeaders);
  try {
    if ((flags & NGHTTP2_FLAG_END_STREAM) !== 0) {
      // Trailers-only (a gRPC error) or an empty body.
      x.upEnded = true;
      stream.respond(out, RESPOND_END);
      if (!x.clientEnded && !stream.endAfterHeaders) stream.close(NGHTTP2_NO_ERROR);
    } else {
      stream.respond(out, RESPOND_TRAILERS);
    }
  } catch {
    stream.close(NGHTTP2_INTERNAL_ERROR);
  }
}

function onUpTrailers(this: UpStream, trailers: IncomingHttpHeaders): void {
  const x = this[kX]!;
  if (x.up !== this) return;
  x.trailers = trailers;
  if (x.grpc) {
    const gs = trailers['grpc-status'];
    if (gs !== undefined) x.grpcStatus = Number(gs);
  }
}

function onUpData(this: UpStream, chunk: Buffer): void {
  const x = this[kX]!;
  if (x.up !== this) return;
  x.bytesOut += chunk.length;
  const stream = x.stream;
  if (stream.writableEnded || stream.destroyed) return;
  if (!stream.write(chunk)) this.pause();
}

function onUpDrain(this: UpStream): void {
  const x = this[kX]!;
  if (x.up === this) x.stream.resume();
}

function onUpEnd(this: UpStream): void {
  const x = this[kX]!;
  if (x.up !== this) return;
  // node also ends the readable side when the server resets the stream: that is no end.
  const rst = this.rstCode;
  if (rst !== undefined && rst !== NGHTTP2_NO_ERROR) return;
  x.upEnded = true;
  const stream = x.stream;
  if (x.responded && !stream.writableEnded && !stream.destroyed) stream.end();
}

function onUpClose(this: UpStream): void {
  const x = this[kX]!;
  if (x.up !== this) return;
  x.up = undefined;
  if (x.finished || x.upEnded) return;
  const rst = this.rstCode ?? NGHTTP2_INTERNAL_ERROR;
  const sess = x.session;
  const lost = sess === undefined || sess.closed || sess.session.destroyed;
  if (!x.responded) {
    if (rst === NGHTTP2_REFUSED_STREAM) x.attemptFailed('refused', 'stream refused', rst);
    else if (lost) x.attemptFailed('lost', 'connection lost', rst);
    else x.attemptFailed('reset', 'reset', rst);
    return;
  }
  // Mid-response: the client learns it from a status (gRPC) or the same reset code.
  x.failure = 'reset';
  const server = x.member?.name ?? '?';
  const code = lost ? GrpcStatus.UNAVAILABLE : grpcStatusForRst(rst);
  x.outcome = 'server_reset';
  x.detail = lost ? `server ${server}: connection lost mid-stream` : `server ${server} reset (code ${rst})`;
  if (x.grpc) x.fail(code, 502, x.detail, 'server_reset');
  else if (!x.stream.closed) x.stream.close(rst === NGHTTP2_NO_ERROR ? NGHTTP2_INTERNAL_ERROR : rst);
}

function onTimeout(x: Exchange): void {
  x.timer = undefined;
  if (x.finished) return;
  if (x.grpc) {
    x.fail(
      GrpcStatus.DEADLINE_EXCEEDED,
      504,
      `deadline of ${x.timeoutMs}ms exceeded at the gateway`,
      'timeout',
    );
  } else {
    x.failure = 'timeout';
    x.fail(
      GrpcStatus.DEADLINE_EXCEEDED,
      504,
      `request timeout of ${x.timeoutMs}ms at the gateway`,
      'timeout',
    );
  }
}
