// Pooled upstream HTTP/2 connections speaking our own codec (h2frame-conn.ts): the one
// upstream HTTP/2 pool, used by the frame-level proxy (src/proxy/h2frame) and by the HTTP/1
// proxy for HTTP/1 requests to h2 pools (src/proxy/http1/h2-bridge.ts). Policy:
// per server, reuse ready connections while they have stream slots under the server's
// SETTINGS_MAX_CONCURRENT_STREAMS, open another when all are full; on GOAWAY stop using a
// connection, let its streams finish and hand the ones above last-stream-id back as
// "refused" (never processed: the caller replays them); PING each connection and drop it
// when the ack does not come; close connections idle past `timeouts.serverIdle`.
import net from 'node:net';
import { ErrorCode, PREFACE } from '../codec/http2/constants.js';
import { fieldProblem, type HeaderObjectLike, type HpackDecoder, Pseudo } from '../codec/http2/hpack.js';
import { FrameConn, type FrameConnOptions, type FrameStreamUser, H2Stream } from './h2frame-conn.js';

/** Where to connect: a balancer Member satisfies this. Connections are keyed by this object. */
export interface H2Target {
  readonly host: string;
  readonly port: number;
}

export interface H2PoolTimeouts {
  connect: number;
  serverIdle: number;
}

/** Why an acquire failed: the server never saw the request, so another server may be tried. */
export type H2AcquireFailure = 'connect' | 'timeout' | 'closed';

/** Gets the result of an acquire that could not be served at once. */
export interface FrameWaiter {
  /** A stream slot on `c` is reserved: call `c.open()` or `c.unreserve()`. */
  onConn(c: UpConn): void;
  onConnError(why: H2AcquireFailure, detail: string): void;
}

export interface FramePoolOptions {
  pingInterval?: number;
  pingTimeout?: number;
  /** Stream window we advertise to servers (bytes). */
  streamWindow?: number;
  /** Connection window we advertise to servers (bytes). */
  connWindow?: number;
  /** Response header list bound. */
  maxHeaderList?: number;
}

const MAX_STREAMS_CAP = 1000;
const MAX_STREAM_ID = 0x7fff_ffff;

/** One connection to one server. */
export class UpConn extends FrameConn {
  readonly group: ServerConns;
  /** Streams open or reserved. */
  active = 0;
  maxStreams = 100;
  ready = false;
  /** GOAWAY received or sent, idle-closing, or out of ids: no new streams. */
  draining = false;
  removed = false;
  nextId = 1;
  idleSince: number;
  pingSentAt = 0;
  pingAckAt: number;
  connectTimer: NodeJS.Timeout | undefined;
  lastError = '';
  goawayLastId = MAX_STREAM_ID;

  constructor(group: ServerConns, socket: net.Socket, opts: FrameConnOptions, now: number) {
    super(socket, opts);
    this.group = group;
    this.idleSince = now;
    this.pingAckAt = now;
  }

  get available(): boolean {
    return this.ready && !this.draining && !this.dead && this.active < this.maxStreams;
  }

  /**
   * Opens a stream on the slot acquire() reserved and sends its HEADERS. Returns undefined
   * when the connection can no longer take it (closed or draining since): the slot is given
   * back and `lastError` says why; the caller may retry elsewhere (never sent).
   */
  open(
    user: FrameStreamUser,
    headers: HeaderObjectLike,
    endStream: boolean,
    never?: readonly string[],
  ): H2Stream | undefined {
    if (this.dead || this.goawayReceived || this.nextId > MAX_STREAM_ID) {
      this.lastError = this.dead ? 'connection closed' : 'connection draining';
      this.draining = true;
      this.unreserve();
      return undefined;
    }
    const st = new H2Stream(user, 0, 0);
    this.addStream(st, this.nextId);
    this.nextId += 2;
    this.sendHeaders(st, headers, endStream, never);
    return st;
  }

  /** Gives back a slot reserved by acquire() but not used. */
  unreserve(): void {
    this.slotDone();
  }

  private slotDone(): void {
    this.active--;
    if (this.active === 0) {
      this.idleSince = Date.now();
      if (this.draining && this.ready && !this.dead) {
        this.group.remove(this);
        this.writeGoaway(0, ErrorCode.NO_ERROR);
        this.shutdown();
        return;
      }
    }
    this.group.slotFreed(this);
  }

  protected override streamClosed(_st: H2Stream): void {
    this.slotDone();
  }

  protected onHeaderBlock(id: number, endStream: boolean): void {
    const st = this.streams.get(id);
    if (st === undefined) return; // a stream we reset: the block only updated the table
    const d = this.dec;
    // Numbers the decoder left (RFC 9113 §8.2, §8.3): response headers carry :status and
    // no other pseudo-header; trailers none; every field name and value well formed.
    if (d.fieldError !== 0 || d.pseudo !== (st.gotHeaders ? 0 : Pseudo.STATUS)) {
      st.user.onBadHeaders(st, responseProblem(d, st.gotHeaders));
      this.resetStream(st, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    if (
      !st.gotHeaders &&
      !endStream &&
      d.count > 0 &&
      d.names[0] === ':status' &&
      d.values[0].charCodeAt(0) === 49
    ) {
      return; // 1xx informational: the final response follows
    }
    st.gotHeaders = true;
    st.user.onHeaders(st, d, endStream);
    if (endStream && !st.closed) this.remoteEnd(st);
  }

  protected onGoaway(lastId: number, _code: number): void {
    // Routine (max connection age, server restart): stop using it, do not fail the server.
    this.draining = true;
    this.goawayLastId = lastId;
    this.group.ensureCapacity();
    const above: H2Stream[] = [];
    for (const st of this.streams.values()) if (st.id > lastId) above.push(st);
    for (const st of above) this.loseOne(st, true);
  }

  private loseOne(st: H2Stream, refused: boolean): void {
    if (st.closed) return;
    st.localEnded = true;
    st.remoteEnded = true;
    st.q = null;
    st.user.onLost(st, refused);
    this.closeStream(st);
  }

  protected override onSettings(first: boolean): void {
    const m = this.peerMaxStreams;
    this.maxStreams = Math.min(m, MAX_STREAMS_CAP);
    if (first) this.group.connReady(this);
    else this.group.slotFreed(this);
  }

  protected override onPingAck(): void {
    this.pingSentAt = 0;
    this.pingAckAt = Date.now();
  }

  protected override onConnError(_code: number, why: string): void {
    this.lastError = why;
    this.draining = true;
  }

  protected onClosed(): void {
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    if (!this.ready)
      this.group.failConnecting(this, 'connect', this.lastError || 'connection closed before SETTINGS');
    this.group.remove(this);
    this.loseAll(this.goawayLastId);
  }
}

/** Why a response block is malformed (only called when it is). */
function responseProblem(d: HpackDecoder, trailers: boolean): string {
  if (d.fieldError !== 0) return fieldProblem(d);
  if (trailers) return 'pseudo-header field in trailers';
  if ((d.pseudo & Pseudo.STATUS) === 0) return 'response without ":status"';
  return 'request pseudo-header field in a response';
}

function onUpSocketError(this: net.Socket & { upConn?: UpConn }, e: Error): void {
  const c = this.upConn;
  if (c !== undefined && c.lastError === '') c.lastError = e.message;
}

function onConnectTimeout(c: UpConn): void {
  c.connectTimer = undefined;
  if (!c.ready) c.group.failConnecting(c, 'timeout', `connect timeout after ${c.group.timeouts.connect}ms`);
}

/** All connections to one server. */
export class ServerConns {
  readonly pool: FramePool;
  readonly target: H2Target;
  readonly conns: UpConn[] = [];
  readonly waiters: FrameWaiter[] = [];
  connecting = 0;
  timeouts: H2PoolTimeouts;

  constructor(pool: FramePool, target: H2Target, timeouts: H2PoolTimeouts) {
    this.pool = pool;
    this.target = target;
    this.timeouts = timeouts;
  }

  slotFreed(c: UpConn): void {
    while (this.waiters.length > 0 && c.available) {
      c.active++;
      this.waiters.shift()!.onConn(c);
    }
  }

  connReady(c: UpConn): void {
    if (c.connectTimer !== undefined) clearTimeout(c.connectTimer);
    c.connectTimer = undefined;
    if (c.ready || c.removed) return;
    c.ready = true;
    this.connecting--;
    this.slotFreed(c);
    this.ensureCapacity();
  }

  /** Starts enough connections for the waiters no connecting one will take. */
  ensureCapacity(): void {
    while (this.waiters.length > this.connecting * 100) this.connect();
  }

  connect(): void {
    const { target, pool } = this;
    const socket = net.connect({ host: target.host, port: target.port, noDelay: true });
    const c = new UpConn(this, socket, pool.connOpts, Date.now());
    (socket as net.Socket & { upConn?: UpConn }).upConn = c;
    socket.on('error', onUpSocketError);
    this.connecting++;
    this.conns.push(c);
    pool.all.add(c);
    pool.startSweep();
    c.connectTimer = setTimeout(onConnectTimeout, this.timeouts.connect, c);
    c.writeRaw(PREFACE);
    c.writeSettings(true);
    c.startReading();
    // Idle connections must not keep the process alive (tests, graceful stop).
    socket.unref();
  }

  failConnecting(c: UpConn, why: H2AcquireFailure, detail: string): void {
    if (c.removed) return;
    if (c.connectTimer !== undefined) clearTimeout(c.connectTimer);
    c.connectTimer = undefined;
    this.connecting--;
    this.remove(c);
    c.socket.destroy();
    const keep = this.connecting * 100;
    if (this.waiters.length > keep) {
      const failed = this.waiters.splice(keep);
      for (const w of failed) w.onConnError(why, detail);
    }
  }

  remove(c: UpConn): void {
    if (c.removed) return;
    c.removed = true;
    c.draining = true;
    const i = this.conns.indexOf(c);
    if (i >= 0) this.conns.splice(i, 1);
    this.pool.all.delete(c);
    if (this.conns.length === 0 && this.waiters.length === 0) this.pool.groups.delete(this.target);
  }
}

export class FramePool {
  readonly groups = new Map<H2Target, ServerConns>();
  readonly all = new Set<UpConn>();
  readonly pingInterval: number;
  readonly pingTimeout: number;
  readonly connOpts: FrameConnOptions;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(opts: FramePoolOptions = {}) {
    this.pingInterval = opts.pingInterval ?? 10_000;
    this.pingTimeout = opts.pingTimeout ?? 5_000;
    const maxHeaderList = opts.maxHeaderList ?? 256 * 1024;
    this.connOpts = {
      streamWindow: opts.streamWindow ?? 1 << 20,
      connWindow: opts.connWindow ?? 16 << 20,
      maxHeaderList,
      maxHeaderBlock: maxHeaderList,
      maxConcurrentStreams: 0,
      controlPerSecond: 1000,
    };
  }

  /**
   * Reserves a stream slot on a connection to `target`: returns it at once when one has a
   * free slot (the hot path, no allocation), else undefined and `waiter` hears later.
   */
  acquire(target: H2Target, timeouts: H2PoolTimeouts, waiter: FrameWaiter): UpConn | undefined {
    let g = this.groups.get(target);
    if (g === undefined) {
      g = new ServerConns(this, target, timeouts);
      this.groups.set(target, g);
    } else {
      g.timeouts = timeouts;
      const cs = g.conns;
      for (let i = 0; i < cs.length; i++) {
        const c = cs[i];
        if (c.available) {
          c.active++;
          return c;
        }
      }
    }
    g.waiters.push(waiter);
    g.ensureCapacity();
    return undefined;
  }

  /** Withdraws a waiter (its client went away first). */
  cancel(target: H2Target, waiter: FrameWaiter): void {
    const g = this.groups.get(target);
    if (g === undefined) return;
    const i = g.waiters.indexOf(waiter);
    if (i >= 0) g.waiters.splice(i, 1);
  }

  /** Connections (ready or connecting) to a target, or all, for stats and tests. */
  sessionCount(target?: H2Target): number {
    if (target === undefined) return this.all.size;
    return this.groups.get(target)?.conns.length ?? 0;
  }

  startSweep(): void {
    if (this.sweepTimer !== undefined) return;
    const every = Math.max(200, Math.min(1000, this.pingTimeout / 2));
    this.sweepTimer = setInterval(sweep, every, this);
    this.sweepTimer.unref();
  }

  /** Idle close and PING liveness for every connection, on one timer. */
  sweep(): void {
    const now = Date.now();
    for (const c of this.all) {
      if (!c.ready || c.dead) continue;
      if (c.active === 0 && now - c.idleSince >= c.group.timeouts.serverIdle) {
        c.draining = true;
        c.group.remove(c);
        c.writeGoaway(0, ErrorCode.NO_ERROR);
        c.shutdown();
        continue;
      }
      if (c.pingSentAt !== 0) {
        if (now - c.pingSentAt > this.pingTimeout) {
          // Dead peer or a black-holed path: its streams fail (replayed or 14).
          c.lastError = 'upstream PING timeout';
          c.group.remove(c);
          c.socket.destroy();
        }
      } else if (now - c.pingAckAt >= this.pingInterval && !c.draining) {
        c.writePing(now >>> 0);
        c.pingSentAt = now;
      }
    }
    if (this.all.size === 0 && this.sweepTimer !== undefined) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  /** Closes every connection: gracefully (GOAWAY, streams finish) or at once. */
  close(force = false): void {
    for (const c of [...this.all]) {
      c.group.remove(c);
      if (force) c.socket.destroy();
      else if (c.active === 0) {
        c.writeGoaway(0, ErrorCode.NO_ERROR);
        c.shutdown();
      } else c.draining = true;
    }
    for (const g of this.groups.values()) {
      for (const w of g.waiters.splice(0)) w.onConnError('closed', 'gateway stopping');
    }
    this.groups.clear();
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }
}

function sweep(p: FramePool): void {
  p.sweep();
}

let shared: FramePool | undefined;

/** The process-wide pool (the HTTP/2 proxy and the HTTP/1 → h2 bridge share it). */
export function sharedFramePool(): FramePool {
  if (shared === undefined) shared = new FramePool();
  return shared;
}
