// Binary ↔ compact conversion of one whole message, field by field: a client speaking one
// protocol can call servers speaking the other. Unlike forwarding, this reads and rewrites
// every value (one pass, no objects built); it only runs when the protocols differ.
// Bounded: nesting to `DEFAULT_MAX_DEPTH`, every container size checked against the bytes
// left (each element takes at least one), output capped at `maxOutput`.

import {
  C_BOOL_FALSE,
  C_BOOL_TRUE,
  COMPACT_TO_TTYPE,
  DEFAULT_MAX_DEPTH,
  isValueType,
  T_BOOL,
  T_BYTE,
  T_DOUBLE,
  T_I16,
  T_I32,
  T_I64,
  T_LIST,
  T_MAP,
  T_SET,
  T_STOP,
  T_STRING,
  T_STRUCT,
  T_UUID,
  type ThriftProtocol,
  TTYPE_TO_COMPACT,
} from './constants.js';
import type { Payload } from './frame.js';
import { messageHeaderSize, writeMessageHeader } from './message.js';
import type { ThriftMessage } from './reader.js';
import { readVarint32, varintBytes, writeVarint32, zigzag32 } from './varint.js';

class Fail extends Error {}

function fail(why: string): never {
  throw new Fail(why);
}

/** Reads values of one protocol from a flat buffer. */
class In {
  readonly b: Buffer;
  p: number;
  readonly end: number;
  readonly compact: boolean;
  /** Compact: last field id per open struct. */
  private readonly lastId: number[] = [];
  /** Compact: the value of a bool field read with its header. */
  boolField = -1;

  constructor(b: Buffer, p: number, end: number, compact: boolean) {
    this.b = b;
    this.p = p;
    this.end = end;
    this.compact = compact;
  }

  need(n: number): void {
    if (this.end - this.p < n) fail('message ends early');
  }

  u8(): number {
    this.need(1);
    return this.b[this.p++];
  }

  varint(): number {
    const v = readVarint32(this.b, this.p, this.end);
    if (varintBytes <= 0) fail(varintBytes === 0 ? 'message ends early' : 'bad varint');
    this.p += varintBytes;
    return v;
  }

  varint64(): bigint {
    let v = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      const byte = this.u8();
      v |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return v;
      shift += 7n;
    }
    return fail('bad varint');
  }

  /** Elements of a container: at least one byte each. */
  size(n: number): number {
    if (n < 0 || n > this.end - this.p) fail('container size past the message end');
    return n;
  }

  structBegin(): void {
    if (this.compact) this.lastId.push(0);
  }

  structEnd(): void {
    if (this.compact) this.lastId.pop();
  }

  /** Returns the field's TType (T_STOP at the end); `fieldId` is set. */
  fieldBegin(): number {
    const h = this.u8();
    if (h === T_STOP) return T_STOP;
    if (!this.compact) {
      if (!isValueType(h)) fail(`bad field type ${h}`);
      this.need(2);
      this.fieldId = this.b.readInt16BE(this.p);
      this.p += 2;
      return h;
    }
    const delta = h >> 4;
    const ct = h & 0x0f;
    const d = this.lastId.length - 1;
    if (delta !== 0) this.fieldId = this.lastId[d] + delta;
    else {
      const z = this.varint();
      this.fieldId = (z >>> 1) ^ -(z & 1);
    }
    this.lastId[d] = this.fieldId;
    if (ct === C_BOOL_TRUE || ct === C_BOOL_FALSE) {
      this.boolField = ct === C_BOOL_TRUE ? 1 : 0;
      return T_BOOL;
    }
    const t = COMPACT_TO_TTYPE[ct];
    if (t < 0 || t === T_STOP) fail(`bad field type ${ct}`);
    return t;
  }

  fieldId = 0;

  i16(): number {
    if (this.compact) {
      const z = this.varint();
      return (z >>> 1) ^ -(z & 1);
    }
    this.need(2);
    const v = this.b.readInt16BE(this.p);
    this.p += 2;
    return v;
  }

  i32(): number {
    if (this.compact) {
      const z = this.varint();
      return (z >>> 1) ^ -(z & 1);
    }
    this.need(4);
    const v = this.b.readInt32BE(this.p);
    this.p += 4;
    return v;
  }

  i64(): bigint {
    if (this.compact) {
      const z = BigInt.asUintN(64, this.varint64());
      return (z >> 1n) ^ -(z & 1n);
    }
    this.need(8);
    const v = this.b.readBigInt64BE(this.p);
    this.p += 8;
    return v;
  }

  /** The 8 bytes of a double in big-endian order. */
  double(out: Out): void {
    this.need(8);
    const o = out.room(8);
    if (this.compact === out.compact) this.b.copy(out.b, o, this.p, this.p + 8);
    else for (let i = 0; i < 8; i++) out.b[o + i] = this.b[this.p + 7 - i];
    this.p += 8;
  }

  binaryLength(): number {
    if (this.compact) {
      const n = this.varint();
      if (n > 0x7fffffff) fail('bad string length');
      return n;
    }
    this.need(4);
    const n = this.b.readInt32BE(this.p);
    this.p += 4;
    if (n < 0) fail('negative string length');
    return n;
  }
}

/** Writes values of one protocol into a growing buffer. */
class Out {
  b: Buffer;
  p = 0;
  readonly compact: boolean;
  private readonly max: number;
  private readonly lastId: number[] = [];

  constructor(initial: number, max: number, compact: boolean) {
    this.b = Buffer.allocUnsafe(Math.min(initial, max));
    this.max = max;
    this.compact = compact;
  }

  /** Reserves n bytes; returns where they start. */
  room(n: number): number {
    const need = this.p + n;
    if (need > this.b.length) {
      if (need > this.max) fail(`converted message over the ${this.max}-byte limit`);
      const next = Buffer.allocUnsafe(Math.min(this.max, Math.max(need, this.b.length * 2)));
      this.b.copy(next, 0, 0, this.p);
      this.b = next;
    }
    const o = this.p;
    this.p = need;
    return o;
  }

  u8(v: number): void {
    this.b[this.room(1)] = v;
  }

  varint(v: number): void {
    this.room(5);
    this.p = writeVarint32(this.b, this.p - 5, v);
  }

  varint64(v: bigint): void {
    const o = this.room(10);
    let i = o;
    while (v >= 0x80n) {
      this.b[i++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.b[i++] = Number(v);
    this.p = i;
  }

  structBegin(): void {
    if (this.compact) this.lastId.push(0);
  }

  structEnd(): void {
    this.u8(T_STOP);
    if (this.compact) this.lastId.pop();
  }

  /** A field header; for compact bools `boolValue` (0/1) goes in the type nibble. */
  fieldBegin(t: number, id: number, boolValue: number): void {
    if (!this.compact) {
      const o = this.room(3);
      this.b[o] = t;
      this.b.writeInt16BE(id, o + 1);
      return;
    }
    const ct = t === T_BOOL ? (boolValue ? C_BOOL_TRUE : C_BOOL_FALSE) : TTYPE_TO_COMPACT[t];
    const d = this.lastId.length - 1;
    const delta = id - this.lastId[d];
    if (delta > 0 && delta <= 15) this.u8((delta << 4) | ct);
    else {
      this.u8(ct);
      this.varint(zigzag32(id));
    }
    this.lastId[d] = id;
  }

  i16(v: number): void {
    if (this.compact) this.varint(zigzag32(v));
    else this.b.writeInt16BE(v, this.room(2));
  }

  i32(v: number): void {
    if (this.compact) this.varint(zigzag32(v));
    else this.b.writeInt32BE(v, this.room(4));
  }

  i64(v: bigint): void {
    if (this.compact) this.varint64(BigInt.asUintN(64, (v << 1n) ^ (v >> 63n)));
    else this.b.writeBigInt64BE(v, this.room(8));
  }

  binaryLength(n: number): void {
    if (this.compact) this.varint(n);
    else this.b.writeInt32BE(n, this.room(4));
  }
}

function copyValue(r: In, w: Out, t: number, depth: number): void {
  switch (t) {
    case T_BOOL: {
      // In containers: binary writes 1/0, compact its type codes 1 (true) / 2 (false).
      const v = r.u8();
      const truth = r.compact ? v === C_BOOL_TRUE : v !== 0;
      w.u8(truth ? 1 : w.compact ? C_BOOL_FALSE : 0);
      return;
    }
    case T_BYTE:
      w.u8(r.u8());
      return;
    case T_I16:
      w.i16(r.i16());
      return;
    case T_I32:
      w.i32(r.i32());
      return;
    case T_I64:
      w.i64(r.i64());
      return;
    case T_DOUBLE:
      r.double(w);
      return;
    case T_UUID: {
      r.need(16);
      const o = w.room(16);
      r.b.copy(w.b, o, r.p, r.p + 16);
      r.p += 16;
      return;
    }
    case T_STRING: {
      const n = r.binaryLength();
      r.need(n);
      w.binaryLength(n);
      const o = w.room(n);
      r.b.copy(w.b, o, r.p, r.p + n);
      r.p += n;
      return;
    }
    case T_STRUCT:
      copyStruct(r, w, depth + 1);
      return;
    case T_MAP: {
      let kt: number;
      let vt: number;
      let size: number;
      if (r.compact) {
        size = r.size(r.varint());
        if (size === 0) kt = vt = T_BOOL;
        else {
          const kv = r.u8();
          kt = COMPACT_TO_TTYPE[kv >> 4];
          vt = COMPACT_TO_TTYPE[kv & 0x0f];
        }
      } else {
        kt = r.u8();
        vt = r.u8();
        r.need(4);
        size = r.size(r.b.readInt32BE(r.p));
        r.p += 4;
      }
      if (size > 0 && (!isValueType(kt) || !isValueType(vt))) fail('bad map element type');
      if (depth >= DEFAULT_MAX_DEPTH) fail('nesting too deep');
      if (w.compact) {
        w.varint(size);
        if (size > 0) w.u8((TTYPE_TO_COMPACT[kt] << 4) | TTYPE_TO_COMPACT[vt]);
      } else {
        w.u8(size > 0 ? kt : 0);
        w.u8(size > 0 ? vt : 0);
        w.i32(size);
      }
      for (let i = 0; i < size; i++) {
        copyValue(r, w, kt, depth + 1);
        copyValue(r, w, vt, depth + 1);
      }
      return;
    }
    case T_LIST:
    case T_SET: {
      let et: number;
      let size: number;
      if (r.compact) {
        const h = r.u8();
        et = COMPACT_TO_TTYPE[h & 0x0f];
        size = h >> 4;
        if (size === 15) size = r.varint();
        size = r.size(size);
      } else {
        et = r.u8();
        r.need(4);
        size = r.size(r.b.readInt32BE(r.p));
        r.p += 4;
      }
      if (size > 0 && !isValueType(et)) fail('bad list element type');
      if (depth >= DEFAULT_MAX_DEPTH) fail('nesting too deep');
      if (size === 0 && !isValueType(et)) et = T_BOOL;
      if (w.compact) {
        const ct = TTYPE_TO_COMPACT[et];
        if (size < 15) w.u8((size << 4) | ct);
        else {
          w.u8(0xf0 | ct);
          w.varint(size);
        }
      } else {
        w.u8(et);
        w.i32(size);
      }
      for (let i = 0; i < size; i++) copyValue(r, w, et, depth + 1);
      return;
    }
    default:
      fail(`bad value type ${t}`);
  }
}

function copyStruct(r: In, w: Out, depth: number): void {
  if (depth > DEFAULT_MAX_DEPTH) fail('nesting too deep');
  r.structBegin();
  w.structBegin();
  while (true) {
    const t = r.fieldBegin();
    if (t === T_STOP) break;
    if (t === T_BOOL && r.compact) {
      // The value came with the field header.
      const v = r.boolField;
      w.fieldBegin(T_BOOL, r.fieldId, v);
      if (!w.compact) w.u8(v);
      continue;
    }
    if (t === T_BOOL && w.compact) {
      const id = r.fieldId;
      w.fieldBegin(T_BOOL, id, r.u8() ? 1 : 0);
      continue;
    }
    w.fieldBegin(t, r.fieldId, 0);
    copyValue(r, w, t, depth);
  }
  r.structEnd();
  w.structEnd();
}

/**
 * `msg` (a complete message as read) in protocol `to`, with `name` and `seqid` in its
 * header. Returns the payload, or why it cannot be converted.
 */
export function transcode(
  msg: ThriftMessage,
  to: ThriftProtocol,
  name: string,
  seqid: number,
  maxOutput: number,
): Payload | string {
  const h = msg.header;
  const flat = msg.parts.length === 1 ? msg.parts[0] : Buffer.concat(msg.parts, msg.size);
  const nameBytes = Buffer.from(name, 'utf8');
  const headLen = messageHeaderSize(to, nameBytes.length, seqid);
  const bodyIn = msg.size - msg.prefix - h.length;
  // Compact → binary can grow (1-byte bools and small ints become 3-8 bytes).
  const w = new Out(headLen + bodyIn * 2 + 16, maxOutput, to === 'compact');
  w.room(headLen);
  writeMessageHeader(w.b, 0, to, h.type, nameBytes, seqid);
  const r = new In(flat, msg.prefix + h.length, msg.size, h.protocol === 'compact');
  try {
    copyStruct(r, w, 1);
  } catch (e) {
    // Fail, or a RangeError from a value that does not fit its type (malformed input).
    if (e instanceof Fail) return e.message;
    if (e instanceof RangeError) return `value out of range: ${e.message}`;
    throw e;
  }
  if (r.p !== r.end) return 'bytes after the message struct';
  return { parts: [w.b.subarray(0, w.p)], length: w.p, protocol: to };
}
