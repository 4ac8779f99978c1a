// HTTP/2 frame layout (RFC 9113 §4.1): helpers that write frames into caller buffers. The
// connection code parses frame headers inline on its read buffers; these are for writing
// and for tests.
import { FRAME_HEADER } from './constants.js';

/** Writes a 9-octet frame header at `off`; returns `off + 9`. */
export function writeFrameHeader(
  buf: Uint8Array,
  off: number,
  len: number,
  type: number,
  flags: number,
  streamId: number,
): number {
  buf[off] = (len >>> 16) & 0xff;
  buf[off + 1] = (len >>> 8) & 0xff;
  buf[off + 2] = len & 0xff;
  buf[off + 3] = type;
  buf[off + 4] = flags;
  buf[off + 5] = (streamId >>> 24) & 0x7f;
  buf[off + 6] = (streamId >>> 16) & 0xff;
  buf[off + 7] = (streamId >>> 8) & 0xff;
  buf[off + 8] = streamId & 0xff;
  return off + FRAME_HEADER;
}

/** Writes a 31-bit big-endian value (stream id, window increment) at `off`. */
export function writeU31(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 24) & 0x7f;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}

export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 24) & 0xff;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}

export function readU31(buf: Uint8Array, off: number): number {
  return ((buf[off] & 0x7f) * 0x100_0000 + (buf[off + 1] << 16)) | (buf[off + 2] << 8) | buf[off + 3];
}

export function readU32(buf: Uint8Array, off: number): number {
  return buf[off] * 0x100_0000 + ((buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]);
}

/** One whole frame as a new Buffer (control frames, tests). */
export function encodeFrame(type: number, flags: number, streamId: number, payload?: Uint8Array): Buffer {
  const len = payload === undefined ? 0 : payload.length;
  const b = Buffer.allocUnsafe(FRAME_HEADER + len);
  writeFrameHeader(b, 0, len, type, flags, streamId);
  if (payload !== undefined) b.set(payload, FRAME_HEADER);
  return b;
}

/** SETTINGS payload from (id, value) pairs. */
export function settingsPayload(pairs: readonly (readonly [number, number])[]): Buffer {
  const b = Buffer.allocUnsafe(6 * pairs.length);
  for (let i = 0; i < pairs.length; i++) {
    b.writeUInt16BE(pairs[i][0], 6 * i);
    writeU32(b, 6 * i + 2, pairs[i][1]);
  }
  return b;
}

export interface ParsedFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** Splits complete frames off `buf` (tests and tools); returns them and the rest. */
export function parseFrames(buf: Buffer): { frames: ParsedFrame[]; rest: Buffer } {
  const frames: ParsedFrame[] = [];
  let p = 0;
  while (buf.length - p >= FRAME_HEADER) {
    const len = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2];
    if (buf.length - p < FRAME_HEADER + len) break;
    frames.push({
      type: buf[p + 3],
      flags: buf[p + 4],
      streamId: readU31(buf, p + 5),
      payload: buf.subarray(p + FRAME_HEADER, p + FRAME_HEADER + len),
    });
    p += FRAME_HEADER + len;
  }
  return { frames, rest: buf.subarray(p) };
}
