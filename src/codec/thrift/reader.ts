// Splits a byte stream into Thrift messages for one transport, one read at a time.
//
// framed:   i32 length · message          (the length gives the end)
// unframed: message                       (the end is the STOP of its struct: scanned)
// header:   THeader frame (theader.ts)    (the length gives the end)
//
// A message is handed out as the list of read buffers it spans (subarrays, no copy),
// with only its first bytes made contiguous so the header can be read. Sizes are bounded:
// a frame or message over `limit` bytes stops the reader (`tooLarge`), and a message is
// never held beyond `limit` bytes plus one read.

import type { ThriftProtocol, ThriftTransport } from './constants.js';
import {
  HDR_BAD_NAME,
  headerError,
  type MessageHeader,
  newMessageHeader,
  readMessageHeader,
} from './message.js';
import { SCAN_ERROR, SCAN_NEED_MORE, StructScanner } from './scanner.js';
import {
  isTHeaderFrame,
  readTHeader,
  THEADER_FIXED,
  type THeaderInfo,
  theaderHeadersEnd,
} from './theader.js';

export interface ThriftMessage {
  /** Offsets in `header` are relative to parts[0]. */
  readonly header: MessageHeader;
  readonly transport: ThriftTransport;
  /** Wire bytes, transport prefix included; parts[0] holds the prefix and the whole message header. */
  parts: Buffer[];
  /** Total wire bytes. */
  size: number;
  /** Transport bytes before the protocol message in parts[0] (0, 4, or the THeader headers). */
  prefix: number;
  /** For THeader frames. */
  theader?: THeaderInfo;
}

/** Longest method name accepted (a bound on what a partial header may make us wait for). */
export const MAX_NAME_BYTES = 64 * 1024;

/** Smallest frame: a binary header with an empty name and a STOP, or a compact one. */
const MIN_FRAME = 4;

export class MessageReader {
  readonly transport: ThriftTransport;
  protocol: ThriftProtocol;
  private readonly limit: number;
  private chunks: Buffer[] = [];
  /** Offset of the first unconsumed byte in chunks[0]. */
  private off = 0;
  /** Unconsumed bytes in all chunks. */
  buffered = 0;
  // The message being assembled.
  private header: MessageHeader | undefined;
  private wire = 0; // its wire size once known (framed, header), else 0
  private prefix = 0;
  private theader: THeaderInfo | undefined;
  // Unframed: where the struct scan stopped (chunk index, offset) and bytes scanned.
  private scanner: StructScanner | undefined;
  private scanChunk = 0;
  private scanOff = 0;
  private scanned = 0;
  /** Set when the stream is unusable; the reader then returns nothing more. */
  error: string | undefined;
  /** The error is a frame or message over the limit. */
  tooLarge = false;

  /** Method names are decoded into `header.name` (false: left empty, a string saved per message). */
  private readonly names: boolean;

  constructor(transport: ThriftTransport, protocol: ThriftProtocol, limit: number, names = true) {
    this.transport = transport;
    this.protocol = protocol;
    this.limit = limit;
    this.names = names;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** True when bytes of a next message are buffered (a message has begun). */
  get partial(): boolean {
    return this.buffered > 0;
  }

  /** The next complete message, or undefined (need more bytes, or `error` is set). */
  next(): ThriftMessage | undefined {
    if (this.error !== undefined || this.buffered === 0) return undefined;
    if (this.header === undefined && !this.readHead()) return undefined;
    let size: number;
    if (this.transport === 'unframed') {
      size = this.scan();
      if (size <= 0) return undefined;
    } else {
      size = this.wire;
      if (this.buffered < size) return undefined;
    }
    const header = this.header!;
    const parts = this.take(size);
    const msg: ThriftMessage = { header, transport: this.transport, parts, size, prefix: this.prefix };
    if (this.theader !== undefined) msg.theader = this.theader;
    this.header = undefined;
    this.theader = undefined;
    this.wire = 0;
    return msg;
  }

  private fail(why: string, tooLarge = false): false {
    this.error = why;
    this.tooLarge = tooLarge;
    this.chunks = [];
    this.buffered = 0;
    return false;
  }

  /**
   * Reads the transport prefix and message header of the next message. False when more
   * bytes are needed or on error.
   */
  private readHead(): boolean {
    const hdr = newMessageHeader();
    if (this.transport === 'unframed') {
      while (true) {
        const first = this.chunks[0];
        const end = first.length;
        const r = readMessageHeader(first, this.off, end, this.protocol, MAX_NAME_BYTES, hdr, this.names);
        if (r > 0) {
          this.startMessage(hdr, 0);
          this.scanChunk = 0;
          this.scanOff = this.off + r;
          this.scanned = r;
          this.scanner ??= new StructScanner(this.protocol);
          this.scanner.reset();
          if (r > this.limit) return this.fail(`message over the ${this.limit}-byte limit`, true);
          return true;
        }
        if (r < 0) return this.fail(headerError(r), r === HDR_BAD_NAME);
        if (!this.coalesce()) return false;
      }
    }
    // framed / header: the length word first.
    if (!this.contiguous(4)) return false;
    const first = this.chunks[0];
    const frameLen = first.readInt32BE(this.off);
    if (frameLen > this.limit || frameLen < 0) {
      return this.fail(`frame of ${frameLen >>> 0} bytes over the ${this.limit}-byte limit`, true);
    }
    if (frameLen < MIN_FRAME) return this.fail(`frame of ${frameLen} bytes is too short`);
    let prefix = 4;
    let protocol = this.protocol;
    let theader: THeaderInfo | undefined;
    if (this.transport === 'header') {
      if (!this.contiguous(THEADER_FIXED)) return false;
      if (!isTHeaderFrame(this.chunks[0], this.off)) return this.fail('frame without the THeader magic');
      const need = theaderHeadersEnd(this.chunks[0], this.off);
      if (need > frameLen + 4) return this.fail('THeader header size past the frame end');
      if (!this.contiguous(need)) return false;
      theader = { flags: 0, sequence: 0, protocol, payloadOffset: 0 };
      const err = readTHeader(this.chunks[0], this.off, frameLen, theader);
      if (err !== undefined) return this.fail(err);
      prefix = theader.payloadOffset;
      protocol = theader.protocol;
    }
    const frameEnd = 4 + frameLen;
    while (true) {
      const buf = this.chunks[0];
      const end = Math.min(buf.length, this.off + frameEnd);
      const r = readMessageHeader(
        buf,
        this.off + prefix,
        end,
        protocol,
        Math.min(MAX_NAME_BYTES, frameLen),
        hdr,
        this.names,
      );
      if (r > 0) break;
      if (r < 0) return this.fail(headerError(r));
      if (buf.length - this.off >= frameEnd) return this.fail('message header runs past the frame end');
      if (!this.coalesce()) return false;
    }
    this.theader = theader;
    this.startMessage(hdr, prefix);
    this.wire = frameEnd;
    return true;
  }

  /** Makes header offsets relative to the message start. */
  private startMessage(hdr: MessageHeader, prefix: number): void {
    hdr.nameStart -= this.off;
    hdr.nameEnd -= this.off;
    hdr.seqidOffset -= this.off;
    this.header = hdr;
    this.prefix = prefix;
  }

  /** Ensures `n` contiguous bytes at the front; false when fewer are buffered. */
  private contiguous(n: number): boolean {
    while (this.chunks[0].length - this.off < n) {
      if (!this.coalesce()) return false;
    }
    return true;
  }

  /**
   * Merges the front chunk's unconsumed bytes with (part of) the next chunk: copies at
   * most twice the bytes of a header. False when there is no next chunk.
   */
  private coalesce(): boolean {
    if (this.chunks.length < 2) return false;
    const first = this.chunks[0];
    const second = this.chunks[1];
    const have = first.length - this.off;
    // Take enough of the second chunk to double what we have (at least 64 bytes), so a
    // header split over many tiny reads is merged in few steps.
    const take = Math.min(second.length, Math.max(64, have));
    const merged = Buffer.allocUnsafe(have + take);
    first.copy(merged, 0, this.off);
    second.copy(merged, have, 0, take);
    if (take === second.length) this.chunks.splice(0, 2, merged);
    else this.chunks.splice(0, 2, merged, second.subarray(take));
    this.off = 0;
    return true;
  }

  /** Unframed: continues the struct scan; the message's size when complete, else 0. */
  private scan(): number {
    const scanner = this.scanner!;
    while (this.scanChunk < this.chunks.length) {
      const buf = this.chunks[this.scanChunk];
      const r = scanner.feed(buf, this.scanOff, buf.length);
      if (r === SCAN_ERROR) {
        this.fail(`malformed message: ${scanner.error}`);
        return 0;
      }
      if (r === SCAN_NEED_MORE) {
        this.scanned += buf.length - this.scanOff;
        if (this.scanned > this.limit) {
          this.fail(`message over the ${this.limit}-byte limit`, true);
          return 0;
        }
        this.scanChunk++;
        this.scanOff = 0;
        continue;
      }
      this.scanned += r - this.scanOff;
      if (this.scanned > this.limit) {
        this.fail(`message over the ${this.limit}-byte limit`, true);
        return 0;
      }
      const size = this.scanned;
      this.scanned = 0;
      this.scanChunk = 0;
      this.scanOff = 0;
      return size;
    }
    return 0;
  }

  /** Removes the first `size` bytes as a list of subarrays. */
  private take(size: number): Buffer[] {
    const first = this.chunks[0];
    if (first.length - this.off >= size) {
      // The common case: the whole message is in one read.
      const part = first.subarray(this.off, this.off + size);
      this.off += size;
      this.buffered -= size;
      if (this.off === first.length) {
        if (this.chunks.length === 1) this.chunks.length = 0;
        else this.chunks.shift();
        this.off = 0;
      }
      return [part];
    }
    const parts: Buffer[] = [];
    let left = size;
    while (left > 0) {
      const buf = this.chunks[0];
      const n = Math.min(left, buf.length - this.off);
      parts.push(buf.subarray(this.off, this.off + n));
      left -= n;
      this.off += n;
      if (this.off === buf.length) {
        this.chunks.shift();
        this.off = 0;
      }
    }
    this.buffered -= size;
    return parts;
  }
}
