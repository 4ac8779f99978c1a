// Incremental struct skipper: finds where a binary or compact struct ends, fed one read
// at a time, without materialising anything. An unframed (buffered-transport) message has
// no length on the wire; its end is the STOP of its argument/result struct, so the
// unframed reader runs this over the bytes after the message header.
//
// State is a stack of open structs/containers plus, at most, one value type to read next
// and a count of string bytes left to skip. A token (field header, number, length,
// container header) split across two reads is completed from a 16-byte carry; no token
// is longer than 11 bytes. Work is bounded by the bytes fed (every element costs at least
// one byte) and nesting by `maxDepth`.

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
} from './constants.js';
import { readVarint32, varintBytes, varintLength } from './varint.js';

// Frame kinds on the stack.
const K_STRUCT = 0;
const K_LIST = 1;
const K_MAP = 2;

// Token results below 0.
const NEED = -1;
const BAD = -2;

/** `feed` results below 0. */
export const SCAN_NEED_MORE = -1;
export const SCAN_ERROR = -2;

export class StructScanner {
  private readonly compact: boolean;
  private readonly maxDepth: number;
  private depth = 0;
  private readonly kind: Uint8Array;
  private readonly remaining: Float64Array; // elements left (maps count keys and values)
  private readonly etype: Uint8Array; // list/set element type, map key type
  private readonly vtype: Uint8Array; // map value type
  /** Type of the value to read next, or -1 when the top frame decides. */
  private pending = -1;
  private skip = 0;
  private readonly carry = Buffer.alloc(16);
  private carryLen = 0;
  /** Why the last SCAN_ERROR happened. */
  error = '';

  constructor(protocol: ThriftProtocol, maxDepth = DEFAULT_MAX_DEPTH) {
    this.compact = protocol === 'compact';
    this.maxDepth = maxDepth;
    this.kind = new Uint8Array(maxDepth + 1);
    this.remaining = new Float64Array(maxDepth + 1);
    this.etype = new Uint8Array(maxDepth + 1);
    this.vtype = new Uint8Array(maxDepth + 1);
    this.reset();
  }

  /** Ready for the next struct (the scanner is reused message after message). */
  reset(): void {
    this.depth = 1;
    this.kind[0] = K_STRUCT;
    this.pending = -1;
    this.skip = 0;
    this.carryLen = 0;
    this.error = '';
  }

  /**
   * Scans buf[start, end). Returns the offset just past the struct's STOP (the struct is
   * complete; call `reset` before the next one), SCAN_NEED_MORE when every byte was
   * consumed and the struct goes on, or SCAN_ERROR (see `error`).
   */
  feed(buf: Uint8Array, start: number, end: number): number {
    let pos = start;
    if (this.carryLen > 0) {
      // Finish the token that the previous read cut off.
      const had = this.carryLen;
      const add = Math.min(end - pos, this.carry.length - had);
      this.carry.set(buf.subarray(pos, pos + add), had);
      const r = this.step(this.carry, 0, had + add);
      if (r === BAD) return this.fail();
      if (r === NEED) {
        this.carryLen = had + add;
        return SCAN_NEED_MORE;
      }
      this.carryLen = 0;
      pos += r - had;
      if (this.depth === 0) return pos;
    }
    while (true) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, end - pos);
        pos += n;
        this.skip -= n;
        if (this.skip > 0) return SCAN_NEED_MORE;
      }
      if (pos >= end && this.pending < 0 && !this.topDone()) return SCAN_NEED_MORE;
      const r = this.step(buf, pos, end);
      if (r === BAD) return this.fail();
      if (r === NEED) {
        const left = end - pos;
        this.carry.set(buf.subarray(pos, end), 0);
        this.carryLen = left;
        return SCAN_NEED_MORE;
      }
      pos = r;
      if (this.depth === 0) return pos;
    }
  }

  private fail(): number {
    if (!this.error) this.error = 'malformed struct';
    return SCAN_ERROR;
  }

  /** The top frame is a container with nothing left (pops without reading a byte). */
  private topDone(): boolean {
    const d = this.depth - 1;
    return this.kind[d] !== K_STRUCT && this.remaining[d] === 0;
  }

  /**
   * One token at b[p, e): returns the offset after it, NEED (state untouched) or BAD.
   * Zero-byte transitions (closing an exhausted container) also count as a step.
   */
  private step(b: Uint8Array, p: number, e: number): number {
    if (this.pending >= 0) return this.value(b, p, e, this.pending);
    const d = this.depth - 1;
    const kind = this.kind[d];
    if (kind !== K_STRUCT) {
      const left = this.remaining[d];
      if (left === 0) {
        this.depth--;
        return p;
      }
      this.remaining[d] = left - 1;
      // Maps alternate key, value: an even count left means a key comes next.
      const t = kind === K_MAP && left % 2 === 1 ? this.vtype[d] : this.etype[d];
      this.pending = t;
      const r = this.value(b, p, e, t);
      if (r === NEED) {
        // Leave the element for the retry to read again.
        this.remaining[d] = left;
        this.pending = -1;
      }
      return r;
    }
    // A field header, or STOP.
    if (p >= e) return NEED;
    const h = b[p];
    if (h === T_STOP) {
      this.depth--;
      return p + 1;
    }
    if (!this.compact) {
      if (e - p < 3) return NEED;
      if (!isValueType(h)) return this.bad('bad field type');
      this.pending = h;
      return p + 3;
    }
    const ct = h & 0x0f;
    let q = p + 1;
    if (h >> 4 === 0) {
      // Long form: the field id follows as a zigzag varint i16.
      const n = varintLength(b, q, e, 3);
      if (n === 0) return NEED;
      if (n < 0) return this.bad('bad field id');
      q += n;
    }
    if (ct === C_BOOL_TRUE || ct === C_BOOL_FALSE) return q; // the value is in the type
    const t = COMPACT_TO_TTYPE[ct];
    if (t < 0) return this.bad('bad field type');
    this.pending = t;
    return q;
  }

  private bad(why: string): number {
    this.error = why;
    return BAD;
  }

  /** Reads a value of TType t at b[p, e); clears `pending` when it is consumed. */
  private value(b: Uint8Array, p: number, e: number, t: number): number {
    const avail = e - p;
    let q: number;
    switch (t) {
      case T_BOOL:
      case T_BYTE:
        if (avail < 1) return NEED;
        q = p + 1;
        break;
      case T_DOUBLE:
        if (avail < 8) return NEED;
        q = p + 8;
        break;
      case T_UUID:
        if (avail < 16) return NEED;
        q = p + 16;
        break;
      case T_I16:
      case T_I32:
      case T_I64: {
        if (!this.compact) {
          const size = t === T_I16 ? 2 : t === T_I32 ? 4 : 8;
          if (avail < size) return NEED;
          q = p + size;
          break;
        }
        const n = varintLength(b, p, e, t === T_I16 ? 3 : t === T_I32 ? 5 : 10);
        if (n === 0) return NEED;
        if (n < 0) return this.bad('bad varint');
        q = p + n;
        break;
      }
      case T_STRING: {
        let len: number;
        if (!this.compact) {
          if (avail < 4) return NEED;
          len = (b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3];
          if (len < 0) return this.bad('negative string length');
          q = p + 4;
        } else {
          len = readVarint32(b, p, e);
          if (varintBytes === 0) return NEED;
          if (varintBytes < 0 || len > 0x7fffffff) return this.bad('bad string length');
          q = p + varintBytes;
        }
        this.skip = len;
        break;
      }
      case T_STRUCT:
        if (this.depth >= this.maxDepth) return this.bad('nesting too deep');
        this.kind[this.depth] = K_STRUCT;
        this.depth++;
        q = p;
        break;
      case T_MAP: {
        let size: number;
        let kt: number;
        let vt: number;
        if (!this.compact) {
          if (avail < 6) return NEED;
          kt = b[p];
          vt = b[p + 1];
          size = (b[p + 2] << 24) | (b[p + 3] << 16) | (b[p + 4] << 8) | b[p + 5];
          if (size < 0) return this.bad('negative map size');
          q = p + 6;
        } else {
          size = readVarint32(b, p, e);
          if (varintBytes === 0) return NEED;
          if (varintBytes < 0 || size > 0x7fffffff) return this.bad('bad map size');
          q = p + varintBytes;
          if (size === 0) {
            kt = T_BOOL; // unused
            vt = T_BOOL;
          } else {
            if (q >= e) return NEED;
            kt = COMPACT_TO_TTYPE[b[q] >> 4];
            vt = COMPACT_TO_TTYPE[b[q] & 0x0f];
            q++;
          }
        }
        if (size > 0 && (!isValueType(kt) || !isValueType(vt))) return this.bad('bad map element type');
        if (this.depth >= this.maxDepth) return this.bad('nesting too deep');
        this.kind[this.depth] = K_MAP;
        this.remaining[this.depth] = size * 2;
        this.etype[this.depth] = kt;
        this.vtype[this.depth] = vt;
        this.depth++;
        break;
      }
      case T_LIST:
      case T_SET: {
        let size: number;
        let et: number;
        if (!this.compact) {
          if (avail < 5) return NEED;
          et = b[p];
          size = (b[p + 1] << 24) | (b[p + 2] << 16) | (b[p + 3] << 8) | b[p + 4];
          if (size < 0) return this.bad('negative list size');
          q = p + 5;
        } else {
          if (avail < 1) return NEED;
          et = COMPACT_TO_TTYPE[b[p] & 0x0f];
          size = b[p] >> 4;
          q = p + 1;
          if (size === 15) {
            size = readVarint32(b, q, e);
            if (varintBytes === 0) return NEED;
            if (varintBytes < 0 || size > 0x7fffffff) return this.bad('bad list size');
            q += varintBytes;
          }
        }
        if (size > 0 && !isValueType(et)) return this.bad('bad list element type');
        if (this.depth >= this.maxDepth) return this.bad('nesting too deep');
        this.kind[this.depth] = K_LIST;
        this.remaining[this.depth] = size;
        this.etype[this.depth] = size > 0 ? et : T_BOOL;
        this.depth++;
        break;
      }
      default:
        return this.bad('bad value type');
    }
    this.pending = -1;
    return q;
  }
}
