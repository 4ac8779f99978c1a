import type { SniffResult } from '../../core/types.js';
import type { Matcher, Verdict } from '../matcher.js';

// Thrift on the wire (Apache Thrift doc/specs/thrift-binary-protocol.md,
// thrift-compact-protocol.md, HeaderFormat.md):
//   strict binary message: 0x80 0x01 0x00 <type 1..4>, i32 name length, name, i32 seqid
//   compact message:       0x82 <type << 5 | version 1>, varint seqid, varint name length, name
//   framed transport:      i32 frame length, then one message
//   THeader:               i32 length, 0x0F 0xFF magic, u16 flags, i32 seqid, u16 header
//                          words, header (varint protocol id first: 0 binary, 2 compact)
// Lax (non-strict) binary starts with a bare name length and cannot be told from random
// bytes (envoyproxy/envoy#3509), so it is not recognised.

/**
 * Frames above this are refused by any sane server (Apache Thrift's default max frame is
 * ~16 MB); treating bigger "lengths" as not-Thrift keeps random bytes from matching.
 */
export const MAX_SNIFF_FRAME = 64 * 1024 * 1024;
/** Smallest complete compact message: 0x82, type/version, seqid, name length 0, STOP. */
const MIN_FRAME = 5;

const B = { StrictHi: 0x80, StrictLo: 0x01, Compact: 0x82, HeaderHi: 0x0f, HeaderLo: 0xff } as const;

/** Message types 1..4 (call, reply, exception, oneway). */
function isMessageType(t: number): boolean {
  return t >= 1 && t <= 4;
}

/** Compact second byte: type in the top 3 bits, version 1 in the low 5. */
function isCompactTypeVersion(b: number): boolean {
  return (b & 0x1f) === 0x01 && isMessageType(b >> 5);
}

/**
 * Checks `buf[off..]` as the start of a bare message. 'yes' on the first 4 bytes of strict
 * binary or the first 2 of compact.
 */
function message(buf: Buffer, off: number): Verdict {
  const n = buf.length - off;
  if (n < 1) return 'more';
  const b0 = buf[off];
  if (b0 === B.StrictHi) {
    if (n < 2) return 'more';
    if (buf[off + 1] !== B.StrictLo) return 'no';
    if (n < 3) return 'more';
    if (buf[off + 2] !== 0x00) return 'no';
    if (n < 4) return 'more';
    return isMessageType(buf[off + 3]) ? 'yes' : 'no';
  }
  if (b0 === B.Compact) {
    if (n < 2) return 'more';
    return isCompactTypeVersion(buf[off + 1]) ? 'yes' : 'no';
  }
  return 'no';
}

/** THeader after the 4-byte length: decided once the protocol id byte (offset 14) is in. */
function header(buf: Buffer, frameLen: number): Verdict {
  const n = buf.length;
  if (n < 6) return 'more';
  if (buf[5] !== B.HeaderLo) return 'no';
  if (n < 14) return 'more';
  const words = (buf[12] << 8) | buf[13];
  // The header is at least the protocol id and a transform count, and fits in the frame.
  if (words === 0 || 10 + words * 4 > frameLen) return 'no';
  return n < 15 ? 'more' : 'yes';
}

export function matchThrift(buf: Buffer, _seen: number): Verdict {
  const n = buf.length;
  if (n < 1) return 'more';
  const b0 = buf[0];
  if (b0 === B.StrictHi || b0 === B.Compact) return message(buf, 0);
  // Framed: a big-endian length; the cap means the first byte is small.
  if (b0 > MAX_SNIFF_FRAME >>> 24) return 'no';
  if (n < 4) return 'more';
  const frameLen = buf.readUInt32BE(0);
  if (frameLen < MIN_FRAME || frameLen > MAX_SNIFF_FRAME) return 'no';
  if (n < 5) return 'more';
  const b4 = buf[4];
  // 0x7F after the length is Finagle ThriftMux (Mux framing), which this gateway does not
  // speak: it falls through to 'no' and goes to tcp routes.
  if (b4 === B.HeaderHi) return header(buf, frameLen);
  return message(buf, 4);
}

/** Transport and protocol of a matched connection. */
export function thriftDetail(buf: Buffer): NonNullable<SniffResult['thrift']> {
  const b0 = buf[0];
  if (b0 === B.StrictHi) return { transport: 'unframed', protocol: 'binary' };
  if (b0 === B.Compact) return { transport: 'unframed', protocol: 'compact' };
  const b4 = buf[4];
  if (b4 === B.StrictHi) return { transport: 'framed', protocol: 'binary' };
  if (b4 === B.Compact) return { transport: 'framed', protocol: 'compact' };
  const proto = buf[14];
  return { transport: 'header', protocol: proto === 0 ? 'binary' : proto === 2 ? 'compact' : 'unknown' };
}

export const thriftMatcher: Matcher = {
  cls: 'thrift',
  match: matchThrift,
  settle: () => false,
};
