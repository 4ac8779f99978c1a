// Pooled node:http2 client sessions to backend servers, used by the HTTP/1 proxy for HTTP/1
// requests sent to h2 pools (the HTTP/2 proxy has its own frame-level pool, h2frame-pool.ts).
//
// Per server: reuse ready sessions while they have stream slots under the server's
// SETTINGS_MAX_CONCURRENT_STREAMS, open another session when all are full, stop using a
// session on GOAWAY (its streams finish; nghttp2 closes the ones above last-stream-id with
// REFUSED_STREAM, which the caller may replay), PING each session and drop it when the
// ack does not come back, close sessions idle past `timeouts.serverIdle`.
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import net from 'node:net';

/** Where to connect: a balancer Member satisfies this. Sessions are keyed by this object. */
export interface H2Target {
  readonly host: string;
  readonly port: number;
}

export interface H2PoolTimeouts {
  connect: number;
  serverIdle: number;
}

export type H2AcquireFailure = 'connect' | 'timeout' | 'closed';

/** Gets the result of an acquire that could not be served at once. */
export interface H2Waiter {
  /** A stream slot on `s` is reserved for the waiter: call `s.request()` or `s.unreserve()`. */
  onSession(s: UpstreamSession): void;
  onSessionError(why: H2AcquireFailure, detail: string): void;
}

export interface H2PoolOptions {
  /** Send a PING after this long without one being acked (ms). */
  pingInterval?: number;
  /** Drop a session whose PING is not acked within this (ms). */
  pingTimeout?: number;
  /** Stream flow-control window we advertise to servers (bytes). */
  streamWindow?: number;
  /** Connection flow-control window we advertise to servers (bytes). */
  connectionWindow?: number;
}

const kSession = Symbol('switchyard.h2session');
type TrackedStream = ClientHttp2Stream & { [kSession]?: UpstreamSession };

const END_STREAM = { endStream: true } as const;
const OPEN_STREAM = { endStream: false } as const;
// The stream's end waits for the caller: 'wantTrailers' fires after end(), and the caller
// must then call sendTrailers() (an empty object ends the stream without trailers).
const OPEN_STREAM_TRAILERS = { endStream: false, waitForTrailers: true } as const;
const NGHTTP2_NO_ERROR = 0;
// nghttp2 assumes this many streams until the server's SETTINGS arrive (RFC 9113 §6.5.2
// recommends servers allow at least 100); we also cap an "unlimited" server at this many
// per session so that a very busy server gets a second session instead of one huge one.
const DEFAULT_MAX_STREAMS = 100;
const MAX_STREAMS_CAP = 1000;

function onStreamClose(this: TrackedStream): void {
  const s = this[kSession];
  if (s !== undefined) {
    this[kSession] = undefined;
    s.streamDone();
  }
}

/** One client session to one server. */
export class UpstreamSession {
  readonly session: ClientHttp2Session;
  readonly group: MemberSessions;
  /** Streams open or reserved on this session. */
  active = 0;
  maxStreams = DEFAULT_MAX_STREAMS;
  ready = false;
  /** GOAWAY received, closing, or out of stream ids: no new streams. */
  draining = false;
  closed = false;
  idleSince: number;
  pingSentAt = 0;
  pingAckAt: number;
  connectTimer: NodeJS.Timeout | undefined;
  readonly onPingAck: (err: Error | null) => void;

  constructor(group: MemberSessions, session: ClientHttp2Session, now: number) {
    this.group = group;
    this.session = session;
    this.idleSince = now;
    this.pingAckAt = now;
    this.onPingAck = (err) => {
      if (err === null) {
        this.pingSentAt = 0;
        this.pingAckAt = Date.now();
      }
    };
  }

  /** True when a new stream may be started here now. */
  get available(): boolean {
    return this.ready && !this.draining && this.active < this.maxStreams;
  }

  /**
   * Opens a stream on the slot the acquire reserved. Returns undefined when the session
   * can no longer take it (it was closed since, or node refused the headers): the slot is
   * given back and `lastError` says why. With `waitForTrailers` (ignored when `endStream`)
   * the caller must answer the stream's 'wantTrailers' event with `sendTrailers()`.
   */
  request(
    headers: OutgoingHttpHeaders,
    endStream: boolean,
    waitForTrailers = false,
  ): ClientHttp2Stream | undefined {
    if (this.closed || this.session.destroyed) {
      this.unreserve();
      this.lastError = 'session closed';
      return undefined;
    }
    let st: TrackedStream;
    try {
      st = this.session.request(
        headers,
        endStream ? END_STREAM : waitForTrailers ? OPEN_STREAM_TRAILERS : OPEN_STREAM,
      );
    } catch (e) {
      // ERR_HTTP2_OUT_OF_STREAMS (ids exhausted) or a session closing under us.
      this.draining = true;
      this.unreserve();
      this.lastError = (e as Error).message;
      return undefined;
    }
    st[kSession] = this;
    st.once('close', onStreamClose);
    return st;
  }

  lastError = '';

  /** Gives back a slot reserved by acquire() but not used. */
  unreserve(): void {
    this.streamDone();
  }

  streamDone(): void {
    this.active--;
    if (this.active === 0) this.idleSince = Date.now();
    this.group.slotFreed(this);
  }
}

/** All sessions to one server. */
export class MemberSessions {
  readonly pool: H2SessionPool;
  readonly target: H2Target;
  readonly sessions: UpstreamSession[] = [];
  readonly waiters: H2Waiter[] = [];
  connecting = 0;
  timeouts: H2PoolTimeouts;

  constructor(pool: H2SessionPool, target: H2Target, timeouts: H2PoolTimeouts) {
    this.pool = pool;
    this.target = target;
    this.timeouts = timeouts;
  }

  slotFreed(s: UpstreamSession): void {
    if (this.waiters.length > 0 && s.available) {
      s.active++;
      this.waiters.shift()!.onSession(s);
    }
  }

  /** Starts enough new sessions for the waiters that no connecting session will take. */
  ensureCapacity(): void {
    while (this.waiters.length > this.connecting * DEFAULT_MAX_STREAMS) this.connect();
  }

  connect(): void {
    const { target, pool } = this;
    const socket = net.connect({ host: target.host, port: target.port, noDelay: true });
    const session = http2.connect(`http://${formatHost(target.host)}:${target.port}`, {
      createConnection: () => socket,
      settings: pool.clientSettings,
      peerMaxConcurrentStreams: DEFAULT_MAX_STREAMS,
    });
    const s = new UpstreamSession(this, session, Date.now());
    this.connecting++;
    this.sessions.push(s);
    pool.all.add(s);
    pool.startSweep();
    s.connectTimer = setTimeout(() => {
      s.connectTimer = undefined;
      if (!s.ready) this.failConnecting(s, 'timeout', `connect timeout after ${this.timeouts.connect}ms`);
    }, this.timeouts.connect);
    socket.on('error', noop);
    session.on('error', (err: Error) => {
      if (!s.ready) this.failConnecting(s, 'connect', err.message);
    });
    session.once('remoteSettings', (settings) => {
      if (s.closed) return;
      if (s.connectTimer !== undefined) clearTimeout(s.connectTimer);
      s.connectTimer = undefined;
      s.ready = true;
      this.connecting--;
      const m = settings.maxConcurrentStreams;
      s.maxStreams = m === undefined || m > MAX_STREAMS_CAP ? MAX_STREAMS_CAP : m;
      if (pool.connectionWindow > 65_535) {
        try {
          session.setLocalWindowSize(pool.connectionWindow);
        } catch {
          // an old peer or a closing session: the default window still works
        }
      }
      // Serve waiters up to this session's capacity; others may need another session.
      while (this.waiters.length > 0 && s.available) {
        s.active++;
        this.waiters.shift()!.onSession(s);
      }
      this.ensureCapacity();
    });
    session.on('remoteSettings', (settings) => {
      const m = settings.maxConcurrentStreams;
      if (m !== undefined) s.maxStreams = Math.min(m, MAX_STREAMS_CAP);
    });
    session.on('goaway', () => {
      // Routine (max connection age, server restart): stop using it, do not fail the server.
      s.draining = true;
      this.ensureCapacity();
    });
    session.on('close', () => {
      if (!s.ready) this.failConnecting(s, 'closed', 'connection closed before SETTINGS');
      this.remove(s);
    });
    // Idle sessions must not keep the process alive (tests, graceful stop).
    socket.unref();
  }

  failConnecting(s: UpstreamSession, why: H2AcquireFailure, detail: string): void {
    if (s.closed) return;
    if (s.connectTimer !== undefined) clearTimeout(s.connectTimer);
    s.connectTimer = undefined;
    this.connecting--;
    this.remove(s);
    s.session.destroy();
    // Waiters beyond what the remaining connecting sessions can take get the error.
    const keep = this.connecting * DEFAULT_MAX_STREAMS;
    if (this.waiters.length > keep) {
      const failed = this.waiters.splice(keep);
      for (const w of failed) w.onSessionError(why, detail);
    }
  }

  remove(s: UpstreamSession): void {
    if (s.closed) return;
    s.closed = true;
    s.draining = true;
    const i = this.sessions.indexOf(s);
    if (i >= 0) this.sessions.splice(i, 1);
    this.pool.all.delete(s);
    if (this.sessions.length === 0 && this.waiters.length === 0) this.pool.groups.delete(this.target);
  }
}

function noop(): void {}

function formatHost(h: string): string {
  return h.includes(':') ? `[${h}]` : h;
}

export class H2SessionPool {
  readonly groups = new Map<H2Target, MemberSessions>();
  readonly all = new Set<UpstreamSession>();
  readonly pingInterval: number;
  readonly pingTimeout: number;
  readonly connectionWindow: number;
  readonly clientSettings: http2.Settings;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(opts: H2PoolOptions = {}) {
    this.pingInterval = opts.pingInterval ?? 10_000;
    this.pingTimeout = opts.pingTimeout ?? 5_000;
    this.connectionWindow = opts.connectionWindow ?? 16 << 20;
    this.clientSettings = {
      enablePush: false,
      initialWindowSize: opts.streamWindow ?? 1 << 20,
    };
  }

  /**
   * Reserves a stream slot on a session to `target`. Returns the session at once when one
   * has a free slot (the hot path: no allocation); otherwise returns undefined and calls
   * `waiter` later, once a session is ready or connecting failed.
   */
  acquire(target: H2Target, timeouts: H2PoolTimeouts, waiter: H2Waiter): UpstreamSession | undefined {
    let g = this.groups.get(target);
    if (g === undefined) {
      g = new MemberSessions(this, target, timeouts);
      this.groups.set(target, g);
    } else {
      g.timeouts = timeouts;
      const ss = g.sessions;
      for (let i = 0; i < ss.length; i++) {
        const s = ss[i];
        if (s.available) {
          s.active++;
          return s;
        }
      }
    }
    g.waiters.push(waiter);
    g.ensureCapacity();
    return undefined;
  }

  /** Withdraws a waiter (its client went away before a session was ready). */
  cancel(target: H2Target, waiter: H2Waiter): void {
    const g = this.groups.get(target);
    if (g === undefined) return;
    const i = g.waiters.indexOf(waiter);
    if (i >= 0) g.waiters.splice(i, 1);
  }

  /** Sessions (ready or connecting) to a target, for stats and tests. */
  sessionCount(target?: H2Target): number {
    if (target === undefined) return this.all.size;
    return this.groups.get(target)?.sessions.length ?? 0;
  }

  startSweep(): void {
    if (this.sweepTimer !== undefined) return;
    const every = Math.max(200, Math.min(1000, this.pingTimeout / 2));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  /** Idle close and PING liveness, for every session, on one timer. */
  sweep(): void {
    const now = Date.now();
    for (const s of this.all) {
      if (!s.ready || s.closed) continue;
      if (s.active === 0 && now - s.idleSince >= s.group.timeouts.serverIdle) {
        s.draining = true;
        s.group.remove(s);
        s.session.close();
        continue;
      }
      if (s.pingSentAt !== 0) {
        if (now - s.pingSentAt > this.pingTimeout) {
          // Dead peer or a black-holed path: streams on it fail and get replayed or 14.
          s.group.remove(s);
          s.session.destroy(new Error('upstream PING timeout'));
        }
      } else if (now - s.pingAckAt >= this.pingInterval && !s.draining) {
        try {
          if (s.session.ping(s.onPingAck)) s.pingSentAt = now;
        } catch {
          // too many outstanding pings or closing: next sweep decides
        }
      }
    }
    if (this.all.size === 0 && this.sweepTimer !== undefined) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  /** Closes every session: gracefully (streams finish) or at once. */
  close(force = false): void {
    for (const s of [...this.all]) {
      s.group.remove(s);
      if (force) s.session.destroy();
      else s.session.close();
    }
    for (const g of this.groups.values()) {
      for (const w of g.waiters.splice(0)) w.onSessionError('closed', 'gateway stopping');
    }
    this.groups.clear();
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }
}

/** Result of {@link h2Request}: the stream, or why none could be opened. */
export type H2RequestResult =
  | { ok: true; stream: ClientHttp2Stream; session: UpstreamSession }
  | { ok: false; why: H2AcquireFailure | 'refused'; detail: string };

/**
 * Sends one request to `target` over a pooled session: the entry point for the HTTP/1
 * proxy when a route's pool is `protocol: h2`. `headers` must be HTTP/2-shaped (pseudo
 * headers, lower-case names, no connection-specific fields). The callback runs once,
 * synchronously when a session has a free slot. The stream's slot is given back when the
 * stream closes. `why: 'connect' | 'timeout'` (and 'refused', the session went away) mean
 * the server never saw the request, so it is safe to pick another server and retry.
 * `waitForTrailers`: see {@link UpstreamSession.request}.
 */
export function h2Request(
  pool: H2SessionPool,
  target: H2Target,
  timeouts: H2PoolTimeouts,
  headers: OutgoingHttpHeaders,
  endStream: boolean,
  cb: (r: H2RequestResult) => void,
  waitForTrailers = false,
): void {
  const open = (s: UpstreamSession): void => {
    const stream = s.request(headers, endStream, waitForTrailers);
    if (stream === undefined) cb({ ok: false, why: 'refused', detail: s.lastError });
    else cb({ ok: true, stream, session: s });
  };
  const s = pool.acquire(target, timeouts, {
    onSession: open,
    onSessionError: (why, detail) => cb({ ok: false, why, detail }),
  });
  if (s !== undefined) open(s);
}

let shared: H2SessionPool | undefined;

/** The process-wide pool the HTTP/1 and HTTP/2 proxies share. */
export function sharedH2Pool(): H2SessionPool {
  if (shared === undefined) shared = new H2SessionPool();
  return shared;
}

export { NGHTTP2_NO_ERROR };
