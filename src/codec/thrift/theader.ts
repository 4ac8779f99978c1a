// THeader transport (Apache Thrift doc/specs/HeaderFormat.md):
//   i32 length · u16 0x0FFF · u16 flags · i32 sequence · u16 header size / 4 ·
//   header (varint protocol id, varint transform count, transform ids, info blocks,
//   zero padding) · payload (one binary or compact message)
// The gateway unwraps the payload, forwards it in the pool's transport, and wraps the
// reply in a THeader frame with the client's flags and sequence. Transforms (zlib) and
// protocols other than binary/compact are refused.

import {
  THEADER_MAGIC,
  THEADER_PROTO_BINARY,
  THEADER_PROTO_COMPACT,
  type ThriftProtocol,
} from './constants.js';
import { readVarint32, varintBytes } from './varint.js';

export interface THeaderInfo {
  flags: number;
  sequence: number;
  protocol: ThriftProtocol;
  /** Offset of the payload from the frame start (the length word). */
  payloadOffset: number;
}

/** Bytes of the fixed part: length, magic, flags, sequence, header size. */
export const THEADER_FIXED = 14;

/** True when a frame starting at buf[off] (its length word) is a THeader frame. */
export function isTHeaderFrame(buf: Uint8Array, off: number): boolean {
  return buf[off + 4] === THEADER_MAGIC >> 8 && buf[off + 5] === (THEADER_MAGIC & 0xff);
}

/**
 * Bytes from the frame start needed to read the THeader headers (needs THEADER_FIXED
 * bytes first).
 */
export function theaderHeadersEnd(buf: Buffer, off: number): number {
  return THEADER_FIXED + buf.readUInt16BE(off + 12) * 4;
}

/**
 * Reads the THeader headers of the frame at buf[off] whose first `theaderHeadersEnd`
 * bytes are present and whose length word says `frameLen`. Returns an error string or the info.
 */
export function readTHeader(
  buf: Buffer,
  off: number,
  frameLen: number,
  out: THeaderInfo,
): string | undefined {
  const headersEnd = theaderHeadersEnd(buf, off);
  if (headersEnd > frameLen + 4) return 'THeader header size past the frame end';
  let p = off + THEADER_FIXED;
  const end = off + headersEnd;
  const protoId = readVarint32(buf, p, end);
  if (varintBytes <= 0) return 'malformed THeader protocol id';
  p += varintBytes;
  const transforms = readVarint32(buf, p, end);
  if (varintBytes <= 0) return 'malformed THeader transform count';
  if (transforms !== 0) return 'THeader transforms (zlib, snappy) are not supported';
  if (protoId === THEADER_PROTO_BINARY) out.protocol = 'binary';
  else if (protoId === THEADER_PROTO_COMPACT) out.protocol = 'compact';
  else return `THeader protocol id ${protoId} is not supported (binary and compact are)`;
  out.flags = buf.readUInt16BE(off + 6);
  out.sequence = buf.readInt32BE(off + 8);
  out.payloadOffset = headersEnd;
  return undefined;
}

/**
 * The THeader prefix for a reply payload of `payloadLength` bytes: no transforms, no info
 * headers, the request's flags and sequence. 18 bytes.
 */
export function writeTHeaderPrefix(
  protocol: ThriftProtocol,
  flags: number,
  sequence: number,
  payloadLength: number,
): Buffer {
  const b = Buffer.allocUnsafe(18);
  b.writeInt32BE(14 + payloadLength, 0);
  b.writeUInt16BE(THEADER_MAGIC, 4);
  b.writeUInt16BE(flags & 0xffff, 6);
  b.writeInt32BE(sequence | 0, 8);
  b.writeUInt16BE(1, 12); // one 32-bit word of headers
  b[14] = protocol === 'binary' ? THEADER_PROTO_BINARY : THEADER_PROTO_COMPACT;
  b[15] = 0; // no transforms
  b[16] = 0; // padding
  b[17] = 0;
  return b;
}
