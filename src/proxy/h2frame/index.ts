// Frame-level HTTP/2 and gRPC proxy: client connections and pooled upstream connections
// both speak our own codec (src/codec/http2, src/upstream/h2frame-*.ts) instead of
// node:http2. Every client stream is routed, balanced and forwarded on its own
// (docs/http2-grpc.md): RouteKey, header rules, retries, gRPC status mapping and one
// access record per stream.
//
// Per stream: one Exchange plus one H2Stream per side. DATA payloads go from one socket's
// read buffer to the other socket as slices; a stream's receive window is credited back to
// its sender only when its bytes were written on the other side (onSent → consume).
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import type { Member, Pick, PickRequest, PoolLike } from '../../balancer/types.js';
import {
  encodeGrpcMessage,
  GrpcStatus,
  grpcServiceOf,
  grpcStatusForRst,
  isGrpcContentType,
  parseGrpcTimeout,
} from '../../codec/grpc/index.js';
import { ErrorCode, PREFACE } from '../../codec/http2/constants.js';
import type { HeaderObjectLike, HpackDecoder } from '../../codec/http2/hpack.js';
import type { PoolConfig } from '../../config/runtime.js';
import { msSince } from '../../core/duration.js';
import type { ClientConn, GatewayContext, ListenerSnapshot, ProtocolProxy } from '../../core/proxy.js';
import type { Outcome, RouteKey } from '../../core/types.js';
import type { CompiledRoute } from '../../router/types.js';
import { h1Request, h2ResponseHeaders, h2ToH1Headers } from '../../upstream/h1-bridge.js';
import {
  FrameConn,
  type FrameConnOptions,
  type FrameStreamUser,
  H2Stream,
} from '../../upstream/h2frame-conn.js';
import {
  type FramePool,
  type FrameWaiter,
  type H2AcquireFailure,
  sharedFramePool,
  type UpConn,
} from '../../upstream/h2frame-pool.js';
import { applyRules, cookieValue } from '../http-common/headers.js';
import { refusedReplayAllowed } from '../http-common/retry.js';
import { clientResponseHeaders, headerString, RESPONSE_SKIP, upstreamRequestHeaders } from './headers.js';
import { connectProblem, parseContentLength, requestProblem, trailersProblem } from './validate.js';

// Windows we advertise to clients: large enough for 4 MiB messages to stream without a
// round trip per 64 KiB, and the bound on what one stream can make us hold.
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 16 << 20;
/** Refused streams (over the concurrency limit) a connection may cause before it is cut. */
const MAX_REFUSED = 100;
/** A response queued for a slow client beyond this pauses an HTTP/1 upstream. */
const H1_PAUSE_BYTES = 256 * 1024;
/**
 * Client liveness: a connection with streams open that has sent nothing for this long gets
 * a PING; no byte back within CLIENT_PING_TIMEOUT and it is gone (vanished peer, no FIN),
 * so its streams are cancelled upstream instead of holding backend streams for ever.
 */
const CLIENT_PING_AFTER = 20_000;
const CLIENT_PING_TIMEOUT = 10_000;

type Headers = Record<string, string | string[]>;

export interface H2FrameProxyOptions {
  /** Upstream connection pool (defaults to the process-wide one). */
  upstream?: FramePool;
  /** Client liveness PING: after this much silence with streams open (ms; tests). */
  clientPingAfter?: number;
  /** ...and the connection is dropped when nothing arrives within this (ms; tests). */
  clientPingTimeout?: number;
}

export function createH2FrameProxy(ctx: GatewayContext, opts: H2FrameProxyOptions = {}): ProtocolProxy {
  return new H2FrameProxy(
    ctx,
    opts.upstream ?? sharedFramePool(),
    opts.clientPingAfter ?? CLIENT_PING_AFTER,
    opts.clientPingTimeout ?? CLIENT_PING_TIMEOUT,
  );
}

/** Header object of the block just decoded (duplicates become arrays). */
function headersOf(d: HpackDecoder): Headers {
  const h: Headers = {};
  const names = d.names;
  const values = d.values;
  for (let i = 0; i < d.count; i++) {
    const n = names[i];
    const cur = h[n];
    if (cur === undefined) h[n] = values[i];
    else if (typeof cur === 'string') h[n] = [cur, values[i]];
    else cur.push(values[i]);
  }
  return h;
}

/** One client HTTP/2 connection. */
class ClientH2Conn extends FrameConn {
  readonly proxy: H2FrameProxy;
  readonly conn: ClientConn;
  readonly snapLimits: { h2Streams: number; h2ResetsPerSecond: number };
  active = 0;
  lastStreamId = 0;
  lastActive = Date.now();
  resetWindow = 0;
  resets = 0;
  refused = 0;
  cut = false;
  closing = false;
  // Liveness (sweep): socket.bytesRead at the last sweep, since when it has not moved, and
  // when our PING left (0 = none out). Read from node's counter: nothing per read.
  seenBytes = 0;
  silentSince = Date.now();
  pingSentAt = 0;
  pingTimedOut = false;

  constructor(proxy: H2FrameProxy, conn: ClientConn, opts: FrameConnOptions) {
    super(conn.socket, opts);
    this.proxy = proxy;
    this.conn = conn;
    const lim = conn.listener.current.limits;
    this.snapLimits = { h2Streams: lim.h2Streams, h2ResetsPerSecond: lim.h2ResetsPerSecond };
  }

  protected override lastPeerStream(): number {
    return this.lastStreamId;
  }

  protected onHeaderBlock(id: number, endStream: boolean): void {
    if ((id & 1) === 0) {
      this.connError(ErrorCode.PROTOCOL_ERROR, 'even stream id from a client');
      return;
    }
    const st = this.streams.get(id);
    if (st !== undefined) {
      // Request trailers (RFC 9113 §8.1): must end the stream.
      if (!endStream || st.remoteEnded) {
        this.streamError(st, ErrorCode.PROTOCOL_ERROR);
        return;
      }
      const x = st.user as Exchange;
      const bad = trailersProblem(this.dec);
      if (bad !== undefined) {
        x.malformed(bad);
        return;
      }
      if (x.clen >= 0 && x.bytesIn !== x.clen) {
        x.malformed(`DATA (${x.bytesIn} bytes) does not match "content-length: ${x.clen}"`);
        return;
      }
      x.onClientTrailers(headersOf(this.dec));
      this.remoteEnd(st);
      return;
    }
    if (id <= this.lastStreamId) return; // a stream already closed: the block only updated the table
    this.lastStreamId = id;
    if (this.goawaySent || this.cut) {
      this.writeRst(id, ErrorCode.REFUSED_STREAM);
      return;
    }
    if (this.active >= this.snapLimits.h2Streams) {
      this.writeRst(id, ErrorCode.REFUSED_STREAM);
      if (++this.refused > MAX_REFUSED)
        this.connError(ErrorCode.ENHANCE_YOUR_CALM, 'too many refused streams');
      return;
    }
    const x = new Exchange(this);
    const c = new H2Stream(x, 0, 0);
    x.c = c;
    this.addStream(c, id);
    this.active++;
    if (endStream) c.remoteEnded = true;
    x.begin(this.dec);
  }

  protected override dataUnknown(id: number): void {
    if (id > this.lastStreamId) this.connError(ErrorCode.PROTOCOL_ERROR, 'DATA on an idle stream');
  }

  protected onGoaway(_lastId: number, _code: number): void {
    this.closing = true;
    if (this.active === 0) this.shutdown();
  }

  protected override onConnError(code: number, why: string): void {
    if (code === ErrorCode.ENHANCE_YOUR_CALM) {
      this.proxy.ctx.logger.warn(
        {
          type: 'event',
          event: 'h2_calm',
          client: this.conn.clientAddr,
          listener: this.conn.listener.name,
          why,
        },
        'HTTP/2 client connection cut: GOAWAY(ENHANCE_YOUR_CALM)',
      );
    }
  }

  protected onClosed(): void {
    this.loseAll(0);
    this.proxy.conns.delete(this);
    this.proxy.connGone();
  }

  exchangeDone(): void {
    this.active--;
    if (this.active === 0) {
      this.lastActive = Date.now();
      if ((this.closing || this.goawaySent) && !this.dead) this.shutdown();
    }
  }

  /**
   * Rapid-reset defence (CVE-2023-44487): more than `limits.h2ResetsPerSecond` client
   * resets in a second → GOAWAY(ENHANCE_YOUR_CALM) and the connection is closed; each reset
   * stream was cancelled upstream as it came.
   */
  countReset(): void {
    const now = Date.now();
    if (now - this.resetWindow >= 1000) {
      this.resetWindow = now;
      this.resets = 0;
    }
    const limit = this.snapLimits.h2ResetsPerSecond;
    if (++this.resets <= limit || this.cut) return;
    this.cut = true;
    this.proxy.ctx.logger.warn(
      {
        type: 'event',
        event: 'h2_rapid_reset',
        client: this.conn.clientAddr,
        listener: this.conn.listener.name,
        limit,
      },
      'client reset streams too fast: GOAWAY(ENHANCE_YOUR_CALM)',
    );
    this.writeGoaway(this.lastStreamId, ErrorCode.ENHANCE_YOUR_CALM);
    this.shutdown();
    // Cut at once: what it already sent is not processed further.
    setImmediate(destroySocket, this.socket);
  }
}

function destroySocket(s: { destroyed: boolean; destroy(): void }): void {
  if (!s.destroyed) s.destroy();
}

class H2FrameProxy implements ProtocolProxy {
  readonly ctx: GatewayContext;
  readonly upstream: FramePool;
  readonly conns = new Set<ClientH2Conn>();
  /** Set when a graceful stop's grace ran out: streams ending now were cut by us. */
  cutting = false;
  private drainWaiter: (() => void) | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly pingAfter: number;
  private readonly pingTimeout: number;
  /** Connection options per (h2_streams, header_bytes), built once. */
  private readonly optsCache = new Map<string, FrameConnOptions>();
  readonly pickReq: { hashKey: string | undefined; avoid: Member[] | undefined; avoidIsPreference: boolean } =
    {
      hashKey: undefined,
      avoid: undefined,
      avoidIsPreference: false,
    };

  constructor(ctx: GatewayContext, upstream: FramePool, pingAfter: number, pingTimeout: number) {
    this.ctx = ctx;
    this.upstream = upstream;
    this.pingAfter = pingAfter;
    this.pingTimeout = pingTimeout;
  }

  get activeConnections(): number {
    return this.conns.size;
  }

  handle(conn: ClientConn): void {
    const { socket } = conn;
    // HTTP/2 writes small frames; Nagle + delayed ACK would add up to 40 ms per exchange.
    socket.setNoDelay(true);
    const lim = conn.listener.current.limits;
    const key = `${lim.h2Streams}/${lim.headerBytes}`;
    let opts = this.optsCache.get(key);
    if (opts === undefined) {
      opts = {
        streamWindow: STREAM_WINDOW,
        connWindow: CONNECTION_WINDOW,
        maxHeaderList: lim.headerBytes,
        maxHeaderBlock: Math.max(2 * lim.headerBytes, 16_384),
        maxConcurrentStreams: lim.h2Streams,
        controlPerSecond: 1000,
      };
      this.optsCache.set(key, opts);
    }
    const cs = new ClientH2Conn(this, conn, opts);
    this.conns.add(cs);
    this.startSweep();
    // SPEC §3: our SETTINGS go out at once (some clients wait for them).
    cs.writeSettings(false);
    // The sniffer read the preface, or part of it, or nothing (h2 chosen by TLS ALPN).
    const head = conn.sniff.head;
    cs.prefaceLeft = PREFACE.length;
    if (this.ctx.draining) cs.writeGoaway(0, ErrorCode.NO_ERROR);
    if (head.length > 0) cs.onRead(head);
    if (!cs.dead) cs.startReading();
  }

  connGone(): void {
    if (this.conns.size === 0 && this.drainWaiter !== undefined) this.drainWaiter();
  }

  private startSweep(): void {
    if (this.sweepTimer !== undefined) return;
    const every = Math.max(50, Math.min(1000, this.pingTimeout / 2, this.pingAfter / 2));
    this.sweepTimer = setInterval(sweepClients, every, this);
    this.sweepTimer.unref();
  }

  /**
   * Idle client connections (no open stream for `timeouts.client_idle`) get GOAWAY and
   * close; busy ones that went silent are PINGed and dropped when nothing comes back.
   */
  sweep(): void {
    const now = Date.now();
    for (const cs of this.conns) {
      if (cs.dead) continue;
      const read = cs.socket.bytesRead;
      if (read !== cs.seenBytes) {
        cs.seenBytes = read;
        cs.silentSince = now;
        cs.pingSentAt = 0;
      }
      if (cs.active !== 0) {
        if (cs.pingSentAt !== 0) {
          if (now - cs.pingSentAt >= this.pingTimeout) this.clientGone(cs);
        } else if (now - cs.silentSince >= this.pingAfter) {
          cs.writePing(now >>> 0);
          cs.pingSentAt = now;
        }
        continue;
      }
      const idle = cs.conn.listener.current.timeouts.clientIdle;
      if (idle > 0 && now - cs.lastActive >= idle) {
        cs.writeGoaway(cs.lastStreamId, ErrorCode.NO_ERROR);
        cs.shutdown();
      }
    }
    if (this.conns.size === 0 && this.sweepTimer !== undefined) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  /** A busy client that answered no PING: its streams end as lost (cancelled upstream). */
  private clientGone(cs: ClientH2Conn): void {
    this.ctx.logger.warn(
      {
        type: 'event',
        event: 'h2_client_timeout',
        client: cs.conn.clientAddr,
        listener: cs.conn.listener.name,
        streams: cs.active,
        silent_ms: Date.now() - cs.silentSince,
      },
      'HTTP/2 client sent nothing, not even a PING ack: connection closed',
    );
    cs.pingTimedOut = true;
    cs.socket.destroy();
  }

  async drain(deadline: number): Promise<number> {
    for (const cs of this.conns) {
      if (cs.dead) continue;
      cs.writeGoaway(cs.lastStreamId, ErrorCode.NO_ERROR); // streams in flight finish
      if (cs.active === 0) cs.shutdown();
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
    // Streams still open now are cut by the grace, not reset by their clients.
    const cut = this.conns.size;
    this.cutting = cut > 0;
    for (const cs of this.conns) cs.socket.destroy();
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.upstream.close(false);
    return cut;
  }
}

function sweepClients(p: H2FrameProxy): void {
  p.sweep();
}

/** One client stream and its current upstream attempt. */
class Exchange implements FrameStreamUser, FrameWaiter {
  readonly cs: ClientH2Conn;
  readonly proxy: H2FrameProxy;
  readonly snap: ListenerSnapshot;
  readonly start: number;
  c!: H2Stream;
  headers: Headers = {};
  never: string[] | undefined;
  grpc = false;
  path = '';
  method = '';
  service: string | undefined;
  route: CompiledRoute | undefined;
  pool: PoolLike | undefined;
  poolConfig: PoolConfig | undefined;
  lease: Pick | undefined;
  member: Member | undefined;
  up: UpConn | undefined;
  u: H2Stream | undefined;
  outHeaders: OutgoingHttpHeaders | undefined;
  /** Client DATA not yet handed to an upstream attempt (held by flow control, not credited). */
  pend: Buffer[] | null = null;
  pendBytes = 0;
  /** Request body kept for a retry while no response has started; null once given up. */
  retry: Buffer[] | null = null;
  retryBytes = 0;
  /** Replayed bytes already credited to the client once. */
  creditSkip = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** The request's content-length (-1: none): DATA must add up to it (RFC 9113 §8.1.1). */
  clen = -1;
  status = 0;
  grpcStatus = -1;
  localTrailers: OutgoingHttpHeaders | undefined;
  /** Request trailers (kept for an attempt that starts after they came). */
  reqTrailers: Headers | undefined;
  responded = false;
  upEnded = false;
  finished = false;
  waiting = false;
  retries = 0;
  retryOnSame = false;
  avoid: Member[] | undefined;
  timer: NodeJS.Timeout | undefined;
  timeoutMs = 0;
  outcome: Outcome = 'ok';
  detail: string | undefined;
  failure: 'connect' | 'reset' | 'unavailable' | 'status' | 'timeout' | 'other' | undefined;
  h1 = false;
  h1req: ClientRequest | undefined;
  h1res: IncomingMessage | undefined;
  h1Credit = 0;

  constructor(cs: ClientH2Conn) {
    this.cs = cs;
    this.proxy = cs.proxy;
    this.snap = cs.conn.listener.current;
    this.start = performance.now();
  }

  get clientEnded(): boolean {
    return this.c.remoteEnded;
  }

  begin(d: HpackDecoder): void {
    if (d.oversize) {
      const h = headersOf(d);
      this.headers = h;
      this.path = typeof h[':path'] === 'string' ? h[':path'] : '';
      this.grpc = isGrpcContentType(headerString(h as IncomingHttpHeaders, 'content-type'));
      this.fail(GrpcStatus.RESOURCE_EXHAUSTED, 431, 'request header list too large', 'too_large');
      return;
    }
    const h = headersOf(d);
    this.headers = h;
    this.never = d.neverIndexed;
    // The pseudo-headers are single strings when present: the decoder flags duplicates.
    const path = h[':path'] as string | undefined;
    const method = h[':method'] as string | undefined;
    const ih = h as IncomingHttpHeaders;
    const grpc = isGrpcContentType(headerString(ih, 'content-type'));
    this.grpc = grpc;
    if (method === 'CONNECT') {
      this.connect(d);
      return;
    }
    const bad = requestProblem(d, path);
    if (bad !== undefined) {
      if (path !== undefined) this.path = path;
      if (method !== undefined) this.method = method;
      this.malformed(bad);
      return;
    }
    const clen = parseContentLength(h['content-length']);
    if (clen !== -1) {
      this.clen = clen;
      if (clen === -2 || (this.c.remoteEnded && clen !== 0)) {
        this.path = path!;
        this.method = method!;
        this.malformed(
          clen === -2 ? 'invalid "content-length"' : `"content-length: ${clen}" on a request without DATA`,
        );
        return;
      }
    }
    this.path = path!;
    const conn = this.cs.conn;
    const authority = h[':authority'];
    const key: RouteKey = {
      proto: grpc ? 'grpc' : 'h2',
      source: conn.clientIp,
      sni: conn.tls?.sni,
      host: typeof authority === 'string' ? authority : headerString(ih, 'host'),
      path: path!,
      method: grpc ? path! : method!,
      service: undefined,
      headers: h,
    };
    if (grpc) {
      this.service = grpcServiceOf(path!);
      key.service = this.service;
      this.method = path!;
    } else {
      this.method = method!;
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
      // Config load rejects gRPC routes to such pools; an `http` route can still send a
      // gRPC call here. The access record says why (no log line per request).
      const why = `pool ${pc.name} speaks ${pc.protocol}; ${grpc ? 'gRPC' : 'HTTP/2'} needs an h2 pool`;
      this.fail(GrpcStatus.UNAVAILABLE, 502, why, 'error');
      return;
    }
    const ms = grpc ? parseGrpcTimeout(ih['grpc-timeout']) : this.snap.timeouts.request;
    if (ms > 0) {
      this.timeoutMs = ms;
      this.timer = setTimeout(onTimeout, ms, this);
    }
    this.retry = [];
    if (!this.h1) this.outHeaders = upstreamRequestHeaders(ih, conn.clientIp, route.requestHeaders);
    this.pickAndSend();
  }

  /**
   * A malformed request (RFC 9113 §8.1.1): a stream error PROTOCOL_ERROR, on this stream
   * only. Closing the stream finishes the exchange, which cancels a backend stream already
   * opened (request trailers, a body that contradicts content-length). Each one counts
   * against the rapid-reset budget like a client reset: resets a client provokes from us
   * free its stream slots just the same ("MadeYouReset", CVE-2025-8671).
   */
  malformed(why: string): void {
    if (this.outcome === 'ok') {
      this.outcome = 'bad_request';
      this.detail = `malformed request: ${why}`;
    }
    this.cs.resetStream(this.c, ErrorCode.PROTOCOL_ERROR);
    if (!this.cs.cut) this.cs.countReset();
  }

  /** CONNECT: not proxied. A well-formed one gets 405 (as on HTTP/1), a malformed one a reset. */
  private connect(d: HpackDecoder): void {
    this.method = 'CONNECT';
    this.grpc = false;
    const h = this.headers;
    const bad = connectProblem(d);
    if (bad !== undefined) {
      this.malformed(bad);
      return;
    }
    this.path = h[':authority'] as string;
    this.fail(GrpcStatus.UNIMPLEMENTED, 405, 'CONNECT not supported', 'bad_request');
  }

  private hashKey(): string | undefined {
    const hash = this.poolConfig!.hash;
    if (hash === undefined) return undefined;
    const ih = this.headers as IncomingHttpHeaders;
    switch (hash.kind) {
      case 'source':
        return this.cs.conn.clientIp;
      case 'header':
      case 'grpc-metadata':
        return headerString(ih, hash.name);
      case 'cookie':
        return cookieValue(ih.cookie, hash.name);
      default:
        return undefined;
    }
  }

  pickAndSend(): void {
    const req = this.proxy.pickReq;
    req.hashKey = this.hashKey();
    req.avoid = this.avoid;
    // A replay after GOAWAY/REFUSED_STREAM may go back to the same server on a new connection.
    req.avoidIsPreference = this.retryOnSame;
    const p = this.pool!.pick(req as PickRequest);
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
    const c = this.proxy.upstream.acquire(p.member, this.poolConfig!.timeouts, this);
    if (c !== undefined) this.onConn(c);
    else this.waiting = true;
  }

  onConn(up: UpConn): void {
    this.waiting = false;
    if (this.finished || this.responded) {
      up.unreserve();
      return;
    }
    const first = this.retries === 0;
    if (!first && this.retry === null) {
      // The body grew past limits.retry_buffer while waiting for this attempt: no replay.
      up.unreserve();
      this.fail(GrpcStatus.UNAVAILABLE, 502, 'request body too large to replay on another server', 'error');
      return;
    }
    // What this attempt must send: everything kept for a replay, or what waited for the first.
    const body = first ? this.pend : this.retry;
    const bodyBytes = first ? this.pendBytes : this.retryBytes;
    const tr = this.reqTrailers;
    const endStream = this.clientEnded && bodyBytes === 0 && tr === undefined;
    const u = up.open(this, this.outHeaders!, endStream, this.never);
    if (u === undefined) {
      this.attemptFailed('refused', up.lastError, ErrorCode.REFUSED_STREAM, true);
      return;
    }
    this.up = up;
    this.u = u;
    if (!first) this.creditSkip = this.retryBytes - this.pendBytes;
    this.pend = null;
    this.pendBytes = 0;
    if (body !== null && bodyBytes > 0) {
      for (let i = 0; i < body.length; i++) {
        up.sendData(u, body[i], this.clientEnded && tr === undefined && i === body.length - 1);
        if (this.u !== u) return;
      }
    }
    if (tr !== undefined) up.sendTrailers(u, tr);
  }

  onConnError(why: H2AcquireFailure, detail: string): void {
    this.waiting = false;
    if (this.finished) return;
    this.attemptFailed(
      'connect',
      `${why === 'timeout' ? 'connect timeout' : 'connect failed'}: ${detail}`,
      0,
      false,
    );
  }

  /** The current attempt ended before any response reached the client. */
  attemptFailed(
    kind: 'connect' | 'refused' | 'lost' | 'reset',
    detail: string,
    rst: number,
    goaway: boolean,
  ): void {
    this.up = undefined;
    this.u = undefined;
    if (this.lease?.ok) this.lease.release({ ok: false, failure: kind === 'connect' ? 'connect' : 'reset' });
    this.lease = undefined;
    if (this.canRetry(kind, goaway)) {
      this.retries++;
      this.retryOnSame = kind !== 'connect';
      if (this.avoid === undefined) this.avoid = [];
      this.avoid.push(this.member!);
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
    if (this.retry === null || this.responded || this.finished) return false;
    const r = this.poolConfig!.retries;
    if (kind === 'connect') return this.retries < r.attempts && r.on.includes('connect-failure');
    return kind === 'refused' && refusedReplayAllowed(r, this.retries, goaway);
  }

  // ---- FrameStreamUser: both sides

  onHeaders(s: H2Stream, d: HpackDecoder, endStream: boolean): void {
    if (s !== this.u || this.finished) return;
    const c = this.c;
    // Read straight from the decoder's arrays: the common response is forwarded without
    // building a header object (fewer short-lived objects, fewer GC pauses).
    const names = d.names;
    const values = d.values;
    if (!this.responded) {
      this.retry = null;
      this.creditSkip = 0;
      for (let i = 0; i < d.count; i++) {
        const n = names[i];
        if (n === ':status') this.status = Number(values[i]);
        else if (n === 'grpc-status' && this.grpc) this.grpcStatus = Number(values[i]);
      }
      if (c.closed) return;
      this.responded = true;
      if (endStream) {
        // Trailers-only (a gRPC error) or an empty body; RFC 9113 §8.1: a complete response
        // before the whole request is followed by RST_STREAM(NO_ERROR).
        this.upEnded = true;
        if (!c.remoteEnded) c.rstOnEnd = true;
      }
      const rules = this.route!.responseHeaders;
      if (rules === undefined) this.cs.sendHeaderList(c, d, RESPONSE_SKIP, endStream);
      else {
        const out = clientResponseHeaders(headersOf(d) as IncomingHttpHeaders, rules);
        this.cs.sendHeaders(c, out as HeaderObjectLike, endStream, d.neverIndexed);
      }
      return;
    }
    // Trailers (grpc-status, grpc-message, -bin metadata) pass untouched.
    if (this.grpc) {
      for (let i = 0; i < d.count; i++) if (names[i] === 'grpc-status') this.grpcStatus = Number(values[i]);
    }
    this.upEnded = true;
    if (this.localTrailers !== undefined || c.closed || c.localEnded) return;
    // Behind queued DATA they wait as an object; otherwise they go out now.
    if (c.q !== null) this.cs.sendTrailers(c, headersOf(d));
    else this.cs.sendHeaderList(c, d, undefined, true);
  }

  onData(s: H2Stream, data: Buffer, endStream: boolean): void {
    const n = data.length;
    if (s === this.c) {
      this.bytesIn += n;
      if (this.clen >= 0 && (this.bytesIn > this.clen || (endStream && this.bytesIn !== this.clen))) {
        this.malformed(
          `DATA (${this.bytesIn}${endStream ? '' : '+'} bytes) does not match "content-length: ${this.clen}"`,
        );
        return;
      }
      const retry = this.retry;
      if (retry !== null && n > 0) {
        this.retryBytes += n;
        if (this.retryBytes > this.snap.limits.retryBuffer) this.retry = null;
        else retry.push(data);
      }
      const u = this.u;
      if (u !== undefined) {
        this.up!.sendData(u, data, endStream);
      } else if (this.h1req !== undefined) {
        this.h1Write(data, endStream);
      } else if (this.finished || this.responded || this.outcome !== 'ok') {
        this.cs.consume(s, n); // nobody will read it
      } else {
        // Between attempts or before the first: held, and not credited until sent.
        if (n > 0) {
          if (this.pend === null) this.pend = [];
          this.pend.push(data);
          this.pendBytes += n;
        }
      }
      return;
    }
    if (s !== this.u) return;
    this.bytesOut += n;
    if (endStream) this.upEnded = true;
    const c = this.c;
    if (c.closed || c.localEnded || this.localTrailers !== undefined) {
      this.up!.consume(s, n);
      return;
    }
    this.cs.sendData(c, data, endStream);
  }

  onClientTrailers(t: Headers): void {
    this.reqTrailers = t;
    if (this.u !== undefined) this.up!.sendTrailers(this.u, t);
    else if (this.h1req !== undefined && !this.h1req.writableEnded) this.h1req.end();
  }

  onSent(s: H2Stream, n: number): void {
    if (s === this.c) {
      // Response bytes went to the client: credit the upstream stream.
      const u = this.u;
      if (u !== undefined) this.up!.consume(u, n);
      else if (this.h1res?.isPaused() && (s.q === null || s.qBytes < H1_PAUSE_BYTES)) this.h1res.resume();
      return;
    }
    // Request bytes went upstream: credit the client (not twice for a replay).
    let k = n;
    if (this.creditSkip > 0) {
      const skip = Math.min(this.creditSkip, k);
      this.creditSkip -= skip;
      k -= skip;
    }
    if (k > 0) this.cs.consume(this.c, k);
  }

  onReset(s: H2Stream, code: number): void {
    if (s === this.c) {
      if (this.finished) return;
      const complete = this.upEnded || this.outcome !== 'ok';
      if (!complete) {
        // The client reset mid-call: finish cancels the backend stream.
        this.outcome = 'client_reset';
        this.detail = `client closed the stream (HTTP/2 code ${code})`;
        if (!this.cs.cut) this.cs.countReset();
      }
      return;
    }
    if (s !== this.u) return;
    this.u = undefined;
    if (this.finished) return;
    const c = this.c;
    if (this.upEnded) {
      // The server finished and then reset (NO_ERROR): stop the client's request body too.
      if (!c.closed && !c.remoteEnded) {
        if (c.localEnded) this.cs.resetStream(c, ErrorCode.NO_ERROR);
        else c.rstOnEnd = true;
      }
      return;
    }
    if (!this.responded) {
      if (code === ErrorCode.REFUSED_STREAM)
        this.attemptFailed('refused', 'stream refused', code, this.up!.draining);
      else this.attemptFailed('reset', 'reset', code, false);
      return;
    }
    const server = this.member?.name ?? '?';
    this.failure = 'reset';
    this.outcome = 'server_reset';
    this.detail = `server ${server} reset (code ${code})`;
    if (this.grpc) this.fail(grpcStatusForRst(code), 502, this.detail, 'server_reset');
    else if (!c.closed) this.cs.resetStream(c, code === ErrorCode.NO_ERROR ? ErrorCode.INTERNAL_ERROR : code);
  }

  onLost(s: H2Stream, refused: boolean): void {
    if (s === this.c) {
      if (!this.finished && !this.upEnded && this.outcome === 'ok') {
        if (this.proxy.cutting) {
          this.outcome = 'cut';
          this.detail = 'cut when global.grace ran out';
        } else if (this.cs.pingTimedOut) {
          this.outcome = 'timeout';
          this.detail = 'client silent, PING unanswered';
        } else {
          this.outcome = 'client_reset';
          this.detail = 'client connection closed';
        }
      }
      return;
    }
    if (s !== this.u) return;
    this.u = undefined;
    if (this.finished || this.upEnded) return;
    if (!this.responded) {
      if (refused)
        this.attemptFailed('refused', 'above GOAWAY last-stream-id', ErrorCode.REFUSED_STREAM, true);
      else this.attemptFailed('lost', 'connection lost', ErrorCode.INTERNAL_ERROR, false);
      return;
    }
    const server = this.member?.name ?? '?';
    this.failure = 'reset';
    this.outcome = 'server_reset';
    this.detail = `server ${server}: connection lost mid-stream`;
    if (this.grpc) this.fail(GrpcStatus.UNAVAILABLE, 502, this.detail, 'server_reset');
    else if (!this.c.closed) this.cs.resetStream(this.c, ErrorCode.INTERNAL_ERROR);
  }

  onStreamError(s: H2Stream, code: number): void {
    if (s === this.c) {
      if (!this.finished && this.outcome === 'ok') {
        this.outcome = 'bad_request';
        this.detail = `client broke HTTP/2 on the stream (code ${code})`;
      }
      return;
    }
    // The server broke the protocol on its stream: handled as a reset with that code.
    this.onReset(s, code);
  }

  onBadHeaders(s: H2Stream, why: string): void {
    if (s !== this.u || this.finished) return;
    // A broken server: like a reset before the response (14 / 502), or, once the response
    // started, gRPC trailers with 14 or a reset of the client stream. The connection
    // resets the server's stream (PROTOCOL_ERROR) right after.
    this.u = undefined;
    this.failure = 'reset';
    this.fail(
      GrpcStatus.UNAVAILABLE,
      502,
      `server ${this.member?.name ?? '?'} sent a malformed response: ${why}`,
      'server_reset',
    );
  }

  onClose(s: H2Stream): void {
    if (s === this.c) this.finish();
    else if (s === this.u) this.u = undefined;
  }

  // ---- HTTP/2 client → protocol: h1 pool (off the hot path: closures are fine here)

  sendH1(): void {
    const h = this.headers as IncomingHttpHeaders;
    const headers = h2ToH1Headers(h);
    const xff = h['x-forwarded-for'];
    const ip = this.cs.conn.clientIp;
    headers['x-forwarded-for'] =
      xff === undefined ? ip : `${Array.isArray(xff) ? xff.join(', ') : xff}, ${ip}`;
    if (this.route!.requestHeaders !== undefined) applyRules(headers, this.route!.requestHeaders);
    const creq = h1Request(this.member!, this.poolConfig!.timeouts, {
      method: typeof h[':method'] === 'string' ? h[':method'] : 'GET',
      path: typeof h[':path'] === 'string' ? h[':path'] : '/',
      headers,
    });
    this.h1req = creq;
    creq.on('drain', () => {
      const k = this.h1Credit;
      this.h1Credit = 0;
      if (k > 0) this.cs.consume(this.c, k);
    });
    creq.on('response', (res: IncomingMessage) => this.onH1Response(creq, res));
    creq.on('error', (e: NodeJS.ErrnoException) => {
      if (this.h1req !== creq || this.finished) return;
      this.h1req = undefined;
      const code = e.code ?? '';
      if (!this.responded && (code === 'ECONNREFUSED' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH')) {
        this.attemptFailed('connect', `${code} ${e.message}`, 0, false);
      } else if (!this.responded) {
        this.failure = 'reset';
        this.fail(GrpcStatus.UNAVAILABLE, 502, `server ${this.member!.name}: ${e.message}`, 'server_reset');
      } else {
        this.failure = 'reset';
        this.outcome = 'server_reset';
        this.detail = `server ${this.member!.name}: ${e.message}`;
        if (!this.c.closed) this.cs.resetStream(this.c, ErrorCode.INTERNAL_ERROR);
      }
    });
    const body = this.retries === 0 ? this.pend : this.retry;
    this.pend = null;
    this.pendBytes = 0;
    if (body !== null) for (const b of body) this.h1Write(b, false);
    if (this.clientEnded) creq.end();
  }

  private h1Write(data: Buffer, end: boolean): void {
    const creq = this.h1req!;
    if (data.length > 0) {
      if (creq.write(data)) this.cs.consume(this.c, data.length);
      else this.h1Credit += data.length;
    }
    if (end) creq.end();
  }

  onH1Response(creq: ClientRequest, res: IncomingMessage): void {
    if (this.h1req !== creq || this.finished) {
      res.resume();
      return;
    }
    const c = this.c;
    this.retry = null;
    this.status = res.statusCode ?? 502;
    if (c.closed) return;
    this.responded = true;
    this.h1res = res;
    const out = h2ResponseHeaders(res);
    if (this.route!.responseHeaders !== undefined) applyRules(out, this.route!.responseHeaders);
    this.cs.sendHeaders(c, out as HeaderObjectLike, false);
    res.on('data', (chunk: Buffer) => {
      this.bytesOut += chunk.length;
      if (c.closed) return;
      this.cs.sendData(c, chunk, false);
      if (c.q !== null && c.qBytes >= H1_PAUSE_BYTES) res.pause();
    });
    res.on('end', () => {
      this.upEnded = true;
      if (c.closed) return;
      const t = res.trailers;
      let any = false;
      for (const _ in t) {
        any = true;
        break;
      }
      if (any) this.cs.sendTrailers(c, clientResponseHeaders(t, undefined) as HeaderObjectLike);
      else this.cs.endStream(c);
    });
    res.on('error', () => {});
  }

  /**
   * Ends the exchange with a gateway-made status: trailers-only for gRPC (never a bare HTTP
   * error), a short text body otherwise; a stream already answering gets gRPC trailers, or
   * a reset.
   */
  fail(code: number, httpStatus: number, msg: string, outcome: Outcome): void {
    if (this.outcome === 'ok') {
      this.outcome = outcome;
      this.detail = msg;
    }
    const u = this.u;
    if (u !== undefined) {
      this.u = undefined;
      if (!u.closed) this.up!.resetStream(u, ErrorCode.CANCEL);
    }
    if (this.waiting && this.member !== undefined) {
      this.proxy.upstream.cancel(this.member, this);
      this.waiting = false;
    }
    if (this.h1req !== undefined) {
      this.h1req.destroy();
      this.h1req = undefined;
    }
    const c = this.c;
    if (c.closed) return;
    // RFC 9113 §8.1: a complete response before the whole request is followed by
    // RST_STREAM(NO_ERROR) so the client stops sending.
    if (!c.remoteEnded) c.rstOnEnd = true;
    if (!this.responded) {
      this.responded = true;
      if (this.grpc) {
        this.status = 200;
        this.grpcStatus = code;
        this.cs.sendHeaders(
          c,
          {
            ':status': '200',
            'content-type': 'application/grpc',
            'grpc-status': String(code),
            'grpc-message': encodeGrpcMessage(msg),
          },
          true,
        );
      } else {
        this.status = httpStatus;
        this.cs.sendHeaders(
          c,
          { ':status': String(httpStatus), 'content-type': 'text/plain; charset=utf-8' },
          false,
        );
        this.cs.sendData(c, Buffer.from(`${msg}\n`), true);
      }
    } else if (this.grpc && !c.localEnded && !c.qEnd) {
      this.grpcStatus = code;
      this.localTrailers = { 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(msg) };
      this.cs.sendTrailers(c, this.localTrailers as HeaderObjectLike);
    } else {
      this.cs.resetStream(c, ErrorCode.INTERNAL_ERROR);
    }
  }

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const u = this.u;
    if (u !== undefined) {
      this.u = undefined;
      if (!u.closed) this.up!.resetStream(u, ErrorCode.CANCEL);
    }
    if (this.waiting && this.member !== undefined) this.proxy.upstream.cancel(this.member, this);
    if (this.h1req !== undefined && !this.upEnded) this.h1req.destroy();
    if (this.h1res !== undefined && !this.upEnded) this.h1res.destroy();
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
    const authority = this.headers[':authority'];
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
      host: typeof authority === 'string' ? authority : undefined,
      status: this.status === 0 ? undefined : this.status,
      grpc_status: this.grpcStatus < 0 ? undefined : this.grpcStatus,
      bytes_in: this.bytesIn,
      bytes_out: this.bytesOut,
      duration_ms: msSince(this.start),
      outcome: this.outcome,
      detail: this.detail,
      retries: this.retries === 0 ? undefined : this.retries,
    });
    this.cs.exchangeDone();
  }
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
