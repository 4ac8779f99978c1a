// Pooled Thrift connections to backend servers, shared by every client connection.
//
// Thrift has no stream ids, only a seqid per message, so a backend connection carries one
// call at a time unless the pool says its servers accept pipelining (then up to
// PIPELINE_DEPTH calls, matched to replies by seqid). Every call sent here gets a seqid
// chosen by the connection (unique among its calls in flight); the caller puts it in the
// message and restores the client's own on the reply. For compact, the seqid chosen has the
// same varint length as the client's, so both rewrites happen in place.
//
// Idle connections are reused newest first (warm) and closed after `timeouts.serverIdle`;
// a connection the server half-closed is never handed out again.
import net from 'node:net';
import type { ThriftProtocol } from '../codec/thrift/constants.js';
import { EXCEPTION, MESSAGE_TYPE_NAMES, REPLY } from '../codec/thrift/constants.js';
import { MessageReader, type ThriftMessage } from '../codec/thrift/reader.js';

/** Where to connect: a balancer Member satisfies this; connections are grouped by this object. */
export interface ThriftTarget {
  readonly host: string;
  readonly port: number;
  readonly name: string;
}

/** What the servers of a pool speak, and how long to wait. */
export interface BackendOptions {
  transport: 'framed' | 'unframed';
  protocol: ThriftProtocol;
  pipelining: boolean;
  connectTimeout: number;
  idleTimeout: number;
  /** Largest reply frame/message accepted. */
  maxMessage: number;
}

export type BackendFailure = 'closed' | 'error' | 'protocol' | 'too_large';

/** A call as the backend connection sees it. */
export interface BackendCall {
  /** The reply (REPLY or EXCEPTION) to this call's seqid. */
  onReply(msg: ThriftMessage): void;
  /** The connection ended or broke after the call was written. */
  onBackendError(kind: BackendFailure, detail: string): void;
}

/** Gets the result of an `acquire` that could not be served at once. */
export interface BackendWaiter {
  /** Must, synchronously, either `send` on `conn` or give it back with `conn.group.release(conn)`. */
  onConnected(conn: BackendConn): void;
  onConnectFailed(detail: string): void;
}

/** Calls in flight on one connection when the servers accept pipelining. */
export const PIPELINE_DEPTH = 64;
/** A pipelined connection with this many timed-out calls is retired (late replies pile up). */
const MAX_ABANDONED = 16;

// Compact seqid ranges by varint length (1-5 bytes): [low, high] inclusive, unsigned.
const SEQ_LOW = [0, 0, 0x80, 0x4000, 0x200000, 0x10000000];
const SEQ_HIGH = [0, 0x7f, 0x3fff, 0x1fffff, 0xfffffff, 0xffffffff];

/**
 * Every backend socket reads here (`onread`: no Readable stream machinery, no 'data' event
 * and no buffer allocated per read); reads are handled synchronously, one at a time.
 */
const READ_BUF = Buffer.allocUnsafe(64 * 1024);

const ABANDONED: BackendCall = {
  onReply() {},
  onBackendError() {},
};

export class BackendConn {
  readonly socket: net.Socket;
  readonly group: ConnGroup;
  private readonly reader: MessageReader;
  /** The call in flight (one-at-a-time mode). */
  private current: BackendCall | undefined;
  private currentSeq = 0;
  /** Calls in flight by seqid (pipelining mode). */
  private readonly calls: Map<number, BackendCall> | undefined;
  /** Calls written and not yet answered (oneway calls are never counted). */
  inflight = 0;
  /** Of `inflight`, calls nobody waits for any more (pipelining mode). */
  abandoned = 0;
  /** Next seqid per compact varint length (index 1-5); index 0 is the binary counter. */
  private readonly nextSeq = [1, 0, 0x80, 0x4000, 0x200000, 0x10000000];
  connected = false;
  /** I/O since the last idle sweep; `idleSince` when a sweep found none. */
  active = true;
  idleSince = 0;
  /** Corked by `ThriftBackends.cork` until `uncorkAll`. */
  corked = false;
  /** No new calls: closed, half-closed by the server, or retiring. */
  unusable = false;
  closed = false;

  constructor(group: ConnGroup, socket: net.Socket) {
    this.group = group;
    this.socket = socket;
    const o = group.opts;
    this.reader = new MessageReader(o.transport, o.protocol, o.maxMessage, false);
    this.calls = o.pipelining ? new Map() : undefined;
  }

  /** Can take another call now. */
  get available(): boolean {
    if (this.unusable || !this.connected) return false;
    return this.calls === undefined ? this.inflight === 0 : this.inflight < PIPELINE_DEPTH;
  }

  /**
   * A seqid for a call on this connection, unique among the calls in flight. `varintLen`
   * is the length of the client's compact seqid varint (ignored for binary).
   */
  allocSeqid(varintLen: number): number {
    const compact = this.group.opts.protocol === 'compact';
    const i = compact ? Math.min(5, Math.max(1, varintLen)) : 0;
    const low = compact ? SEQ_LOW[i] : 1;
    const high = compact ? SEQ_HIGH[i] : 0x7fffffff;
    let s = this.nextSeq[i];
    // At most PIPELINE_DEPTH + MAX_ABANDONED seqids are taken, fewer than any range holds.
    for (let tries = 0; tries <= PIPELINE_DEPTH + MAX_ABANDONED; tries++) {
      if (s > high || s < low) s = low;
      if (this.calls === undefined || !this.calls.has(s | 0)) break;
      s++;
    }
    this.nextSeq[i] = s + 1;
    return s | 0;
  }

  /**
   * Writes a call. `seqid` came from `allocSeqid` and is already in the bytes. A oneway
   * call (`call` undefined) leaves nothing in flight; `written` fires once its bytes are
   * handed to the kernel.
   */
  send(
    call: BackendCall | undefined,
    seqid: number,
    parts: Buffer[],
    written?: (err?: Error | null) => void,
  ): void {
    if (call !== undefined) {
      this.inflight++;
      if (this.calls === undefined) {
        this.current = call;
        this.currentSeq = seqid;
      } else this.calls.set(seqid, call);
    }
    this.active = true;
    const s = this.socket;
    // Calls put on a shared (pipelining) connection in one event-loop turn, from any
    // number of client connections, leave in one writev at the end of the turn.
    if (!this.corked && (this.calls !== undefined || this.group.owner.corking)) this.group.owner.cork(this);
    const n = parts.length;
    if (n === 1) {
      s.write(parts[0], written);
    } else {
      s.cork();
      for (let i = 0; i < n - 1; i++) s.write(parts[i]);
      s.write(parts[n - 1], written);
      s.uncork();
    }
    if (call === undefined) this.group.release(this);
  }

  /**
   * The caller stops waiting for `call` (timeout, or the call was cut). One call at a time:
   * the connection is closed (a late reply would answer the next call). Pipelined: the
   * seqid stays reserved so a late reply is recognised and dropped.
   */
  abandon(call: BackendCall, seqid: number): void {
    if (this.closed) return;
    if (this.calls === undefined) {
      if (this.current === call) {
        this.current = undefined;
        this.destroy();
      }
      return;
    }
    if (this.calls.get(seqid) !== call) return;
    this.calls.set(seqid, ABANDONED);
    if (++this.abandoned >= MAX_ABANDONED) this.unusable = true;
  }

  onData(chunk: Buffer): void {
    this.active = true;
    const reader = this.reader;
    reader.push(chunk);
    for (let msg = reader.next(); msg !== undefined; msg = reader.next()) {
      const h = msg.header;
      if (h.type !== REPLY && h.type !== EXCEPTION) {
        this.fail('protocol', `server sent a ${MESSAGE_TYPE_NAMES[h.type]} message, not a reply`);
        return;
      }
      let call: BackendCall | undefined;
      if (this.calls === undefined) {
        if (this.current === undefined || h.seqid !== this.currentSeq) {
          this.fail('protocol', `reply with seqid ${h.seqid} matches no call in flight`);
          return;
        }
        call = this.current;
        this.current = undefined;
      } else {
        call = this.calls.get(h.seqid);
        if (call === undefined) {
          this.fail('protocol', `reply with seqid ${h.seqid} matches no call in flight`);
          return;
        }
        this.calls.delete(h.seqid);
        if (call === ABANDONED) this.abandoned--;
      }
      this.inflight--;
      this.group.release(this);
      call.onReply(msg);
      if (this.closed) return;
    }
    if (reader.error !== undefined) {
      this.fail(reader.tooLarge ? 'too_large' : 'protocol', `bad reply from server: ${reader.error}`);
    }
  }

  /** Fails every call in flight and closes. */
  fail(kind: BackendFailure, detail: string): void {
    if (this.closed) return;
    this.closed = true;
    this.unusable = true;
    this.group.remove(this);
    this.socket.destroy();
    const calls: BackendCall[] = [];
    if (this.current !== undefined) calls.push(this.current);
    if (this.calls !== undefined) for (const c of this.calls.values()) if (c !== ABANDONED) calls.push(c);
    this.current = undefined;
    this.calls?.clear();
    this.inflight = 0;
    for (const c of calls) c.onBackendError(kind, detail);
  }

  destroy(): void {
    this.fail('closed', 'connection closed by the gateway');
  }
}

/** The connections to one server for one (transport, protocol, pipelining). */
export class ConnGroup {
  readonly target: ThriftTarget;
  readonly opts: BackendOptions;
  readonly owner: ThriftBackends;
  /** Idle connections, newest last. */
  private readonly idle: BackendConn[] = [];
  /** Pipelining: connections that can take more calls. */
  private readonly open = new Set<BackendConn>();
  private readonly waiters: BackendWaiter[] = [];
  private connecting = 0;
  size = 0;

  constructor(owner: ThriftBackends, target: ThriftTarget, opts: BackendOptions) {
    this.owner = owner;
    this.target = target;
    this.opts = opts;
  }

  /** A connection that can take a call now, or undefined (the waiter is told later). */
  acquire(w: BackendWaiter): BackendConn | undefined {
    if (this.opts.pipelining) {
      for (const c of this.open) if (c.available) return c;
      this.waiters.push(w);
      // One connection in progress serves up to PIPELINE_DEPTH waiters.
      if (this.connecting * PIPELINE_DEPTH < this.waiters.length) this.connect();
      return undefined;
    }
    while (this.idle.length > 0) {
      const c = this.idle.pop()!;
      if (c.available) return c;
    }
    this.waiters.push(w);
    if (this.connecting < this.waiters.length) this.connect();
    return undefined;
  }

  /** Withdraws a waiter (its call ended while the connection was being made). */
  cancel(w: BackendWaiter): void {
    const i = this.waiters.indexOf(w);
    if (i >= 0) this.waiters.splice(i, 1);
  }

  private connect(): void {
    this.connecting++;
    this.size++;
    const o = this.opts;
    let conn: BackendConn | undefined;
    const socket = net.connect({
      host: this.target.host || '127.0.0.1',
      port: this.target.port,
      noDelay: true,
      onread: {
        buffer: READ_BUF,
        callback: (n: number): boolean => {
          // Copied out at once (from node's buffer pool when small): replies are written
          // to clients as views of the copy, and the next read overwrites READ_BUF.
          const chunk = Buffer.allocUnsafe(n);
          READ_BUF.copy(chunk, 0, 0, n);
          conn?.onData(chunk);
          return true;
        },
      },
    });
    conn = new BackendConn(this, socket);
    this.owner.conns.add(conn);
    let timer: NodeJS.Timeout | undefined = setTimeout(() => {
      timer = undefined;
      socket.destroy(new Error(`connect timeout after ${o.connectTimeout} ms`));
    }, o.connectTimeout);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!conn.connected) {
        if (timer !== undefined) clearTimeout(timer);
        timer = undefined;
        this.connectFailed(conn, err.code ? `${err.code}` : err.message);
      } else conn.fail('error', `connection error: ${err.code ?? err.message}`);
    });
    socket.on('close', () => {
      if (!conn.connected) {
        if (timer !== undefined) {
          clearTimeout(timer);
          timer = undefined;
          this.connectFailed(conn, 'connection closed');
        }
        return;
      }
      conn.fail('closed', 'server closed the connection');
    });
    socket.on('end', () => {
      // The server will not answer anything more on this connection.
      conn.unusable = true;
    });
    socket.once('connect', () => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      this.connecting--;
      conn.connected = true;
      if (o.pipelining) this.open.add(conn);
      this.release(conn);
    });
  }

  private connectFailed(conn: BackendConn, detail: string): void {
    this.connecting--;
    conn.closed = true;
    conn.unusable = true;
    this.remove(conn);
    // The server is probably down: every waiter beyond what the remaining connects
    // can serve is told now, so its call can go elsewhere.
    const cap = this.opts.pipelining ? this.connecting * PIPELINE_DEPTH : this.connecting;
    while (this.waiters.length > cap) {
      const w = this.waiters.shift()!;
      w.onConnectFailed(detail);
    }
  }

  /**
   * A connection has room again (a reply came, a oneway call went out, or a waiter did not
   * use it): hand it to waiters, or keep it idle.
   */
  release(conn: BackendConn): void {
    if (conn.closed) return;
    if (conn.unusable) {
      if (conn.inflight === 0) conn.destroy();
      return;
    }
    if (this.opts.pipelining) {
      while (this.waiters.length > 0 && conn.available) this.waiters.shift()!.onConnected(conn);
      return;
    }
    if (conn.inflight !== 0) return;
    const w = this.waiters.shift();
    if (w !== undefined) w.onConnected(conn);
    else this.idle.push(conn);
  }

  remove(conn: BackendConn): void {
    if (!this.owner.conns.delete(conn)) return;
    this.size--;
    this.open.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }
}

/**
 * Every backend connection of one proxy. Groups are kept per target object and option set
 * (transport, protocol, pipelining), so a reload that changes them starts fresh
 * connections while the old ones finish and idle out.
 */
export class ThriftBackends {
  private readonly groups = new WeakMap<ThriftTarget, ConnGroup[]>();
  readonly conns = new Set<BackendConn>();
  /**
   * Write batching (one writev instead of a write per call): a pipelining connection is
   * corked at its first call of an event-loop turn, and so is any connection written to
   * while `corking` is set (the proxy is dispatching several calls read at once); all are
   * uncorked in the check phase of that turn (one setImmediate), i.e. after every read of
   * the turn has been dispatched. With 64 synchronous clients sharing one pipelining
   * connection this turns up to 64 writes into one.
   */
  corking = false;
  private readonly corkedConns: BackendConn[] = [];

  cork(conn: BackendConn): void {
    conn.corked = true;
    conn.socket.cork();
    if (this.corkedConns.push(conn) === 1) setImmediate(this.uncorkAll);
  }

  private readonly uncorkAll = (): void => {
    const list = this.corkedConns;
    for (let i = 0; i < list.length; i++) {
      list[i].corked = false;
      list[i].socket.uncork();
    }
    list.length = 0;
  };

  group(target: ThriftTarget, opts: BackendOptions): ConnGroup {
    let list = this.groups.get(target);
    if (list === undefined) {
      list = [];
      this.groups.set(target, list);
    }
    for (let i = 0; i < list.length; i++) {
      const g = list[i].opts;
      if (
        g === opts ||
        (g.transport === opts.transport && g.protocol === opts.protocol && g.pipelining === opts.pipelining)
      ) {
        return list[i];
      }
    }
    const g = new ConnGroup(this, target, opts);
    list.push(g);
    return g;
  }

  /**
   * Idle sweep (the proxy runs it): a connection with nothing in flight but replies nobody
   * waits for, and no I/O for its pool's `server_idle`, is closed.
   */
  sweep(now: number): void {
    for (const c of this.conns) {
      if (c.active) {
        c.active = false;
        c.idleSince = now;
      } else if (c.connected && c.inflight === c.abandoned && now - c.idleSince >= c.group.opts.idleTimeout) {
        c.destroy();
      }
    }
  }

  /** Closes every connection (after a drain). */
  closeAll(): void {
    for (const c of [...this.conns]) c.destroy();
  }
}
