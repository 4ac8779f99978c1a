// One HTTP/2 connection driven frame by frame (RFC 9113) with our own codec: the base of
// the client-side connections of the frame-level proxy (src/proxy/h2frame) and of the
// pooled upstream connections (h2frame-pool.ts).
//
// Reads: frames are parsed in place on the socket's read buffers; DATA payloads are handed
// on as subarrays (only a frame split across two reads is copied, once). Writes: control
// frames and header blocks go into a slab buffer, DATA payloads are queued by reference,
// and everything produced while handling one read is written in one corked batch at the
// end of the tick. Flow control is enforced both ways: we never send beyond the peer's
// windows (the rest waits on the stream), and a stream's receive window is credited back
// only when its bytes left on the other connection (`consume`), so a slow reader stops
// its sender instead of growing our buffers. Connection-level receive windows are credited
// as DATA arrives (the per-stream windows bound what we hold); a peer that sends beyond
// a window gets FLOW_CONTROL_ERROR.
import type net from 'node:net';
import {
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  FRAME_HEADER,
  FrameType,
  MAX_WINDOW,
  PREFACE,
  Setting,
} from '../codec/http2/constants.js';
import { readU31, readU32, writeFrameHeader, writeU31, writeU32 } from '../codec/http2/frame.js';
import { type HeaderObjectLike, HpackDecoder, HpackEncoder, HpackError } from '../codec/http2/hpack.js';

/** What a stream's owner hears from the connection. One object serves both sides of a proxied stream. */
export interface FrameStreamUser {
  /** A complete header block (response/request headers or trailers) decoded into `dec`. */
  onHeaders(s: H2Stream, dec: HpackDecoder, endStream: boolean): void;
  onData(s: H2Stream, data: Buffer, endStream: boolean): void;
  /** The peer reset the stream. onClose follows. */
  onReset(s: H2Stream, code: number): void;
  /** The connection went away; `refused` = the peer never processed the stream (GOAWAY above its last id). onClose follows. */
  onLost(s: H2Stream, refused: boolean): void;
  /** `n` DATA bytes of this stream were written for the peer: credit the sender on the other side. */
  onSent(s: H2Stream, n: number): void;
  /** The peer broke the protocol on this stream; we reset it with `code` right after. */
  onStreamError(s: H2Stream, code: number): void;
  /**
   * A malformed header block from the server (RFC 9113 §8.2, §8.3; `why` says how): the
   * stream is reset with PROTOCOL_ERROR right after, and nothing of the block is delivered.
   */
  onBadHeaders(s: H2Stream, why: string): void;
  /** The stream is closed both ways (ended, reset, or lost); once. */
  onClose(s: H2Stream): void;
}

/** Per-connection state of one stream. */
export class H2Stream {
  id = 0;
  user: FrameStreamUser;
  /** What the peer lets us send on this stream. */
  sendWin: number;
  /** What we still let the peer send (advertised minus received plus credited). */
  recvWin: number;
  /** Consumed bytes not yet credited to the peer. */
  unacked = 0;
  /** DATA waiting for window, then END_STREAM (qEnd) or trailers (qTrailers). */
  q: Buffer[] | null = null;
  qBytes = 0;
  qEnd = false;
  qTrailers: HeaderObjectLike | undefined;
  /** After our END_STREAM, reset the stream (NO_ERROR) if the peer is still sending. */
  rstOnEnd = false;
  /** END_STREAM written / received. */
  localEnded = false;
  remoteEnded = false;
  /** Response headers (or request headers, client side) seen. */
  gotHeaders = false;
  closed = false;
  blocked = false;

  constructor(user: FrameStreamUser, sendWin: number, recvWin: number) {
    this.user = user;
    this.sendWin = sendWin;
    this.recvWin = recvWin;
  }
}

export interface FrameConnOptions {
  /** SETTINGS_INITIAL_WINDOW_SIZE we advertise (per stream). */
  streamWindow: number;
  /** Connection receive window we top up to. */
  connWindow: number;
  maxHeaderList: number;
  /** Bytes of one header block (HEADERS + CONTINUATION) before the connection is cut. */
  maxHeaderBlock: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS we advertise (0 = do not send). */
  maxConcurrentStreams: number;
  /** Non-ACK PING + SETTINGS frames per second before ENHANCE_YOUR_CALM. */
  controlPerSecond: number;
}

const SLAB = 64 * 1024;
/** Past this many bytes queued on the socket, DATA waits (socket-level backpressure). */
const SOCKET_HIGH = 1 << 20;
/** Small DATA payloads are copied into the slab: one write instead of two. */
const COPY_DATA_BELOW = 1024;

let dirty: FrameConn[] = [];
let flushScheduled = false;

function flushAll(): void {
  flushScheduled = false;
  const list = dirty;
  dirty = [];
  for (let i = 0; i < list.length; i++) list[i].flush();
}

function onSocketData(this: net.Socket & { [kConn]?: FrameConn }, chunk: Buffer): void {
  this[kConn]?.onRead(chunk);
}

function onSocketDrain(this: net.Socket & { [kConn]?: FrameConn }): void {
  this[kConn]?.flushBlocked();
}

function onSocketClose(this: net.Socket & { [kConn]?: FrameConn }): void {
  this[kConn]?.closed();
}

function onSocketError(): void {}

export const kConn = Symbol('switchyard.h2frame.conn');

export abstract class FrameConn {
  readonly socket: net.Socket;
  readonly opts: FrameConnOptions;
  readonly streams = new Map<number, H2Stream>();
  readonly enc = new HpackEncoder();
  readonly dec: HpackDecoder;
  /** Peer settings. */
  peerMaxFrame = DEFAULT_MAX_FRAME;
  peerInitialWindow = DEFAULT_WINDOW;
  peerMaxStreams = 0xffff_ffff;
  peerSettingsSeen = false;
  connSendWin = DEFAULT_WINDOW;
  connRecvWin = DEFAULT_WINDOW;
  connUnacked = 0;
  /** Our SETTINGS acked by the peer (until then it may use the default window). */
  settingsAcked = false;
  dead = false;
  goawaySent = false;
  goawayReceived = false;
  // read state
  private rest: Buffer | null = null;
  private hdrStream = 0;
  private hdrFlags = 0;
  private hdrParts: Buffer[] | null = null;
  private hdrLen = 0;
  // write state
  private slab: Buffer = Buffer.allocUnsafe(SLAB);
  private slabStart = 0;
  private slabPos = 0;
  private out: Buffer[] = [];
  private outBytes = 0;
  private isDirty = false;
  private blockedStreams: H2Stream[] = [];
  private ctlWindow = 0;
  private ctlCount = 0;

  constructor(socket: net.Socket, opts: FrameConnOptions) {
    this.socket = socket;
    this.opts = opts;
    this.dec = new HpackDecoder(opts.maxHeaderList, 256);
    (socket as net.Socket & { [kConn]?: FrameConn })[kConn] = this;
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    socket.on('drain', onSocketDrain);
  }

  /** Starts reading (after the caller wrote or checked the preface). */
  startReading(): void {
    this.socket.on('data', onSocketData);
    this.socket.resume();
  }

  /** Our SETTINGS and the connection window top-up. */
  writeSettings(client: boolean): void {
    const o = this.opts;
    const pairs: number[] = [];
    if (client) pairs.push(Setting.ENABLE_PUSH, 0);
    if (o.maxConcurrentStreams > 0) pairs.push(Setting.MAX_CONCURRENT_STREAMS, o.maxConcurrentStreams);
    if (o.streamWindow !== DEFAULT_WINDOW) pairs.push(Setting.INITIAL_WINDOW_SIZE, o.streamWindow);
    pairs.push(Setting.MAX_HEADER_LIST_SIZE, o.maxHeaderList);
    const n = pairs.length / 2;
    const off = this.reserve(FRAME_HEADER + 6 * n);
    const b = this.slab;
    writeFrameHeader(b, off, 6 * n, FrameType.SETTINGS, 0, 0);
    for (let i = 0; i < n; i++) {
      const p = off + FRAME_HEADER + 6 * i;
      b[p] = 0;
      b[p + 1] = pairs[2 * i];
      writeU32(b, p + 2, pairs[2 * i + 1]);
    }
    this.slabPos = off + FRAME_HEADER + 6 * n;
    if (o.connWindow > DEFAULT_WINDOW) {
      this.writeWindowUpdate(0, o.connWindow - DEFAULT_WINDOW);
      this.connRecvWin = o.connWindow;
    }
    this.markDirty();
  }

  // ---------------------------------------------------------------- reading

  /** Bytes of the client connection preface still to come (server side, e.g. after TLS+ALPN). */
  prefaceLeft = 0;

  onRead(chunk: Buffer): void {
    if (this.dead) return;
    let p = 0;
    const end = chunk.length;
    if (this.prefaceLeft > 0) {
      const at = PREFACE.length - this.prefaceLeft;
      const n = Math.min(this.prefaceLeft, end);
      if (chunk.compare(PREFACE, at, at + n, 0, n) !== 0) {
        this.connError(ErrorCode.PROTOCOL_ERROR, 'bad connection preface');
        return;
      }
      this.prefaceLeft -= n;
      p = n;
      if (p === end) return;
    }
    // Complete a frame split across reads (the only copy on the read path).
    while (this.rest !== null) {
      const r = this.rest;
      if (r.length < FRAME_HEADER) {
        const take = Math.min(FRAME_HEADER - r.length, end - p);
        this.rest = Buffer.concat([r, chunk.subarray(p, p + take)]);
        p += take;
        if (this.rest.length < FRAME_HEADER) return;
        continue;
      }
      const len = (r[0] << 16) | (r[1] << 8) | r[2];
      if (len > DEFAULT_MAX_FRAME) {
        this.connError(ErrorCode.FRAME_SIZE_ERROR, 'frame too large');
        return;
      }
      const need = FRAME_HEADER + len - r.length;
      const take = Math.min(need, end - p);
      const f = take > 0 ? Buffer.concat([r, chunk.subarray(p, p + take)]) : r;
      p += take;
      if (take < need) {
        this.rest = f;
        return;
      }
      this.rest = null;
      this.frame(f, FRAME_HEADER, FRAME_HEADER + len, f[3], f[4], readU31(f, 5));
      if (this.dead) return;
    }
    while (end - p >= FRAME_HEADER) {
      const len = (chunk[p] << 16) | (chunk[p + 1] << 8) | chunk[p + 2];
      if (len > DEFAULT_MAX_FRAME) {
        this.connError(ErrorCode.FRAME_SIZE_ERROR, 'frame too large');
        return;
      }
      if (end - p < FRAME_HEADER + len) break;
      const s = p + FRAME_HEADER;
      this.frame(chunk, s, s + len, chunk[p + 3], chunk[p + 4], readU31(chunk, p + 5));
      if (this.dead) return;
      p = s + len;
    }
    if (p < end) this.rest = chunk.subarray(p);
  }

  private frame(b: Buffer, s: number, e: number, type: number, flags: number, id: number): void {
    if (this.hdrParts !== null && type !== FrameType.CONTINUATION) {
      this.connError(ErrorCode.PROTOCOL_ERROR, 'frame inside a header block');
      return;
    }
    switch (type) {
      case FrameType.DATA:
        this.dataFrame(b, s, e, flags, id);
        return;
      case FrameType.HEADERS:
        this.headersFrame(b, s, e, flags, id);
        return;
      case FrameType.CONTINUATION:
        this.continuationFrame(b, s, e, flags, id);
        return;
      case FrameType.RST_STREAM: {
        if (e - s !== 4 || id === 0) {
          this.connError(ErrorCode.PROTOCOL_ERROR, 'bad RST_STREAM');
          return;
        }
        const st = this.streams.get(id);
        if (st !== undefined) this.remoteReset(st, readU32(b, s));
        else this.resetUnknown(id);
        return;
      }
      case FrameType.SETTINGS:
        this.settingsFrame(b, s, e, flags, id);
        return;
      case FrameType.PING:
        if (e - s !== 8 || id !== 0) {
          this.connError(ErrorCode.PROTOCOL_ERROR, 'bad PING');
          return;
        }
        if ((flags & Flag.ACK) !== 0) {
          this.onPingAck();
          return;
        }
        if (!this.countControl()) return;
        {
          const off = this.reserve(FRAME_HEADER + 8);
          writeFrameHeader(this.slab, off, 8, FrameType.PING, Flag.ACK, 0);
          b.copy(this.slab, off + FRAME_HEADER, s, e);
          this.slabPos = off + FRAME_HEADER + 8;
          this.markDirty();
        }
        return;
      case FrameType.GOAWAY:
        if (e - s < 8 || id !== 0) {
          this.connError(ErrorCode.PROTOCOL_ERROR, 'bad GOAWAY');
          return;
        }
        this.goawayReceived = true;
        this.onGoaway(readU31(b, s), readU32(b, s + 4));
        return;
      case FrameType.WINDOW_UPDATE:
        this.windowUpdateFrame(b, s, e, id);
        return;
      case FrameType.PRIORITY:
        // Validated, then ignored (RFC 9113 §5.3.2 deprecates the priority scheme).
        if (id === 0) this.connError(ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        else if (e - s !== 5) this.priorityError(id, ErrorCode.FRAME_SIZE_ERROR);
        else if (readU31(b, s) === id) this.priorityError(id, ErrorCode.PROTOCOL_ERROR);
        return;
      case FrameType.PUSH_PROMISE:
        this.connError(ErrorCode.PROTOCOL_ERROR, 'push is disabled');
        return;
      default:
        return; // unknown frame types are ignored (§4.1)
    }
  }

  private dataFrame(b: Buffer, s: number, e: number, flags: number, id: number): void {
    if (id === 0) {
      this.connError(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
      return;
    }
    const flen = e - s;
    // The whole frame counts against the windows, padding included (§6.9.1).
    this.connRecvWin -= flen;
    if (this.connRecvWin < 0) {
      this.connError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window exceeded');
      return;
    }
    this.connUnacked += flen;
    if (this.connUnacked >= this.opts.connWindow >>> 2) {
      this.writeWindowUpdate(0, this.connUnacked);
      this.connRecvWin += this.connUnacked;
      this.connUnacked = 0;
    }
    if ((flags & Flag.PADDED) !== 0) {
      if (flen < 1) {
        this.connError(ErrorCode.PROTOCOL_ERROR, 'bad padding');
        return;
      }
      const pad = b[s];
      s += 1;
      e -= pad;
      if (e < s) {
        this.connError(ErrorCode.PROTOCOL_ERROR, 'bad padding');
        return;
      }
    }
    const st = this.streams.get(id);
    if (st === undefined) {
      this.dataUnknown(id);
      return;
    }
    if (st.remoteEnded) {
      this.streamError(st, ErrorCode.STREAM_CLOSED);
      return;
    }
    st.recvWin -= flen;
    if (st.recvWin < 0) {
      this.streamError(st, ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    // Padding is ours to credit at once: it never reaches the other side.
    const pad = flen - (e - s);
    if (pad > 0) this.consume(st, pad);
    const end = (flags & Flag.END_STREAM) !== 0;
    if (end) st.remoteEnded = true;
    st.user.onData(st, b.subarray(s, e), end);
    if (end && st.localEnded && !st.closed) this.closeStream(st);
  }

  private headersFrame(b: Buffer, s: number, e: number, flags: number, id: number): void {
    if (id === 0) {
      this.connError(ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
      return;
    }
    if ((flags & Flag.PADDED) !== 0) {
      const pad = b[s];
      s += 1;
      e -= pad;
      if (e < s) {
        this.connError(ErrorCode.PROTOCOL_ERROR, 'bad padding');
        return;
      }
    }
    if ((flags & Flag.PRIORITY) !== 0) {
      s += 5;
      if (e < s) {
        this.connError(ErrorCode.PROTOCOL_ERROR, 'bad HEADERS');
        return;
      }
    }
    if ((flags & Flag.END_HEADERS) !== 0) {
      this.headerBlock(b, s, e, flags, id);
      return;
    }
    this.hdrStream = id;
    this.hdrFlags = flags;
    this.hdrParts = [Buffer.from(b.subarray(s, e))];
    this.hdrLen = e - s;
  }

  private continuationFrame(b: Buffer, s: number, e: number, flags: number, id: number): void {
    const parts = this.hdrParts;
    if (parts === null || id !== this.hdrStream) {
      this.connError(ErrorCode.PROTOCOL_ERROR, 'unexpected CONTINUATION');
      return;
    }
    this.hdrLen += e - s;
    // CONTINUATION flood bound: a header block larger than this ends the connection.
    if (this.hdrLen > this.opts.maxHeaderBlock || parts.length > 512) {
      this.connError(ErrorCode.ENHANCE_YOUR_CALM, 'header block too large (CONTINUATION flood)');
      return;
    }
    parts.push(Buffer.from(b.subarray(s, e)));
    if ((flags & Flag.END_HEADERS) === 0) return;
    this.hdrParts = null;
    const block = Buffer.concat(parts, this.hdrLen);
    this.headerBlock(block, 0, block.length, this.hdrFlags, id);
  }

  private headerBlock(b: Buffer, s: number, e: number, flags: number, id: number): void {
    if (e - s > this.opts.maxHeaderBlock) {
      this.connError(ErrorCode.ENHANCE_YOUR_CALM, 'header block too large');
      return;
    }
    if (this.dec.decode(b, s, e) !== HpackError.OK) {
      this.connError(ErrorCode.COMPRESSION_ERROR, 'bad header block');
      return;
    }
    this.onHeaderBlock(id, (flags & Flag.END_STREAM) !== 0);
  }

  private settingsFrame(b: Buffer, s: number, e: number, flags: number, id: number): void {
    if (id !== 0) {
      this.connError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
      return;
    }
    if ((flags & Flag.ACK) !== 0) {
      this.settingsAcked = true;
      return;
    }
    if ((e - s) % 6 !== 0) {
      this.connError(ErrorCode.FRAME_SIZE_ERROR, 'bad SETTINGS');
      return;
    }
    if (this.peerSettingsSeen && !this.countControl()) return;
    for (let p = s; p < e; p += 6) {
      const k = (b[p] << 8) | b[p + 1];
      const v = readU32(b, p + 2);
      switch (k) {
        case Setting.HEADER_TABLE_SIZE:
          this.enc.setPeerTableSize(v);
          break;
        case Setting.MAX_CONCURRENT_STREAMS:
          this.peerMaxStreams = v;
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          if (v > MAX_WINDOW) {
            this.connError(ErrorCode.FLOW_CONTROL_ERROR, 'bad initial window');
            return;
          }
          const delta = v - this.peerInitialWindow;
          this.peerInitialWindow = v;
          if (delta !== 0) for (const st of this.streams.values()) st.sendWin += delta;
          if (delta > 0) for (const st of this.streams.values()) if (st.q !== null) this.drainQueue(st);
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          if (v < DEFAULT_MAX_FRAME || v > 16_777_215) {
            this.connError(ErrorCode.PROTOCOL_ERROR, 'bad max frame size');
            return;
          }
          this.peerMaxFrame = v;
          break;
        default:
          break;
      }
    }
    const off = this.reserve(FRAME_HEADER);
    writeFrameHeader(this.slab, off, 0, FrameType.SETTINGS, Flag.ACK, 0);
    this.slabPos = off + FRAME_HEADER;
    this.markDirty();
    const first = !this.peerSettingsSeen;
    this.peerSettingsSeen = true;
    this.onSettings(first);
    this.flushBlocked();
  }

  private windowUpdateFrame(b: Buffer, s: number, e: number, id: number): void {
    if (e - s !== 4) {
      this.connError(ErrorCode.FRAME_SIZE_ERROR, 'bad WINDOW_UPDATE');
      return;
    }
    const inc = readU31(b, s);
    if (id === 0) {
      if (inc === 0) {
        this.connError(ErrorCode.PROTOCOL_ERROR, 'zero window increment');
        return;
      }
      this.connSendWin += inc;
      if (this.connSendWin > MAX_WINDOW) {
        this.connError(ErrorCode.FLOW_CONTROL_ERROR, 'window overflow');
        return;
      }
      this.flushBlocked();
      return;
    }
    const st = this.streams.get(id);
    if (st === undefined) return;
    if (inc === 0) {
      this.streamError(st, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    st.sendWin += inc;
    if (st.sendWin > MAX_WINDOW) {
      this.streamError(st, ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    if (st.q !== null) this.drainQueue(st);
  }

  /** PING and SETTINGS flood bound (each must be answered): too many in a second → GOAWAY. */
  private countControl(): boolean {
    const now = Date.now();
    if (now - this.ctlWindow >= 1000) {
      this.ctlWindow = now;
      this.ctlCount = 0;
    }
    if (++this.ctlCount <= this.opts.controlPerSecond) return true;
    this.connError(ErrorCode.ENHANCE_YOUR_CALM, 'PING/SETTINGS flood');
    return false;
  }

  // --------------------------------------------------------------- hooks

  /** A complete header block for stream `id` is decoded in `this.dec`. */
  protected abstract onHeaderBlock(id: number, endStream: boolean): void;
  /** RST_STREAM for a stream we do not track (already closed): ignored by default. */
  protected resetUnknown(_id: number): void {}
  /** DATA for a stream we do not track (closed or reset by us): its window was already credited. */
  protected dataUnknown(_id: number): void {}
  protected abstract onGoaway(lastId: number, code: number): void;
  protected onSettings(_first: boolean): void {}
  protected onPingAck(): void {}
  /** The socket closed: every stream is lost. */
  protected abstract onClosed(): void;
  /** A connection error happened (already GOAWAY'd and closing). */
  protected onConnError(_code: number, _why: string): void {}

  // -------------------------------------------------------------- streams

  /** Registers a stream under `id` with our windows. */
  addStream(st: H2Stream, id: number): void {
    st.id = id;
    st.sendWin = this.peerInitialWindow;
    st.recvWin = this.opts.streamWindow;
    this.streams.set(id, st);
  }

  private remoteReset(st: H2Stream, code: number): void {
    st.remoteEnded = true;
    st.localEnded = true;
    this.dropQueue(st);
    st.user.onReset(st, code);
    if (!st.closed) this.closeStream(st);
  }

  /** A bad PRIORITY frame is a stream error (RFC 9113 §6.3), also on a stream not open yet. */
  private priorityError(id: number, code: number): void {
    const st = this.streams.get(id);
    if (st !== undefined) this.streamError(st, code);
    else this.writeRst(id, code);
  }

  /** A stream error caused by the peer (RFC 9113 §5.4.2): the owner hears it, then RST_STREAM. */
  streamError(st: H2Stream, code: number): void {
    if (st.closed) return;
    st.user.onStreamError(st, code);
    this.resetStream(st, code);
  }

  /** Sends RST_STREAM and closes the stream. */
  resetStream(st: H2Stream, code: number): void {
    if (st.closed) return;
    this.writeRst(st.id, code);
    st.localEnded = true;
    st.remoteEnded = true;
    this.dropQueue(st);
    this.closeStream(st);
  }

  protected closeStream(st: H2Stream): void {
    if (st.closed) return;
    st.closed = true;
    this.streams.delete(st.id);
    if (st.blocked) {
      st.blocked = false;
      const i = this.blockedStreams.indexOf(st);
      if (i >= 0) this.blockedStreams.splice(i, 1);
    }
    this.streamClosed(st);
    st.user.onClose(st);
  }

  /** Book-keeping when a stream closes (slot release, idle tracking). */
  protected streamClosed(_st: H2Stream): void {}

  /** The peer ended its side of `st` (END_STREAM on HEADERS). */
  protected remoteEnd(st: H2Stream): void {
    st.remoteEnded = true;
    if (st.localEnded && !st.closed) this.closeStream(st);
  }

  private dropQueue(st: H2Stream): void {
    st.q = null;
    st.qBytes = 0;
    st.qEnd = false;
    st.qTrailers = undefined;
  }

  /** `n` bytes received on `st` left us: credit the peer (batched to a quarter window). */
  consume(st: H2Stream, n: number): void {
    if (st.closed || st.remoteEnded) return;
    st.unacked += n;
    if (st.unacked >= this.opts.streamWindow >>> 2) {
      this.writeWindowUpdate(st.id, st.unacked);
      st.recvWin += st.unacked;
      st.unacked = 0;
    }
  }

  /** Fails every stream (the connection is gone). */
  protected loseAll(refusedAbove: number): void {
    for (const st of [...this.streams.values()]) {
      if (st.closed) continue;
      st.localEnded = true;
      st.remoteEnded = true;
      this.dropQueue(st);
      st.user.onLost(st, st.id > refusedAbove);
      this.closeStream(st);
    }
  }

  // --------------------------------------------------------------- writing

  /** HEADERS (+ CONTINUATION) for `st`, encoded now (HPACK state follows emission order). */
  sendHeaders(st: H2Stream, h: HeaderObjectLike, endStream: boolean, never?: readonly string[]): void {
    if (st.closed || st.localEnded) return;
    this.writeBlock(st, this.enc.encode(h, never), endStream);
  }

  /** HEADERS from a decoder's field arrays, minus `skip` names (no header object built). */
  sendHeaderList(
    st: H2Stream,
    d: { names: string[]; values: string[]; count: number; neverIndexed: string[] | undefined },
    skip: ReadonlySet<string> | undefined,
    endStream: boolean,
  ): void {
    if (st.closed || st.localEnded) return;
    this.writeBlock(st, this.enc.encodeList(d.names, d.values, d.count, skip, d.neverIndexed), endStream);
  }

  private writeBlock(st: H2Stream, len: number, endStream: boolean): void {
    const block = this.enc.buf;
    const max = this.peerMaxFrame;
    let p = 0;
    let first = true;
    do {
      const n = Math.min(max, len - p);
      const last = p + n >= len;
      const off = this.reserve(FRAME_HEADER + n);
      let flags = last ? Flag.END_HEADERS : 0;
      if (first && endStream) flags |= Flag.END_STREAM;
      writeFrameHeader(this.slab, off, n, first ? FrameType.HEADERS : FrameType.CONTINUATION, flags, st.id);
      block.copy(this.slab, off + FRAME_HEADER, p, p + n);
      this.slabPos = off + FRAME_HEADER + n;
      p += n;
      first = false;
    } while (p < len);
    this.markDirty();
    if (endStream) this.localEnd(st);
  }

  /** Trailers: after any queued DATA, with END_STREAM. */
  sendTrailers(st: H2Stream, h: HeaderObjectLike): void {
    if (st.closed || st.localEnded) return;
    if (st.q !== null) {
      st.qTrailers = h;
      st.qEnd = true;
      return;
    }
    this.sendHeaders(st, h, true);
  }

  /**
   * DATA for `st`: as much as the windows allow now, the rest queued on the stream (by
   * reference) until WINDOW_UPDATE. `user.onSent` reports what went out.
   */
  sendData(st: H2Stream, data: Buffer, endStream: boolean): void {
    if (st.closed || st.localEnded || st.qEnd) return;
    if (st.q !== null) {
      if (data.length > 0) {
        st.q.push(data);
        st.qBytes += data.length;
      }
      if (endStream) st.qEnd = true;
      return;
    }
    const sent = this.writeData(st, data, 0, endStream);
    if (sent < data.length) {
      st.q = [sent === 0 ? data : data.subarray(sent)];
      st.qBytes = data.length - sent;
      st.qEnd = endStream;
      this.block(st);
    }
  }

  /** Ends our side of `st` (empty DATA with END_STREAM after anything queued). */
  endStream(st: H2Stream): void {
    this.sendData(st, EMPTY, true);
  }

  /** Writes DATA frames from data[from..]; returns the offset reached. */
  private writeData(st: H2Stream, data: Buffer, from: number, endStream: boolean): number {
    let p = from;
    const len = data.length;
    let sent = 0;
    while (p < len) {
      let n = len - p;
      if (n > st.sendWin) n = st.sendWin;
      if (n > this.connSendWin) n = this.connSendWin;
      if (n > this.peerMaxFrame) n = this.peerMaxFrame;
      const room = SOCKET_HIGH - this.socket.writableLength - this.outBytes;
      if (n > room) n = room;
      if (n <= 0) break;
      const last = p + n >= len;
      this.dataFrameOut(st.id, data, p, n, last && endStream);
      st.sendWin -= n;
      this.connSendWin -= n;
      p += n;
      sent += n;
    }
    if (p >= len && endStream && len === 0) this.dataFrameOut(st.id, data, 0, 0, true);
    if (sent > 0) st.user.onSent(st, sent);
    if (p >= len && endStream) this.localEnd(st);
    return p;
  }

  private dataFrameOut(id: number, data: Buffer, p: number, n: number, end: boolean): void {
    if (n < COPY_DATA_BELOW) {
      const off = this.reserve(FRAME_HEADER + n);
      writeFrameHeader(this.slab, off, n, FrameType.DATA, end ? Flag.END_STREAM : 0, id);
      data.copy(this.slab, off + FRAME_HEADER, p, p + n);
      this.slabPos = off + FRAME_HEADER + n;
    } else {
      const off = this.reserve(FRAME_HEADER);
      writeFrameHeader(this.slab, off, n, FrameType.DATA, end ? Flag.END_STREAM : 0, id);
      this.slabPos = off + FRAME_HEADER;
      this.pushRef(p === 0 && n === data.length ? data : data.subarray(p, p + n));
    }
    this.markDirty();
  }

  /** Sends what the stream's queue can now send; returns true when the queue emptied. */
  drainQueue(st: H2Stream): boolean {
    const q = st.q;
    if (q === null || st.closed) return true;
    while (q.length > 0) {
      const d = q[0];
      const isLast = q.length === 1;
      const endNow = isLast && st.qEnd && st.qTrailers === undefined;
      const p = this.writeData(st, d, 0, endNow);
      st.qBytes -= p;
      if (p < d.length) {
        q[0] = d.subarray(p);
        this.block(st);
        return false;
      }
      q.shift();
      if (st.closed) return true;
    }
    st.q = null;
    const tr = st.qTrailers;
    const end = st.qEnd;
    st.qTrailers = undefined;
    st.qEnd = false;
    if (tr !== undefined) this.sendHeaders(st, tr, true);
    else if (end && !st.localEnded) this.writeData(st, EMPTY, 0, true);
    return true;
  }

  /**
   * Remembers a stream that waits for the connection window or the socket. One waiting on
   * its own stream window is not listed: its WINDOW_UPDATE (or SETTINGS) wakes it.
   */
  private block(st: H2Stream): void {
    if (st.blocked || st.sendWin <= 0) return;
    st.blocked = true;
    this.blockedStreams.push(st);
  }

  /** Window (connection or socket) opened: let blocked streams send, in order. */
  flushBlocked(): void {
    if (this.blockedStreams.length === 0) return;
    const list = this.blockedStreams;
    this.blockedStreams = [];
    for (let i = 0; i < list.length; i++) {
      const st = list[i];
      st.blocked = false;
      if (st.closed) continue;
      if (this.connSendWin <= 0 || this.socket.writableLength + this.outBytes >= SOCKET_HIGH) this.block(st);
      else this.drainQueue(st);
    }
  }

  private localEnd(st: H2Stream): void {
    st.localEnded = true;
    if (st.remoteEnded) this.closeStream(st);
    else if (st.rstOnEnd) this.resetStream(st, ErrorCode.NO_ERROR);
  }

  writeRst(id: number, code: number): void {
    const off = this.reserve(FRAME_HEADER + 4);
    writeFrameHeader(this.slab, off, 4, FrameType.RST_STREAM, 0, id);
    writeU32(this.slab, off + FRAME_HEADER, code);
    this.slabPos = off + FRAME_HEADER + 4;
    this.markDirty();
  }

  writeWindowUpdate(id: number, inc: number): void {
    const off = this.reserve(FRAME_HEADER + 4);
    writeFrameHeader(this.slab, off, 4, FrameType.WINDOW_UPDATE, 0, id);
    writeU31(this.slab, off + FRAME_HEADER, inc);
    this.slabPos = off + FRAME_HEADER + 4;
    this.markDirty();
  }

  writeGoaway(lastId: number, code: number): void {
    this.goawaySent = true;
    const off = this.reserve(FRAME_HEADER + 8);
    writeFrameHeader(this.slab, off, 8, FrameType.GOAWAY, 0, 0);
    writeU31(this.slab, off + FRAME_HEADER, lastId);
    writeU32(this.slab, off + FRAME_HEADER + 4, code);
    this.slabPos = off + FRAME_HEADER + 8;
    this.markDirty();
  }

  writePing(data: number): void {
    const off = this.reserve(FRAME_HEADER + 8);
    writeFrameHeader(this.slab, off, 8, FrameType.PING, 0, 0);
    writeU32(this.slab, off + FRAME_HEADER, 0);
    writeU32(this.slab, off + FRAME_HEADER + 4, data);
    this.slabPos = off + FRAME_HEADER + 8;
    this.markDirty();
  }

  /** Raw bytes (the client preface). */
  writeRaw(b: Buffer): void {
    const off = this.reserve(b.length);
    b.copy(this.slab, off);
    this.slabPos = off + b.length;
    this.markDirty();
  }

  /** Connection error: GOAWAY(code), then close once it is written. */
  connError(code: number, why: string): void {
    if (this.dead) return;
    this.writeGoaway(this.lastPeerStream(), code);
    this.onConnError(code, why);
    this.shutdown();
    // The GOAWAY went to the kernel with the flush above; a peer that misbehaves is not
    // waited for (it may never read our FIN): the socket goes at once.
    setImmediate(destroyLater, this.socket);
  }

  /** Highest peer-initiated stream id we processed (for GOAWAY). */
  protected lastPeerStream(): number {
    return 0;
  }

  /** Flush what is pending, then end the socket; streams still open are lost. */
  shutdown(): void {
    if (this.dead) return;
    this.dead = true;
    this.flush();
    this.socket.end();
    // A peer that never reads must not keep the socket: destroy after a short grace.
    setTimeout(destroyLater, 1000, this.socket).unref();
  }

  /** Called by the socket's 'close'. */
  closed(): void {
    this.dead = true;
    this.out.length = 0;
    this.outBytes = 0;
    this.onClosed();
  }

  private reserve(n: number): number {
    if (this.slab.length - this.slabPos < n) {
      this.cutSlab();
      this.slab = Buffer.allocUnsafe(Math.max(n, SLAB));
      this.slabStart = 0;
      this.slabPos = 0;
    }
    return this.slabPos;
  }

  /** Moves the written part of the slab to the output list (never rewritten after). */
  private cutSlab(): void {
    if (this.slabPos > this.slabStart) {
      this.out.push(this.slab.subarray(this.slabStart, this.slabPos));
      this.outBytes += this.slabPos - this.slabStart;
      this.slabStart = this.slabPos;
    }
  }

  private pushRef(b: Buffer): void {
    this.cutSlab();
    this.out.push(b);
    this.outBytes += b.length;
  }

  protected markDirty(): void {
    if (this.isDirty) return;
    this.isDirty = true;
    dirty.push(this);
    if (!flushScheduled) {
      flushScheduled = true;
      process.nextTick(flushAll);
    }
  }

  flush(): void {
    this.isDirty = false;
    this.cutSlab();
    const out = this.out;
    if (out.length === 0) return;
    const sock = this.socket;
    if (sock.destroyed) {
      out.length = 0;
      this.outBytes = 0;
      return;
    }
    if (out.length === 1) {
      sock.write(out[0]);
    } else {
      sock.cork();
      for (let i = 0; i < out.length; i++) sock.write(out[i]);
      sock.uncork();
    }
    out.length = 0;
    this.outBytes = 0;
    // A slab with little room left is replaced now rather than cut into tiny writes.
    if (this.slab.length - this.slabPos < 512) {
      this.slab = Buffer.allocUnsafe(SLAB);
      this.slabStart = 0;
      this.slabPos = 0;
    }
  }
}

const EMPTY = Buffer.alloc(0);

function destroyLater(s: net.Socket): void {
  if (!s.destroyed) s.destroy();
}
