// One TCP tunnel: client socket <-> backend socket, bytes pumped both ways with
// backpressure and half-close. Built for many idle tunnels and bulk throughput:
//   - one Tunnel object per connection; socket listeners are module-level functions that
//     find it through a symbol on the socket (no closures per connection beyond the
//     onread callback, none per chunk);
//   - the backend socket reads into ONE buffer shared by every tunnel (`onread`), and each
//     chunk is copied out before it is written: a write the kernel does not take at once
//     keeps referencing its buffer, so handing it a view of the shared one would let the
//     next read (of any tunnel) overwrite bytes still queued. Copying into an exact-size
//     buffer costs what node's own read path costs (it allocates per read too) and skips
//     the Readable machinery; no tunnel owns a read buffer while idle;
//   - the client socket (accepted by net.Server, where `onread` cannot be set) starts on
//     'data'; the first full-size read (a bulk transfer) re-wraps its handle in a socket of
//     ours that reads with `onread` the same way (undocumented internals, guarded: without
//     them the tunnel stays on 'data'). Idle tunnels never pay for the second socket;
//   - one idle timer per tunnel, on the client socket: every byte either way is a read or a
//     write on it, and node refreshes a socket's timer on both.
// docs/sniffing.md (TCP proxy) has the measurements behind these choices.
import type net from 'node:net';
import type { Pick } from '../../balancer/types.js';
import { msSince } from '../../core/duration.js';
import type { ClientConn, GatewayContext } from '../../core/proxy.js';
import { rewrap, rewrappable } from '../../core/rewrap.js';
import type { Outcome, WorkProtocol } from '../../core/types.js';
import type { CompiledRoute } from '../../router/types.js';
import { connectWithRetry } from '../../upstream/connector.js';

const TUNNEL = Symbol('switchyard.tunnel');
type TunnelSocket = net.Socket & { [TUNNEL]?: Tunnel };

/**
 * Backend reads of quiet tunnels land here, shared by all of them; each chunk is copied
 * out at once, so no write ever references it and the next read (of any tunnel) is free to
 * overwrite it.
 */
const SHARED_BUF = Buffer.allocUnsafe(64 * 1024);
/**
 * A read that fills the shared buffer means a bulk transfer: the tunnel then reads into a
 * buffer of its own and writes views of it, with no copy and no allocation per chunk,
 * stopping reads while a write of it is pending. Bigger reads mean fewer syscalls.
 */
const BULK_BUF = 256 * 1024;
/** A read this small in bulk mode means the burst is over: back to the shared buffer. */
const BULK_EXIT = 16 * 1024;
/**
 * A client 'data' chunk this big is a full read of node's default 64 KiB buffer: a bulk
 * transfer, worth re-wrapping the client socket to read with `onread`.
 */
const REWRAP_AT = 64 * 1024;

/** Process-wide count of client sockets re-wrapped to `onread` (tests, diagnostics). */
export const rewrapStats = { rewrapped: 0, fallback: 0 };

export interface TunnelOwner {
  readonly ctx: GatewayContext;
  /** Called once when the tunnel is over (both sockets closed, record written). */
  done(t: Tunnel): void;
}

export class Tunnel {
  /** The socket the client's bytes flow through: the accepted one, or ours after a re-wrap. */
  client: TunnelSocket;
  /**
   * After a re-wrap: the accepted socket, handle-less (rewrap links the two sockets'
   * closes), for the bytes it wrote before the re-wrap.
   */
  private accepted: TunnelSocket | null = null;
  /** A re-wrap is scheduled or done (or was found impossible): never try twice. */
  private rewrapTried = false;
  upstream: TunnelSocket | null = null;
  private pick: Extract<Pick, { ok: true }> | null = null;
  private route: CompiledRoute | undefined;
  private readonly t0 = performance.now();
  private readonly proto: WorkProtocol;
  private outcome: Outcome | undefined;
  private detail: string | undefined;
  private retries = 0;
  /** The backend sent at least one byte (a reset after that is not "before the response"). */
  private gotUpstreamData = false;
  private clientClosed = false;
  private upstreamClosed = false;
  private clientEnded = false;
  private finished = false;
  /** Backend reads stopped because the client's write buffer is full. */
  private upPaused = false;
  /** Bulk mode: this tunnel's own read buffer (null while quiet). */
  private own: Buffer | null = null;
  private bulk = false;
  private readonly ownWritten = (): void => this.clientDrain();
  /** Client reads stopped because the backend's write buffer is full. */
  private clientPaused = false;
  /** Client (re-wrapped) bulk mode: its own read buffer, and the write callback for it. */
  private cOwn: Buffer | null = null;
  private cBulk = false;
  private cOwnWritten: (() => void) | null = null;

  constructor(
    private readonly owner: TunnelOwner,
    private readonly conn: ClientConn,
  ) {
    this.client = conn.socket;
    this.proto = conn.sniff.cls === 'tls' ? 'tls' : 'tcp';
  }

  start(): void {
    const c = this.client;
    c[TUNNEL] = this;
    c.on('error', onClientError);
    c.on('close', onClientClose);
    c.on('end', onClientEnd);
    if (c.destroyed) {
      this.clientClosed = true;
      this.end('client_reset');
      return;
    }
    // A FIN seen while sniffing was consumed there: forward it after the head.
    if (c.readableEnded) this.clientEnded = true;
    const snap = this.conn.listener.current;
    const sni = this.conn.sniff.tls?.sni ?? this.conn.tls?.sni;
    const route = snap.router.route({ proto: this.proto, source: this.conn.clientIp, sni });
    this.route = route;
    if (route === undefined) {
      this.refuse('no_route');
      return;
    }
    if (route.deny || route.pool === undefined || route.poolConfig === undefined) {
      this.refuse('denied');
      return;
    }
    const pc = route.poolConfig;
    const hashKey = pc.hash?.kind === 'source' ? this.conn.clientIp : undefined;
    // Per-tunnel closures (node documents no receiver for these): the buffer for the next
    // read, asked after every read, and the read callback.
    const onread = {
      buffer: () => this.nextBuf(),
      callback: (n: number, buf: Uint8Array) => this.upRead(n, buf as Buffer),
    };
    connectWithRetry(route.pool, { hashKey }, pc.retries.attempts, pc.timeouts.connect, {
      onread,
      allowHalfOpen: true,
    }).then(
      (r) => {
        this.retries = Math.max(0, r.tried - 1);
        if (!r.ok) {
          this.detail = r.error;
          this.refuse(r.reason === 'full' ? 'no_server' : r.reason);
        } else if (this.finished) {
          // The client left (or a drain cut it) while we were connecting: the record is
          // written; give the server back untouched.
          r.pick.release({ ok: true, bytesIn: 0, bytesOut: 0 });
          r.socket.destroy();
        } else {
          this.pick = r.pick;
          this.attach(r.socket, snap.timeouts.tunnel);
        }
      },
      (err: Error) => {
        this.detail = err.message;
        this.refuse('error');
      },
    );
  }

  private attach(up: TunnelSocket, idleMs: number): void {
    const c = this.client;
    this.upstream = up;
    up[TUNNEL] = this;
    up.on('error', onUpstreamError);
    up.on('close', onUpstreamClose);
    up.on('end', onUpstreamEnd);
    up.on('drain', onUpstreamDrain);
    c.on('drain', onClientDrain);
    c.on('timeout', onClientTimeout);
    if (idleMs > 0) c.setTimeout(idleMs);
    const head = this.conn.sniff.head;
    if (head.length > 0) up.write(head);
    if (this.clientEnded) up.end();
    c.on('data', onClientData);
    c.resume();
  }

  /** Backend bytes → client. Returning false stops backend reads (node calls readStop). */
  private upRead(n: number, buf: Buffer): boolean {
    this.gotUpstreamData = true;
    const c = this.client;
    if (c.destroyed) return false;
    if (buf === SHARED_BUF) {
      const chunk = Buffer.allocUnsafe(n);
      buf.copy(chunk, 0, 0, n);
      if (n === buf.length) this.bulk = true;
      if (c.write(chunk)) return true;
      this.upPaused = true;
      return false;
    }
    // Our own buffer: the write may keep referencing it, so no read may land in it until
    // that write is done (`ownWritten`, or 'drain', resumes).
    c.write(n === buf.length ? buf : buf.subarray(0, n), this.ownWritten);
    if (n < BULK_EXIT) this.bulk = false;
    if (c.writableLength === 0) return true;
    this.upPaused = true;
    return false;
  }

  /** Where the next backend read goes; node asks right after each read. */
  private nextBuf(): Buffer {
    if (!this.bulk) {
      // Dropping our buffer here is safe: a pending write holds its own reference.
      this.own = null;
      return SHARED_BUF;
    }
    if (this.own === null) this.own = Buffer.allocUnsafe(BULK_BUF);
    return this.own;
  }

  clientData(chunk: Buffer): void {
    if (!this.upstream!.write(chunk)) {
      this.clientPaused = true;
      this.client.pause();
    }
    if (chunk.length >= REWRAP_AT && !this.rewrapTried) {
      this.rewrapTried = true;
      // Not inside the 'data' event: node's read path still holds the handle for this
      // read. Next tick runs before the event loop can read again.
      this.client.pause();
      process.nextTick(rewrapNT, this);
    }
  }

  /**
   * Moves the accepted socket's handle into a socket of ours that reads with `onread`
   * (node offers no `onread` for accepted sockets). Falls back to 'data' when the
   * internals are not there or the socket is not in a state to hand over.
   */
  rewrap(): void {
    const old = this.client;
    if (this.finished || !rewrappable(old)) {
      rewrapStats.fallback++;
      if (!this.clientPaused && !old.destroyed) old.resume();
      return;
    }
    old.removeListener('data', onClientData);
    old.removeListener('end', onClientEnd);
    old.removeListener('error', onClientError);
    old.removeListener('close', onClientClose);
    old.removeListener('drain', onClientDrain);
    old.removeListener('timeout', onClientTimeout);
    const idleMs = old.timeout ?? 0;
    if (idleMs > 0) old.setTimeout(0);
    this.cBulk = true;
    const c: TunnelSocket = rewrap(
      old,
      {
        buffer: () => this.cNextBuf(),
        callback: (n: number, buf: Uint8Array) => this.cRead(n, buf as Buffer),
      },
      this.clientPaused,
      true,
    );
    c[TUNNEL] = this;
    c.on('error', onClientError);
    c.on('close', onClientClose);
    c.on('end', onClientEnd);
    c.on('drain', onClientDrain);
    c.on('timeout', onClientTimeout);
    if (idleMs > 0) c.setTimeout(idleMs);
    rewrapStats.rewrapped++;
    this.client = c;
    this.accepted = old;
  }

  /** Client bytes → backend, on the re-wrapped socket. Mirrors `upRead`. */
  private cRead(n: number, buf: Buffer): boolean {
    const up = this.upstream!;
    if (up.destroyed) return false;
    if (buf === SHARED_BUF) {
      const chunk = Buffer.allocUnsafe(n);
      buf.copy(chunk, 0, 0, n);
      if (n === buf.length) this.cBulk = true;
      if (up.write(chunk)) return true;
      this.clientPaused = true;
      return false;
    }
    if (this.cOwnWritten === null) this.cOwnWritten = () => this.upstreamDrain();
    up.write(n === buf.length ? buf : buf.subarray(0, n), this.cOwnWritten);
    if (n < BULK_EXIT) this.cBulk = false;
    if (up.writableLength === 0) return true;
    this.clientPaused = true;
    return false;
  }

  private cNextBuf(): Buffer {
    if (!this.cBulk) {
      this.cOwn = null;
      return SHARED_BUF;
    }
    if (this.cOwn === null) this.cOwn = Buffer.allocUnsafe(BULK_BUF);
    return this.cOwn;
  }

  clientEnd(): void {
    this.clientEnded = true;
    // Half-close: the client's FIN goes on to the backend, which may still answer.
    this.upstream?.end();
  }

  upstreamEnd(): void {
    this.client.end();
  }

  clientDrain(): void {
    if (this.upPaused && this.client.writableLength === 0) {
      this.upPaused = false;
      this.upstream!.resume();
    }
  }

  upstreamDrain(): void {
    // A pending write may still reference the client's own read buffer: wait for all of it.
    if (this.clientPaused && (this.cOwn === null || this.upstream!.writableLength === 0)) {
      this.clientPaused = false;
      this.client.resume();
    }
  }

  clientError(err: Error & { code?: string }): void {
    if (this.outcome === undefined) {
      this.outcome = 'client_reset';
      this.detail = err.code ?? err.message;
    }
  }

  upstreamError(err: Error & { code?: string }): void {
    if (this.outcome === undefined) {
      this.outcome = 'server_reset';
      this.detail = err.code ?? err.message;
    }
  }

  timeout(): void {
    if (this.outcome === undefined) this.outcome = 'timeout';
    this.client.destroy();
    this.upstream?.destroy();
  }

  /** Graceful stop ran out of time. */
  cut(): void {
    if (this.outcome === undefined) this.outcome = 'cut';
    this.client.destroy();
    this.upstream?.destroy();
  }

  clientClose(): void {
    this.clientClosed = true;
    const up = this.upstream;
    if (up === null) {
      // Refused, or gone while connecting (the connect result is cleaned up when it comes).
      this.end(this.outcome ?? 'client_reset');
      return;
    }
    // A client socket closes cleanly only once both directions are done; anything else is
    // an abort, and the backend must not be left open.
    if (!(this.client.readableEnded && this.client.writableFinished)) {
      if (this.outcome === undefined) this.outcome = 'client_reset';
      up.destroy();
    }
    if (this.upstreamClosed) this.end(this.outcome ?? 'ok');
  }

  upstreamClose(): void {
    this.upstreamClosed = true;
    const up = this.upstream!;
    if (!(up.readableEnded && up.writableFinished)) {
      if (this.outcome === undefined) this.outcome = 'server_reset';
      this.client.destroy();
    }
    if (this.clientClosed) this.end(this.outcome ?? 'ok');
  }

  /** No tunnel: close the client and account for why. */
  private refuse(outcome: Outcome): void {
    if (this.outcome === undefined) this.outcome = outcome;
    if (this.clientClosed) this.end(this.outcome);
    else this.client.destroy(); // its 'close' ends the tunnel
  }

  private end(outcome: Outcome): void {
    if (this.finished) return;
    this.finished = true;
    const c = this.client;
    const up = this.upstream;
    const pick = this.pick;
    const route = this.route;
    if (pick !== null) {
      const serverFault = outcome === 'server_reset';
      pick.release({
        ok: !serverFault,
        // SPEC passive health: a reset before the response counts; a reset later in a long
        // tunnel is only an error.
        failure: serverFault ? (this.gotUpstreamData ? 'other' : 'reset') : undefined,
        bytesIn: up?.bytesWritten ?? 0,
        bytesOut: up?.bytesRead ?? 0,
      });
    }
    this.owner.ctx.finish({
      proto: this.proto,
      listener: this.conn.listener.name,
      route: route?.name,
      pool: route?.pool?.name,
      server: pick?.member.name,
      client: this.conn.clientAddr,
      // After a re-wrap the handle's read count covers both sockets; writes are per socket.
      bytes_in: c.bytesRead,
      bytes_out: c.bytesWritten + (this.accepted?.bytesWritten ?? 0),
      duration_ms: msSince(this.t0),
      outcome,
      detail: this.detail,
      retries: this.retries > 0 ? this.retries : undefined,
    });
    this.owner.done(this);
  }
}

// Module-level listeners: `this` is the emitting socket.
function onClientData(this: TunnelSocket, chunk: Buffer): void {
  this[TUNNEL]?.clientData(chunk);
}
function onClientEnd(this: TunnelSocket): void {
  this[TUNNEL]?.clientEnd();
}
function onClientDrain(this: TunnelSocket): void {
  this[TUNNEL]?.clientDrain();
}
function onClientError(this: TunnelSocket, err: Error): void {
  this[TUNNEL]?.clientError(err);
}
function onClientClose(this: TunnelSocket): void {
  this[TUNNEL]?.clientClose();
}
function onClientTimeout(this: TunnelSocket): void {
  this[TUNNEL]?.timeout();
}
function rewrapNT(t: Tunnel): void {
  t.rewrap();
}
function onUpstreamEnd(this: TunnelSocket): void {
  this[TUNNEL]?.upstreamEnd();
}
function onUpstreamDrain(this: TunnelSocket): void {
  this[TUNNEL]?.upstreamDrain();
}
function onUpstreamError(this: TunnelSocket, err: Error): void {
  this[TUNNEL]?.upstreamError(err);
}
function onUpstreamClose(this: TunnelSocket): void {
  this[TUNNEL]?.upstreamClose();
}
