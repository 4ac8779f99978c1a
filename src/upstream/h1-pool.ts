// Raw-socket keep-alive connections to `protocol: h1` pool members, used by the HTTP/1
// proxy. One idle stack per server address (LIFO: the warmest socket is reused first and the
// coldest ones age out). Sockets carry no per-request listeners: the proxy sets `handler`
// for the duration of one exchange.
import net from 'node:net';
import { DirectWriter } from '../core/direct-write.js';

export interface H1UpstreamHandler {
  onUpstreamData(conn: H1Conn, chunk: Buffer): void;
  /** The socket closed while this handler owned it. */
  onUpstreamClose(conn: H1Conn, err: Error | undefined): void;
  onUpstreamDrain(conn: H1Conn): void;
}

const READ_BUFFER = 64 * 1024;

/** Idle sockets kept per server beyond which released sockets are closed. */
const MAX_IDLE_PER_SERVER = 512;

export class H1Conn {
  handler: H1UpstreamHandler | undefined = undefined;
  /** Requests this socket has carried (0 = fresh). */
  uses = 0;
  idleSince = 0;
  idleLimit = 0;
  closed = false;
  private err: Error | undefined;

  /**
   * Set by the handler when it keeps a reference to the chunk it was given beyond the call
   * (a write the kernel did not take at once): the next read then gets a fresh buffer.
   */
  retained = false;
  /** Read buffer (net `onread`): reused across reads unless retained. */
  rbuf: Buffer;
  /** Writes to the server (direct to its handle where it can). */
  readonly w: DirectWriter;

  constructor(
    readonly pool: H1ServerPool,
    readonly socket: net.Socket,
    rbuf: Buffer,
  ) {
    this.rbuf = rbuf;
    this.w = new DirectWriter(socket, () => this.handler?.onUpstreamDrain(this));
    socket.on('drain', () => this.handler?.onUpstreamDrain(this));
    socket.on('error', (e: Error) => {
      this.err = e;
    });
    socket.on('close', () => {
      this.closed = true;
      this.pool.forget(this);
      const h = this.handler;
      this.handler = undefined;
      h?.onUpstreamClose(this, this.err);
    });
  }

  destroy(): void {
    this.handler = undefined;
    if (!this.closed) this.socket.destroy();
  }
}

/** Keep-alive sockets to one server address. */
export class H1ServerPool {
  private readonly idle: H1Conn[] = [];
  /** Sockets open to this server (idle or busy), for stats and tests. */
  open = 0;

  constructor(
    readonly host: string,
    readonly port: number,
  ) {}

  get idleCount(): number {
    return this.idle.length;
  }

  /** An idle socket, or undefined. */
  take(): H1Conn | undefined {
    const c = this.idle.pop();
    if (c !== undefined) c.uses++;
    return c;
  }

  /** Opens a new socket; `cb` runs once with it or with the connect error. */
  connect(timeoutMs: number, cb: (err: Error | undefined, conn: H1Conn | undefined) => void): void {
    // `onread` skips the Readable stream machinery for upstream reads (measured: fewer
    // allocations and calls per response); the chunk handed on is a view of `rbuf`.
    let conn: H1Conn | undefined;
    const first = Buffer.allocUnsafeSlow(READ_BUFFER);
    const socket = net.connect({
      host: this.host,
      port: this.port,
      onread: {
        buffer: () => {
          const c = conn;
          if (c === undefined) return first;
          if (c.retained) {
            c.retained = false;
            c.rbuf = Buffer.allocUnsafeSlow(READ_BUFFER);
          }
          return c.rbuf;
        },
        callback: (n: number, buf: Uint8Array): boolean => {
          const c = conn;
          if (c === undefined) return true;
          const h = c.handler;
          // Bytes on an idle keep-alive socket: the server broke framing; never reuse it.
          if (h === undefined) socket.destroy();
          else h.onUpstreamData(c, (buf as Buffer).subarray(0, n));
          return true;
        },
      },
    });
    socket.setNoDelay(true);
    let done = false;
    const onError = (e: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      cb(e, undefined);
    };
    const timer = setTimeout(() => {
      const e = new Error(`connect timeout after ${timeoutMs}ms`) as NodeJS.ErrnoException;
      e.code = 'ETIMEDOUT';
      onError(e);
    }, timeoutMs);
    socket.once('error', onError);
    socket.once('connect', () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.removeListener('error', onError);
      this.open++;
      const c = new H1Conn(this, socket, first);
      conn = c;
      c.uses = 1;
      cb(undefined, c);
    });
  }

  /** Returns a socket after a complete exchange; it is closed after `idleMs` unused. */
  release(c: H1Conn, idleMs: number, now: number): void {
    c.handler = undefined;
    if (c.closed) return;
    if (this.idle.length >= MAX_IDLE_PER_SERVER) {
      c.socket.destroy();
      return;
    }
    c.idleSince = now;
    c.idleLimit = idleMs;
    this.idle.push(c);
  }

  forget(c: H1Conn): void {
    this.open--;
    const i = this.idle.indexOf(c);
    if (i !== -1) this.idle.splice(i, 1);
  }

  /** Closes idle sockets past their idle limit. */
  sweep(now: number): void {
    // Oldest are at the bottom of the stack.
    while (this.idle.length > 0) {
      const c = this.idle[0];
      if (now - c.idleSince < c.idleLimit) break;
      this.idle.shift();
      c.socket.destroy();
    }
  }

  closeIdle(): void {
    for (const c of this.idle.splice(0)) c.socket.destroy();
  }
}

/** All server pools of one proxy, keyed by address; survives reloads (same address, same sockets). */
export class H1Upstreams {
  private readonly byAddr = new Map<string, H1ServerPool>();
  private readonly byObj = new WeakMap<object, H1ServerPool>();

  /** The pool for a member (any object with host/port; cached per object). */
  forMember(m: { host: string; port: number }): H1ServerPool {
    let p = this.byObj.get(m);
    if (p !== undefined) return p;
    const key = `${m.host}|${m.port}`;
    p = this.byAddr.get(key);
    if (p === undefined) {
      p = new H1ServerPool(m.host, m.port);
      this.byAddr.set(key, p);
    }
    this.byObj.set(m, p);
    return p;
  }

  sweep(now: number): void {
    for (const p of this.byAddr.values()) p.sweep(now);
  }

  closeIdle(): void {
    for (const p of this.byAddr.values()) p.closeIdle();
  }
}
