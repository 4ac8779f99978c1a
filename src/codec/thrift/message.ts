// Message headers of the strict binary and compact protocols: read (name, type, seqid and
// where the seqid sits), write, and rewrite the seqid in place.
//
// Strict binary (TBinaryProtocol, strictWrite):
//   i32 version|type (0x8001 0x00 type) · i32 name length · name · i32 seqid
// Compact (TCompactProtocol):
//   0x82 · (type << 5) | version(1) · varint32 seqid · varint32 name length · name
// Lax binary (no version word) is not accepted: stray bytes would read as a huge name
// (envoyproxy/envoy#3509).

import {
  BINARY_VERSION_1,
  CALL,
  COMPACT_PROTOCOL_ID,
  COMPACT_VERSION,
  ONEWAY,
  type ThriftProtocol,
} from './constants.js';
import { readVarint32, varint32Size, varintBytes, writeVarint32, writeVarint32Fixed } from './varint.js';

export interface MessageHeader {
  protocol: ThriftProtocol;
  type: number;
  /** The full name as sent, e.g. "Calculator:add" from a TMultiplexedProtocol client. */
  name: string;
  seqid: number; // int32
  /** Absolute offsets into the buffer the header was read from. */
  nameStart: number;
  nameEnd: number;
  seqidOffset: number;
  seqidLength: number; // 4 (binary) or the varint's length (compact)
  /** Bytes of the header; the argument/result struct starts right after. */
  length: number;
}

export function newMessageHeader(): MessageHeader {
  return {
    protocol: 'binary',
    type: 0,
    name: '',
    seqid: 0,
    nameStart: 0,
    nameEnd: 0,
    seqidOffset: 0,
    seqidLength: 0,
    length: 0,
  };
}

// readMessageHeader results below 0.
export const HDR_NEED_MORE = 0;
export const HDR_BAD_VERSION = -1;
export const HDR_BAD_TYPE = -2;
export const HDR_BAD_NAME = -3;
export const HDR_BAD_VARINT = -4;

export function headerError(code: number): string {
  switch (code) {
    case HDR_BAD_VERSION:
      return 'not a strict binary or compact Thrift message';
    case HDR_BAD_TYPE:
      return 'bad message type';
    case HDR_BAD_NAME:
      return 'method name length out of range';
    case HDR_BAD_VARINT:
      return 'malformed varint in message header';
    default:
      return 'bad message header';
  }
}

/** Which protocol a message starting with these bytes uses, or undefined. */
export function detectProtocol(b0: number, b1: number): ThriftProtocol | undefined {
  if (b0 === BINARY_VERSION_1 >> 8 && b1 === (BINARY_VERSION_1 & 0xff)) return 'binary';
  if (b0 === COMPACT_PROTOCOL_ID && (b1 & 0x1f) === COMPACT_VERSION) return 'compact';
  return undefined;
}

/**
 * Reads the message header at buf[off, end) into `out`. Returns the header length (> 0),
 * HDR_NEED_MORE when more bytes are needed, or a negative HDR_* error. Names longer than
 * `maxName` bytes are errors, so a partial header never waits for more than that.
 * `decodeName` false leaves `name` empty (replies: nobody routes on them).
 */
export function readMessageHeader(
  buf: Buffer,
  off: number,
  end: number,
  protocol: ThriftProtocol,
  maxName: number,
  out: MessageHeader,
  decodeName = true,
): number {
  if (protocol === 'binary') {
    if (end - off < 8) {
      if (end - off >= 2 && (buf[off] !== 0x80 || buf[off + 1] !== 0x01)) return HDR_BAD_VERSION;
      return HDR_NEED_MORE;
    }
    if (buf[off] !== 0x80 || buf[off + 1] !== 0x01) return HDR_BAD_VERSION;
    const type = buf[off + 3];
    if (type < CALL || type > ONEWAY) return HDR_BAD_TYPE;
    const nameLen = buf.readInt32BE(off + 4);
    if (nameLen < 0 || nameLen > maxName) return HDR_BAD_NAME;
    const nameStart = off + 8;
    const nameEnd = nameStart + nameLen;
    if (end < nameEnd + 4) return HDR_NEED_MORE;
    out.protocol = 'binary';
    out.type = type;
    out.name = decodeName ? buf.toString('utf8', nameStart, nameEnd) : '';
    out.seqid = buf.readInt32BE(nameEnd);
    out.nameStart = nameStart;
    out.nameEnd = nameEnd;
    out.seqidOffset = nameEnd;
    out.seqidLength = 4;
    out.length = nameEnd + 4 - off;
    return out.length;
  }
  if (end - off < 2) {
    if (end - off >= 1 && buf[off] !== COMPACT_PROTOCOL_ID) return HDR_BAD_VERSION;
    return HDR_NEED_MORE;
  }
  if (buf[off] !== COMPACT_PROTOCOL_ID || (buf[off + 1] & 0x1f) !== COMPACT_VERSION) return HDR_BAD_VERSION;
  const type = buf[off + 1] >> 5;
  if (type < CALL || type > ONEWAY) return HDR_BAD_TYPE;
  const seqidOffset = off + 2;
  const seqid = readVarint32(buf, seqidOffset, end) | 0;
  const seqidLength = varintBytes;
  if (seqidLength <= 0) return seqidLength === 0 ? HDR_NEED_MORE : HDR_BAD_VARINT;
  const lenOffset = seqidOffset + seqidLength;
  const nameLen = readVarint32(buf, lenOffset, end);
  const lenBytes = varintBytes;
  if (lenBytes <= 0) return lenBytes === 0 ? HDR_NEED_MORE : HDR_BAD_VARINT;
  if (nameLen > maxName) return HDR_BAD_NAME;
  const nameStart = lenOffset + lenBytes;
  const nameEnd = nameStart + nameLen;
  if (end < nameEnd) return HDR_NEED_MORE;
  out.protocol = 'compact';
  out.type = type;
  out.name = decodeName ? buf.toString('utf8', nameStart, nameEnd) : '';
  out.seqid = seqid;
  out.nameStart = nameStart;
  out.nameEnd = nameEnd;
  out.seqidOffset = seqidOffset;
  out.seqidLength = seqidLength;
  out.length = nameEnd - off;
  return out.length;
}

/** Size of a header with this name and seqid written by `writeMessageHeader`. */
export function messageHeaderSize(protocol: ThriftProtocol, nameBytes: number, seqid: number): number {
  return protocol === 'binary'
    ? 12 + nameBytes
    : 2 + varint32Size(seqid) + varint32Size(nameBytes) + nameBytes;
}

/** Writes a message header at buf[o]; returns the offset after it. `name` is UTF-8 bytes. */
export function writeMessageHeader(
  buf: Buffer,
  o: number,
  protocol: ThriftProtocol,
  type: number,
  name: Uint8Array,
  seqid: number,
): number {
  if (protocol === 'binary') {
    buf[o] = 0x80;
    buf[o + 1] = 0x01;
    buf[o + 2] = 0;
    buf[o + 3] = type;
    buf.writeInt32BE(name.length, o + 4);
    buf.set(name, o + 8);
    return buf.writeInt32BE(seqid | 0, o + 8 + name.length);
  }
  buf[o] = COMPACT_PROTOCOL_ID;
  buf[o + 1] = (type << 5) | COMPACT_VERSION;
  o = writeVarint32(buf, o + 2, seqid);
  o = writeVarint32(buf, o, name.length);
  buf.set(name, o);
  return o + name.length;
}

/**
 * Rewrites the seqid of a header read from `buf` in place. Compact seqids keep their
 * varint length (padded if the new value is shorter); false when the new value does not
 * fit in it, and nothing is written.
 */
export function rewriteSeqid(buf: Buffer, hdr: MessageHeader, seqid: number): boolean {
  if (hdr.protocol === 'binary') {
    buf.writeInt32BE(seqid | 0, hdr.seqidOffset);
    return true;
  }
  return writeVarint32Fixed(buf, hdr.seqidOffset, seqid, hdr.seqidLength);
}

/** The name of a header read without decoding it (`buf` is what it was read from). */
export function nameOf(buf: Buffer, hdr: MessageHeader): string {
  return hdr.name !== '' ? hdr.name : buf.toString('utf8', hdr.nameStart, hdr.nameEnd);
}

/** Splits a TMultiplexedProtocol name "Service:method" at its first ':'. */
export function splitServiceName(name: string): { service: string | undefined; method: string } {
  const i = name.indexOf(':');
  return i < 0
    ? { service: undefined, method: name }
    : { service: name.slice(0, i), method: name.slice(i + 1) };
}
