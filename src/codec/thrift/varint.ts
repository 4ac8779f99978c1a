// Unsigned LEB128 varints as the compact protocol writes them (i16/i32/i64 values are
// zigzagged first; message seqids, lengths and sizes are not).

/**
 * Length of the varint at buf[p], at most `max` bytes: > 0 its length, 0 when the bytes end
 * before it does, -1 when it runs past `max` bytes (malformed).
 */
export function varintLength(buf: Uint8Array, p: number, end: number, max: number): number {
  const stop = Math.min(end, p + max);
  for (let i = p; i < stop; i++) {
    if ((buf[i] & 0x80) === 0) return i - p + 1;
  }
  return end - p >= max ? -1 : 0;
}

/** Bytes read by the last `readVarint32` (0: incomplete, -1: malformed). */
export let varintBytes = 0;

/** Reads a varint of at most 5 bytes as an unsigned 32-bit value; see `varintBytes`. */
export function readVarint32(buf: Uint8Array, p: number, end: number): number {
  let value = 0;
  let shift = 0;
  for (let i = p; i < end; i++) {
    const b = buf[i];
    if (shift === 28) {
      // The fifth byte carries the top 4 bits; more would overflow 32 bits.
      if (b & 0x80) {
        varintBytes = -1;
        return 0;
      }
      varintBytes = 5;
      return (value + (b & 0x0f) * 0x10000000) >>> 0;
    }
    value |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) {
      varintBytes = i - p + 1;
      return value >>> 0;
    }
    shift += 7;
  }
  varintBytes = 0;
  return 0;
}

/** Canonical varint length of an unsigned 32-bit value (1-5). */
export function varint32Size(u: number): number {
  u >>>= 0;
  if (u < 0x80) return 1;
  if (u < 0x4000) return 2;
  if (u < 0x200000) return 3;
  if (u < 0x10000000) return 4;
  return 5;
}

/** Writes `u` as a canonical varint at buf[o]; returns the offset after it. */
export function writeVarint32(buf: Uint8Array, o: number, u: number): number {
  u >>>= 0;
  while (u >= 0x80) {
    buf[o++] = (u & 0x7f) | 0x80;
    u >>>= 7;
  }
  buf[o++] = u;
  return o;
}

/**
 * Writes `u` in exactly `len` bytes (padded with continuation bytes when it is shorter;
 * every Apache decoder accepts that). False, writing nothing, when it does not fit.
 */
export function writeVarint32Fixed(buf: Uint8Array, o: number, u: number, len: number): boolean {
  u >>>= 0;
  if (len < 5 && u >= 2 ** (7 * len)) return false;
  for (let i = 0; i < len - 1; i++) {
    buf[o + i] = (u & 0x7f) | 0x80;
    u >>>= 7;
  }
  buf[o + len - 1] = u & 0x7f;
  return true;
}

export const zigzag32 = (n: number): number => ((n << 1) ^ (n >> 31)) >>> 0;
export const unzigzag32 = (u: number): number => (u >>> 1) ^ -(u & 1);
