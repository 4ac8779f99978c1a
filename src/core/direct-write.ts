// Writing to a socket's libuv handle directly, below node's Writable.
//
// A net.Socket write costs, before and after the one syscall that matters: the Writable
// state machine, a fresh WriteWrap request object, and a nextTick for the callback. On the
// HTTP/1 hot path (two writes per request) that is several percent of the proxy's CPU and
// ~450 B of garbage per write. A DirectWriter calls the handle's `writeBuffer` itself and
// reuses one request object for every write the kernel takes at once (the usual case on a
// keep-alive connection); a write it does not take whole is left to libuv, which queues it
// in order, and the writer reports it as backpressure until libuv has written it.
//
// This leans on node internals (`process.binding('stream_wrap')`, DEP0111, a
// documentation-only deprecation; the handle's `writeBuffer`). Everything is checked once
// at load and per socket; where anything is missing, or the socket's own Writable has
// anything in hand (connecting, corked, buffered, ending), the write goes through
// `socket.write` as usual, so the two paths never reorder bytes.
import net from 'node:net';
import { getSystemErrorName } from 'node:util';

interface WriteReq {
  handle: unknown;
  oncomplete: (this: WriteReq, status: number) => void;
  buffer: Uint8Array | null;
  owner: DirectWriter | null;
}
interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}
interface WritableHandle {
  writeBuffer(req: WriteReq, data: Uint8Array): number;
}
type SocketInternals = { _handle: WritableHandle | null };

function loadBinding(): StreamWrapBinding | null {
  try {
    const p = process as unknown as { binding?: (name: string) => unknown };
    const b = p.binding?.('stream_wrap') as Partial<StreamWrapBinding> | undefined;
    if (
      b !== undefined &&
      typeof b.WriteWrap === 'function' &&
      b.streamBaseState instanceof Int32Array &&
      typeof b.kLastWriteWasAsync === 'number'
    ) {
      return b as StreamWrapBinding;
    }
  } catch {
    // Not reachable on this node: every write goes through socket.write.
  }
  return null;
}

const binding = loadBinding();

/** Whether direct writes are available on this node. */
export const directWriteAvailable = binding !== null;

/**
 * Writes by how they went: taken by the kernel at once, left queued in libuv, or passed to
 * socket.write (tests check that each path they name is the one that ran).
 */
export const directWriteStats = { direct: 0, queued: 0, fallback: 0 };

/** The error node's own write path would destroy the socket with (libuv status < 0). */
function writeError(status: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(status);
  return Object.assign(new Error(`write ${code}`), { errno: status, code, syscall: 'write' });
}

function onAsyncWriteDone(this: WriteReq, status: number): void {
  const w = this.owner;
  this.owner = null;
  this.buffer = null;
  if (w !== null) w.completed(status);
}

/**
 * Writes for one socket. `onDrain` runs when every write that was not taken at once has
 * been written (the counterpart of the socket's 'drain' for `write` returning false).
 */
export class DirectWriter {
  /** Writes handed to libuv and not yet complete. */
  pending = 0;
  /** Request object for the next write; reused while writes complete at once. */
  private req: WriteReq | null = null;
  /**
   * Plain TCP sockets only: a TLS socket's handle encrypts and completes every write later,
   * which this writer would only turn into backpressure after each write.
   */
  private readonly plain: boolean;

  constructor(
    private readonly socket: net.Socket,
    private readonly onDrain: () => void,
  ) {
    this.plain = binding !== null && socket.constructor === net.Socket;
  }

  /**
   * Writes `data`. true: nothing is left waiting (taken at once, or queued under the
   * Writable's high-water mark as socket.write would say); false: wait for `onDrain` (or
   * the socket's 'drain' when the write went through the Writable). When false, libuv or
   * the Writable still holds a view of `data`.
   */
  write(data: Buffer): boolean {
    const s = this.socket;
    const h = (s as unknown as SocketInternals)._handle;
    if (
      !this.plain ||
      h === null ||
      typeof h.writeBuffer !== 'function' ||
      s.connecting ||
      s.writableLength !== 0 ||
      s.writableCorked !== 0 ||
      s.writableEnded ||
      s.destroyed
    ) {
      directWriteStats.fallback++;
      return s.write(data);
    }
    const b = binding as StreamWrapBinding;
    let req = this.req;
    if (req === null) {
      req = new b.WriteWrap();
      req.handle = h;
      req.oncomplete = onAsyncWriteDone;
      req.buffer = null;
      req.owner = null;
    } else if (req.handle !== h) {
      req.handle = h;
    }
    const err = h.writeBuffer(req, data);
    if (err !== 0) {
      this.req = null;
      s.destroy(writeError(err));
      return false;
    }
    if (b.streamBaseState[b.kLastWriteWasAsync] === 0) {
      this.req = req;
      directWriteStats.direct++;
      return true;
    }
    directWriteStats.queued++;
    // libuv holds `data` and the request until the write completes.
    req.buffer = data;
    req.owner = this;
    this.req = null;
    this.pending++;
    return false;
  }

  /** Whether bytes are still on their way to the kernel (written through this writer or not). */
  get busy(): boolean {
    return this.pending !== 0 || this.socket.writableLength !== 0;
  }

  /** @internal called by the request's completion. */
  completed(status: number): void {
    this.pending--;
    if (this.socket.destroyed) return;
    if (status < 0) {
      this.socket.destroy(writeError(status));
      return;
    }
    if (this.pending === 0) this.onDrain();
  }
}
