// HPACK (RFC 7541): static + dynamic table, decoder with Huffman decoding, encoder with
// dynamic-table indexing. Header octets are carried as latin1 strings, so values pass
// through the proxy byte for byte and a string's length is its octet count.
import { huffmanDecodeBytes, huffmanEncode, huffmanLength, huffmanOut, huffmanSawCtl } from './huffman.js';

export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];
const STATIC_LEN = STATIC_TABLE.length;
const ENTRY_OVERHEAD = 32;

/** Header table entries in insertion order, newest at the highest position (a ring). */
class DynamicTable {
  names: string[] = new Array(64);
  values: string[] = new Array(64);
  /** Per entry: what validation found when it was decoded (the meta bits, see below). */
  meta: number[] = new Array(64).fill(0);
  /** Position of the oldest entry and the count, in the ring. */
  head = 0;
  count = 0;
  size = 0;
  maxSize: number;

  constructor(maxSize: number) {
    this.maxSize = maxSize;
  }

  /** Entry by HPACK dynamic index (1 = newest); caller checks 1 <= i <= count. */
  at(i: number): number {
    return (this.head + this.count - i) & (this.names.length - 1);
  }

  add(name: string, value: string, meta = 0): void {
    const sz = name.length + value.length + ENTRY_OVERHEAD;
    this.evictTo(this.maxSize - sz);
    if (sz > this.maxSize) return; // the table is emptied and the entry not added (§4.4)
    if (this.count === this.names.length) this.grow();
    const pos = (this.head + this.count) & (this.names.length - 1);
    this.names[pos] = name;
    this.values[pos] = value;
    this.meta[pos] = meta;
    this.count++;
    this.size += sz;
  }

  evictTo(limit: number): void {
    const mask = this.names.length - 1;
    while (this.size > limit && this.count > 0) {
      const h = this.head;
      this.size -= this.names[h].length + this.values[h].length + ENTRY_OVERHEAD;
      this.onEvict(this.names[h], this.values[h], this.evicted++);
      this.names[h] = '';
      this.values[h] = '';
      this.head = (h + 1) & mask;
      this.count--;
    }
  }

  /** Entries evicted so far: the absolute id of an entry is evicted-at-insert + position. */
  evicted = 0;

  onEvict(_name: string, _value: string, _id: number): void {}

  setMax(n: number): void {
    this.maxSize = n;
    this.evictTo(n);
  }

  private grow(): void {
    const n = this.names.length;
    const names: string[] = new Array(n * 2);
    const values: string[] = new Array(n * 2);
    const meta: number[] = new Array(n * 2).fill(0);
    for (let i = 0; i < this.count; i++) {
      const p = (this.head + i) & (n - 1);
      names[i] = this.names[p];
      values[i] = this.values[p];
      meta[i] = this.meta[p];
    }
    this.names = names;
    this.values = values;
    this.meta = meta;
    this.head = 0;
  }
}

export const HpackError = {
  OK: 0,
  /** Malformed block: a connection error of type COMPRESSION_ERROR (RFC 9113 §4.3). */
  COMPRESSION: 1,
} as const;

/**
 * Why a header block is malformed (RFC 9113 §8.2.1, §8.3): a stream error, not a
 * compression error, so the block still decodes to the end (the dynamic table stays in
 * step) and the decoder only records the first problem as a number.
 */
export const FieldError = {
  NONE: 0,
  NAME_EMPTY: 1,
  NAME_UPPER: 2,
  NAME_CHAR: 3,
  PSEUDO_UNKNOWN: 4,
  VALUE_CHAR: 5,
  VALUE_SPACE: 6,
  PSEUDO_DUPLICATE: 7,
  PSEUDO_AFTER_REGULAR: 8,
} as const;

export const FIELD_ERROR_TEXT: readonly string[] = [
  '',
  'empty field name',
  'upper-case character in field name',
  'character outside RFC 9110 tchar in field name',
  'unknown pseudo-header field',
  'NUL, CR or LF in field value',
  'leading or trailing whitespace in field value',
  'duplicate pseudo-header field',
  'pseudo-header field after a regular field',
];

/** A field name for a message: quoted, escaped, bounded (it is the peer's input). */
export function quoteName(n: string): string {
  return JSON.stringify(n.length > 64 ? `${n.slice(0, 64)}…` : n);
}

/** The decoder's field error as text, e.g. for an access record (only when `d.fieldError !== 0`). */
export function fieldProblem(d: HpackDecoder): string {
  return `${FIELD_ERROR_TEXT[d.fieldError] ?? 'malformed field'} ${quoteName(d.errorName)}`;
}

/** Connection-specific fields (RFC 9113 §8.2.2), which the request side rejects. */
export const HopError = { NONE: 0, CONNECTION: 1, TE: 2 } as const;

/** Pseudo-header fields seen in a block (`HpackDecoder.pseudo`). */
export const Pseudo = { AUTHORITY: 1, METHOD: 2, PATH: 4, SCHEME: 8, STATUS: 16 } as const;

// A field's validation summary ("meta"), one small integer: static-table fields have it
// precomputed, dynamic-table entries keep the one found when they were decoded as literals,
// so only literal names and values are ever scanned.
const PSEUDO_BITS = 31;
const M_TE = 32;
/** connection, keep-alive, proxy-connection, transfer-encoding, upgrade. */
const M_CONN = 64;
/** A `te` field whose value is not "trailers". */
const M_TE_BAD = 128;
const NAME_ERR_SHIFT = 8;
const VALUE_ERR_SHIFT = 12;
/** The bits that depend on the name alone (kept when a literal reuses an indexed name). */
const NAME_BITS = PSEUDO_BITS | M_CONN | M_TE | (15 << NAME_ERR_SHIFT);

/** Per octet of a field name: 0 for a lower-case RFC 9110 tchar, else the FieldError. */
const NAME_OCTET = new Uint8Array(256).fill(FieldError.NAME_CHAR);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") NAME_OCTET[c.charCodeAt(0)] = 0;
for (let c = 65; c <= 90; c++) NAME_OCTET[c] = FieldError.NAME_UPPER;

/** Meta of a pseudo-header name (one starting with ':'). */
function pseudoMeta(n: string): number {
  switch (n) {
    case ':authority':
      return Pseudo.AUTHORITY;
    case ':method':
      return Pseudo.METHOD;
    case ':path':
      return Pseudo.PATH;
    case ':scheme':
      return Pseudo.SCHEME;
    case ':status':
      return Pseudo.STATUS;
    default:
      return FieldError.PSEUDO_UNKNOWN << NAME_ERR_SHIFT;
  }
}

/** Meta of a valid regular name: connection-specific or `te` (length first: no compare for most). */
function hopMeta(n: string): number {
  switch (n.length) {
    case 2:
      return n === 'te' ? M_TE : 0;
    case 7:
      return n === 'upgrade' ? M_CONN : 0;
    case 10:
      return n === 'connection' || n === 'keep-alive' ? M_CONN : 0;
    case 16:
      return n === 'proxy-connection' ? M_CONN : 0;
    case 17:
      return n === 'transfer-encoding' ? M_CONN : 0;
    default:
      return 0;
  }
}

/** Name octets b[s, e): -1 for a pseudo-header (judged on the string), else its error bits. */
function nameOctets(b: Uint8Array, s: number, e: number): number {
  if (s === e) return FieldError.NAME_EMPTY << NAME_ERR_SHIFT;
  if (b[s] === 58) return -1;
  for (let i = s; i < e; i++) {
    const x = NAME_OCTET[b[i]];
    if (x !== 0) return x << NAME_ERR_SHIFT;
  }
  return 0;
}

/** Value octets b[s, e): NUL, CR, LF anywhere, SP or HTAB at either end (RFC 9113 §8.2.1). */
function valueOctets(b: Uint8Array, s: number, e: number): number {
  for (let i = s; i < e; i++) {
    const c = b[i];
    if (c < 14 && (c === 0 || c === 10 || c === 13)) return FieldError.VALUE_CHAR << VALUE_ERR_SHIFT;
  }
  return valueEnds(b, s, e);
}

/** SP or HTAB at either end of b[s, e). */
function valueEnds(b: Uint8Array, s: number, e: number): number {
  if (s === e) return 0;
  const c = b[s];
  const d = b[e - 1];
  return c === 32 || c === 9 || d === 32 || d === 9 ? FieldError.VALUE_SPACE << VALUE_ERR_SHIFT : 0;
}

/** Meta of a name from a table (static names are all valid). */
function nameMeta(n: string): number {
  return n.charCodeAt(0) === 58 ? pseudoMeta(n) : hopMeta(n);
}

const STATIC_META = new Uint16Array(STATIC_LEN);
for (let i = 0; i < STATIC_LEN; i++) STATIC_META[i] = nameMeta(STATIC_TABLE[i][0]);

/** Longest literal (encoded octets) readMemo remembers. */
const MEMO_OCTETS = 128;

/** One remembered literal: its encoded octets, its string and its verdict. */
class LiteralMemo {
  readonly raw = new Uint8Array(MEMO_OCTETS);
  len = 0;
  huff = false;
  str = '';
  meta = 0;

  /** Holds exactly the octets buf[s, s + len) with this Huffman flag. */
  holds(buf: Uint8Array, s: number, len: number, huff: boolean): boolean {
    if (this.len !== len || this.huff !== huff) return false;
    const raw = this.raw;
    for (let i = 0; i < len; i++) if (raw[i] !== buf[s + i]) return false;
    return true;
  }
}

function remember(
  memo: (LiteralMemo | undefined)[],
  slot: number,
  buf: Uint8Array,
  s: number,
  len: number,
  huff: boolean,
  str: string,
  meta: number,
): void {
  let c = memo[slot];
  if (c === undefined) {
    c = new LiteralMemo();
    memo[slot] = c;
  }
  const raw = c.raw;
  for (let i = 0; i < len; i++) raw[i] = buf[s + i];
  c.len = len;
  c.huff = huff;
  c.str = str;
  c.meta = meta;
}

/**
 * One connection direction's decoder. `decode` fills `names`/`values` (reused arrays) and
 * sets `oversize` when the header list passes `maxListSize` or `maxFields`: the block is
 * still decoded to the end so the dynamic table stays in step with the peer, but fields
 * past the bound are not kept. It also validates the fields as it goes (`fieldError`,
 * `pseudo`, `hopError`); what the block is (request, response, trailers) is the caller's
 * to judge from those.
 */
export class HpackDecoder {
  readonly table: DynamicTable;
  /** The largest table size our SETTINGS allow the peer to use. */
  maxTableSize: number;
  maxListSize: number;
  maxFields: number;
  names: string[] = [];
  values: string[] = [];
  count = 0;
  listSize = 0;
  oversize = false;
  /** Names of fields sent as never-indexed (§7.1.3: re-encode them the same way). */
  neverIndexed: string[] | undefined;
  /** First FieldError of the block (0: none) and the name of the field it was found on. */
  fieldError = 0;
  errorName = '';
  /** Pseudo-header fields in the block (Pseudo bits). */
  pseudo = 0;
  /** First HopError of the block (0: none) and its field name. */
  hopError = 0;
  hopName = '';

  constructor(maxListSize = 65_536, maxFields = 256, maxTableSize = 4096) {
    this.table = new DynamicTable(maxTableSize);
    this.maxTableSize = maxTableSize;
    this.maxListSize = maxListSize;
    this.maxFields = maxFields;
  }

  /** Decodes one complete header block; returns HpackError.OK or COMPRESSION. */
  decode(buf: Uint8Array, start: number, end: number): number {
    this.count = 0;
    this.listSize = 0;
    this.oversize = false;
    this.neverIndexed = undefined;
    this.fieldError = 0;
    this.hopError = 0;
    this.pseudo = 0;
    let p = start;
    let sawField = false;
    // Pseudo-header fields seen, and whether a regular field came already (kept in locals:
    // the common field costs one compare).
    let pseudo = 0;
    let regular = false;
    const t = this.table;
    while (p < end) {
      const b = buf[p];
      let name: string;
      let value: string;
      let m: number;
      if (b & 0x80) {
        // Indexed field (§6.1).
        const idx = this.readInt(buf, p, end, 7);
        if (idx < 0) return HpackError.COMPRESSION;
        p = this.pos;
        if (idx === 0) return HpackError.COMPRESSION;
        if (idx <= STATIC_LEN) {
          const e = STATIC_TABLE[idx - 1];
          name = e[0];
          value = e[1];
          m = STATIC_META[idx - 1];
        } else {
          const d = idx - STATIC_LEN;
          if (d > t.count) return HpackError.COMPRESSION;
          const at = t.at(d);
          name = t.names[at];
          value = t.values[at];
          m = t.meta[at];
        }
      } else if ((b & 0xe0) === 0x20) {
        // Dynamic table size update (§6.3): only before the first field.
        if (sawField) return HpackError.COMPRESSION;
        const n = this.readInt(buf, p, end, 5);
        if (n < 0 || n > this.maxTableSize) return HpackError.COMPRESSION;
        p = this.pos;
        t.setMax(n);
        continue;
      } else {
        // Literal: with incremental indexing (01), without (0000), never indexed (0001).
        const incremental = (b & 0xc0) === 0x40;
        const prefix = incremental ? 6 : 4;
        const never = !incremental && (b & 0x10) !== 0;
        const idx = this.readInt(buf, p, end, prefix);
        if (idx < 0) return HpackError.COMPRESSION;
        p = this.pos;
        if (idx === 0) {
          const n = this.readName(buf, p, end);
          if (n === undefined) return HpackError.COMPRESSION;
          name = n;
          p = this.pos;
          m = this.strMeta;
        } else if (idx <= STATIC_LEN) {
          name = STATIC_TABLE[idx - 1][0];
          m = STATIC_META[idx - 1];
        } else {
          const d = idx - STATIC_LEN;
          if (d > t.count) return HpackError.COMPRESSION;
          const at = t.at(d);
          name = t.names[at];
          m = t.meta[at] & NAME_BITS;
        }
        const v =
          !incremental && !never && idx !== 0 && idx <= STATIC_LEN
            ? this.readMemo(buf, p, end, idx)
            : this.readString(buf, p, end);
        if (v === undefined) return HpackError.COMPRESSION;
        value = v;
        p = this.pos;
        m |= this.strMeta;
        if ((m & M_TE) !== 0 && value !== 'trailers') m |= M_TE_BAD;
        if (incremental) t.add(name, value, m);
        if (never) {
          if (this.neverIndexed === undefined) this.neverIndexed = [];
          this.neverIndexed.push(name);
        }
      }
      sawField = true;
      if (m === 0) regular = true;
      else {
        const ps = m & PSEUDO_BITS;
        if (ps === 0) regular = true;
        else {
          if (regular) this.flag(FieldError.PSEUDO_AFTER_REGULAR, name);
          else if ((pseudo & ps) !== 0) this.flag(FieldError.PSEUDO_DUPLICATE, name);
          pseudo |= ps;
        }
        if (m > M_TE) this.note(m, name);
      }
      this.push(name, value);
    }
    this.pseudo = pseudo;
    return HpackError.OK;
  }

  /** A field with a problem, or connection-specific (rare: off the inlined path). */
  private note(m: number, name: string): void {
    if (m > 255) {
      const e = (m >>> NAME_ERR_SHIFT) & 15;
      this.flag(e !== 0 ? e : (m >>> VALUE_ERR_SHIFT) & 15, name);
    }
    if ((m & (M_CONN | M_TE_BAD)) !== 0 && this.hopError === 0) {
      this.hopError = (m & M_CONN) !== 0 ? HopError.CONNECTION : HopError.TE;
      this.hopName = name;
    }
  }

  private flag(e: number, name: string): void {
    if (this.fieldError !== 0) return;
    this.fieldError = e;
    this.errorName = name;
  }

  private push(name: string, value: string): void {
    this.listSize += name.length + value.length + ENTRY_OVERHEAD;
    if (this.listSize > this.maxListSize || this.count >= this.maxFields) {
      this.oversize = true;
      return;
    }
    this.names[this.count] = name;
    this.values[this.count] = value;
    this.count++;
  }

  private pos = 0;

  /** Integer with an N-bit prefix (§5.1); -1 when truncated or too large. Sets this.pos. */
  private readInt(buf: Uint8Array, p: number, end: number, bits: number): number {
    const max = (1 << bits) - 1;
    let v = buf[p++] & max;
    if (v < max) {
      this.pos = p;
      return v;
    }
    let m = 0;
    for (;;) {
      if (p >= end || m > 21) return -1; // beyond 2^28: no sane header needs that
      const c = buf[p++];
      v += (c & 0x7f) * 2 ** m;
      m += 7;
      if ((c & 0x80) === 0) break;
    }
    this.pos = p;
    return v;
  }

  /** Validation bits of the last string read (see readString, readName). */
  private strMeta = 0;
  /** Per static name index, the last literal value without indexing (see readMemo). */
  private memo: (LiteralMemo | undefined)[] | undefined;
  /** The last literal name per length mod 16 (see readName). */
  private nameMemo: (LiteralMemo | undefined)[] | undefined;

  /**
   * String literal (§5.2) as a field value; undefined when truncated or a bad Huffman code.
   * Sets this.pos, and this.strMeta from the octets (checked in place: raw in `buf`, or as
   * decoded).
   */
  private readString(buf: Uint8Array, p: number, end: number): string | undefined {
    if (p >= end) return undefined;
    const huff = (buf[p] & 0x80) !== 0;
    const len = this.readInt(buf, p, end, 7);
    if (len < 0) return undefined;
    const s = this.pos;
    const e = s + len;
    if (e > end) return undefined;
    this.pos = e;
    if (huff) {
      const n = huffmanDecodeBytes(buf, s, e);
      if (n < 0) return undefined;
      const out = huffmanOut();
      this.strMeta = huffmanSawCtl() ? FieldError.VALUE_CHAR << VALUE_ERR_SHIFT : valueEnds(out, 0, n);
      return out.toString('latin1', 0, n);
    }
    this.strMeta = valueOctets(buf, s, e);
    return (buf as Buffer).toString('latin1', s, e);
  }

  /**
   * A value sent as a literal without indexing under static name `slot`: peers send fields
   * they never index that way on every message (nghttp2's `:path`, most of nginx's response
   * fields), usually with the same octets. The last one per name is remembered, octets,
   * string and verdict, so a repeat costs a compare instead of Huffman decoding, string
   * creation and validation.
   */
  private readMemo(buf: Uint8Array, p: number, end: number, slot: number): string | undefined {
    if (p >= end) return undefined;
    const huff = (buf[p] & 0x80) !== 0;
    const len = this.readInt(buf, p, end, 7);
    if (len < 0) return undefined;
    const s = this.pos;
    if (s + len > end) return undefined;
    let memo = this.memo;
    if (memo === undefined) {
      memo = new Array(STATIC_LEN + 1);
      this.memo = memo;
    }
    const c = memo[slot];
    if (c?.holds(buf, s, len, huff)) {
      this.pos = s + len;
      this.strMeta = c.meta;
      return c.str;
    }
    const str = this.readString(buf, p, end);
    if (str !== undefined && len <= MEMO_OCTETS) remember(memo, slot, buf, s, len, huff, str, this.strMeta);
    return str;
  }

  /** String literal as a field name (a literal name: rarer than values, kept apart). */
  private readName(buf: Uint8Array, p: number, end: number): string | undefined {
    if (p >= end) return undefined;
    const huff = (buf[p] & 0x80) !== 0;
    const len = this.readInt(buf, p, end, 7);
    if (len < 0) return undefined;
    const at = this.pos;
    let s = at;
    let e = s + len;
    if (e > end) return undefined;
    this.pos = e;
    // Literal names repeat too (fields an encoder never indexes): remembered by length.
    let memo = this.nameMemo;
    if (memo === undefined) {
      memo = new Array(16);
      this.nameMemo = memo;
    }
    const c = memo[len & 15];
    if (c?.holds(buf, at, len, huff)) {
      this.strMeta = c.meta;
      return c.str;
    }
    let src = buf as Buffer;
    if (huff) {
      const n = huffmanDecodeBytes(buf, s, e);
      if (n < 0) return undefined;
      src = huffmanOut();
      s = 0;
      e = n;
    }
    const m = nameOctets(src, s, e);
    const str = src.toString('latin1', s, e);
    const meta = m < 0 ? pseudoMeta(str) : m === 0 ? hopMeta(str) : m;
    this.strMeta = meta;
    if (len <= MEMO_OCTETS) remember(memo, len & 15, buf, at, len, huff, str, meta);
    return str;
  }
}

/** Fields never added to a table: credentials (§7.1.3) and values that change per request. */
const NEVER_INDEX = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie']);
const NO_INDEX = new Set(['grpc-timeout', 'content-length', 'etag', 'last-modified', 'age']);
const MAX_INDEXED_ENTRY = 512;

const STATIC_PAIRS = new Map<string, Map<string, number>>();
const STATIC_NAMES = new Map<string, number>();
for (let i = STATIC_LEN - 1; i >= 0; i--) {
  const [n, v] = STATIC_TABLE[i];
  STATIC_NAMES.set(n, i + 1);
  let m = STATIC_PAIRS.get(n);
  if (m === undefined) {
    m = new Map();
    STATIC_PAIRS.set(n, m);
  }
  if (v !== '') m.set(v, i + 1);
}

export type HeaderValue = string | string[] | number | undefined;
export type HeaderObjectLike = Readonly<Record<string, HeaderValue>>;

/**
 * One connection direction's encoder. Fields are looked up in the static table and in our
 * dynamic table (name → value → absolute id, no string building per lookup); repeated
 * fields become one-byte indexes. Literals are Huffman-coded when that is shorter.
 */
export class HpackEncoder {
  private readonly table: EncoderTable;
  /** Table size to announce at the start of the next block (after the peer lowered it). */
  private pendingSizeUpdate = -1;
  buf: Buffer;
  len = 0;

  constructor(tableSize = 4096) {
    this.table = new EncoderTable(tableSize);
    this.buf = Buffer.allocUnsafe(4096);
  }

  /** The peer's SETTINGS_HEADER_TABLE_SIZE changed: use at most 4096 either way. */
  setPeerTableSize(n: number): void {
    const size = Math.min(n, 4096);
    if (size === this.table.maxSize) return;
    this.table.setMax(size);
    this.pendingSizeUpdate = size;
  }

  /**
   * Encodes `h` into `this.buf[0, this.len)`: pseudo-headers first, array values as
   * repeated fields, undefined skipped. `never` names are sent never-indexed.
   */
  encode(h: HeaderObjectLike, never?: readonly string[]): number {
    this.len = 0;
    if (this.pendingSizeUpdate >= 0) {
      this.ensure(8);
      this.len = writeInt(this.buf, this.len, this.pendingSizeUpdate, 5, 0x20);
      this.pendingSizeUpdate = -1;
    }
    for (const name in h) {
      if (name.charCodeAt(0) !== 58) continue;
      this.field(name, h[name], never);
    }
    for (const name in h) {
      if (name.charCodeAt(0) === 58) continue;
      this.field(name, h[name], never);
    }
    return this.len;
  }

  /**
   * Encodes fields straight from parallel arrays (a decoder's output), in order, skipping
   * names in `skip`: forwarding a header block without building an object.
   */
  encodeList(
    names: readonly string[],
    values: readonly string[],
    count: number,
    skip: ReadonlySet<string> | undefined,
    never?: readonly string[],
  ): number {
    this.len = 0;
    if (this.pendingSizeUpdate >= 0) {
      this.ensure(8);
      this.len = writeInt(this.buf, this.len, this.pendingSizeUpdate, 5, 0x20);
      this.pendingSizeUpdate = -1;
    }
    for (let i = 0; i < count; i++) {
      const n = names[i];
      if (skip?.has(n)) continue;
      this.one(n, values[i], never?.includes(n) === true);
    }
    return this.len;
  }

  /** Encodes a list of (name, value) pairs in order (tests, raw forwarding). */
  encodePairs(pairs: readonly (readonly [string, string])[]): number {
    this.len = 0;
    for (const [n, v] of pairs) this.one(n, v, false);
    return this.len;
  }

  private field(name: string, v: HeaderValue, never: readonly string[] | undefined): void {
    if (v === undefined) return;
    const sensitive = never?.includes(name) === true;
    if (typeof v === 'string') this.one(name, v, sensitive);
    else if (typeof v === 'number') this.one(name, String(v), sensitive);
    else for (let i = 0; i < v.length; i++) this.one(name, v[i], sensitive);
  }

  private one(name: string, value: string, sensitive: boolean): void {
    this.ensure(name.length + value.length + 16);
    const never = sensitive || NEVER_INDEX.has(name);
    if (!never) {
      const sp = STATIC_PAIRS.get(name)?.get(value);
      if (sp !== undefined) {
        this.len = writeInt(this.buf, this.len, sp, 7, 0x80);
        return;
      }
      const dyn = this.table.find(name, value);
      if (dyn > 0) {
        this.len = writeInt(this.buf, this.len, STATIC_LEN + dyn, 7, 0x80);
        return;
      }
    }
    let nameIdx = STATIC_NAMES.get(name) ?? 0;
    if (nameIdx === 0 && !never) {
      const dn = this.table.findName(name);
      if (dn > 0) nameIdx = STATIC_LEN + dn;
    }
    const index =
      !never && !NO_INDEX.has(name) && name.length + value.length + ENTRY_OVERHEAD <= MAX_INDEXED_ENTRY;
    if (index) this.len = writeInt(this.buf, this.len, nameIdx, 6, 0x40);
    else this.len = writeInt(this.buf, this.len, nameIdx, 4, never ? 0x10 : 0x00);
    if (nameIdx === 0) this.len = writeString(this.buf, this.len, name);
    this.len = writeString(this.buf, this.len, value);
    if (index) this.table.add(name, value);
  }

  private ensure(n: number): void {
    if (this.len + n * 2 + 16 <= this.buf.length) return;
    const b = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n * 2 + 64));
    this.buf.copy(b, 0, 0, this.len);
    this.buf = b;
  }
}

/** The encoder's dynamic table with a lookup index kept in step with evictions. */
class EncoderTable extends DynamicTable {
  /** name → value → absolute id of the newest entry with that pair. */
  private readonly byPair = new Map<string, Map<string, number>>();
  private readonly byName = new Map<string, number>();

  override add(name: string, value: string): void {
    super.add(name, value);
    if (name.length + value.length + ENTRY_OVERHEAD > this.maxSize) return;
    const id = this.evicted + this.count; // absolute id (1-based) of the newest entry
    let m = this.byPair.get(name);
    if (m === undefined) {
      m = new Map();
      this.byPair.set(name, m);
    }
    m.set(value, id);
    this.byName.set(name, id);
  }

  override onEvict(name: string, value: string, index0: number): void {
    const id = index0 + 1;
    const m = this.byPair.get(name);
    if (m !== undefined && m.get(value) === id) {
      m.delete(value);
      if (m.size === 0) this.byPair.delete(name);
    }
    if (this.byName.get(name) === id) this.byName.delete(name);
  }

  /** HPACK dynamic index (1 = newest) of the pair, or 0. */
  find(name: string, value: string): number {
    const id = this.byPair.get(name)?.get(value);
    if (id === undefined) return 0;
    return this.evicted + this.count - id + 1;
  }

  findName(name: string): number {
    const id = this.byName.get(name);
    if (id === undefined) return 0;
    return this.evicted + this.count - id + 1;
  }
}

function writeInt(buf: Buffer, off: number, v: number, bits: number, flags: number): number {
  const max = (1 << bits) - 1;
  if (v < max) {
    buf[off++] = flags | v;
    return off;
  }
  buf[off++] = flags | max;
  v -= max;
  while (v >= 128) {
    buf[off++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[off++] = v;
  return off;
}

function writeString(buf: Buffer, off: number, s: string): number {
  // Short strings (and values already compact, like base64) rarely gain: skip the count.
  if (s.length >= 8) {
    const hl = huffmanLength(s);
    if (hl < s.length) {
      off = writeInt(buf, off, hl, 7, 0x80);
      return huffmanEncode(s, buf, off);
    }
  }
  off = writeInt(buf, off, s.length, 7, 0);
  return off + buf.write(s, off, s.length, 'latin1');
}
