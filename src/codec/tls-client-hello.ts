// TLS ClientHello reader for SNI routing (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2, RFC 6066 §3
// server_name, RFC 7301 §3.1 ALPN). Pure: no I/O, no allocation beyond the result (and one
// reassembly buffer when the handshake spans several records). Every length read from the
// wire is checked against what is actually there, so malformed input is 'invalid', never a
// throw or an out-of-bounds read.

export interface ClientHelloInfo {
  sni?: string;
  alpn?: string[];
}

const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;
const CONTENT_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
/** RFC 8446 §5.1: a plaintext fragment MUST NOT exceed 2^14; §5.2 allows 2^14 + 256 on the wire. */
const MAX_RECORD = 16384 + 256;
/** A ClientHello with every extension real clients send stays far below this. */
const MAX_HELLO = 65536;
const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;
const SNI_HOST_NAME = 0x00;
/** RFC 1035: a DNS name is at most 255 octets. */
const MAX_HOST = 255;

/**
 * Reads the ClientHello starting at `buf[0]` (the first TLS record header).
 * - object: the hello is complete and well formed; `sni` is lower-cased without a trailing
 *   dot, `alpn` lists the offered protocols in order.
 * - 'more': so far consistent, more bytes are needed.
 * - 'invalid': not a well-formed ClientHello.
 */
export function parseClientHello(buf: Uint8Array): ClientHelloInfo | 'more' | 'invalid' {
  const first = recordHeader(buf, 0);
  if (first === 'more' || first === 'invalid') return first;
  // The 4-byte handshake header split over records is legal but no real stack does it;
  // refusing it keeps the reassembly below simple.
  if (first < HANDSHAKE_HEADER) return 'invalid';
  // Common case: the whole handshake message is inside the first record; parse in place.
  if (buf.length < RECORD_HEADER + HANDSHAKE_HEADER) return 'more';
  if (buf[RECORD_HEADER] !== HANDSHAKE_CLIENT_HELLO) return 'invalid';
  const helloLen = (buf[6] << 16) | (buf[7] << 8) | buf[8];
  if (helloLen > MAX_HELLO) return 'invalid';
  const total = HANDSHAKE_HEADER + helloLen;
  if (total <= first) {
    if (buf.length < RECORD_HEADER + total) return 'more';
    return parseBody(buf, RECORD_HEADER + HANDSHAKE_HEADER, RECORD_HEADER + total);
  }
  return reassemble(buf, total);
}

/** Length of the record at `off`, after checking its header. */
function recordHeader(buf: Uint8Array, off: number): number | 'more' | 'invalid' {
  const have = buf.length - off;
  if (have < 1) return 'more';
  if (buf[off] !== CONTENT_HANDSHAKE) return 'invalid';
  if (have < 2) return 'more';
  if (buf[off + 1] !== 0x03) return 'invalid';
  if (have < 3) return 'more';
  if (buf[off + 2] > 0x04) return 'invalid';
  if (have < RECORD_HEADER) return 'more';
  const len = (buf[off + 3] << 8) | buf[off + 4];
  // RFC 8446 §5.1: zero-length Handshake fragments MUST NOT be sent.
  if (len === 0 || len > MAX_RECORD) return 'invalid';
  return len;
}

/**
 * The handshake message spans several records (RFC 8446 §5.1 allows fragmenting it).
 * Gather the fragments into one buffer, bounded by `total` (itself bounded by MAX_HELLO).
 */
function reassemble(buf: Uint8Array, total: number): ClientHelloInfo | 'more' | 'invalid' {
  // First pass: is everything there? No allocation until it is.
  let off = 0;
  let got = 0;
  while (got < total) {
    const len = recordHeader(buf, off);
    if (len === 'more' || len === 'invalid') return len;
    const avail = Math.min(len, buf.length - off - RECORD_HEADER);
    got += avail;
    if (avail < len) return got >= total ? parseGathered(buf, total) : 'more';
    off += RECORD_HEADER + len;
  }
  return parseGathered(buf, total);
}

function parseGathered(buf: Uint8Array, total: number): ClientHelloInfo | 'more' | 'invalid' {
  const msg = new Uint8Array(total);
  let off = 0;
  let got = 0;
  while (got < total) {
    const len = (buf[off + 3] << 8) | buf[off + 4];
    const take = Math.min(len, total - got, buf.length - off - RECORD_HEADER);
    msg.set(buf.subarray(off + RECORD_HEADER, off + RECORD_HEADER + take), got);
    got += take;
    off += RECORD_HEADER + len;
  }
  return parseBody(msg, HANDSHAKE_HEADER, total);
}

/** `buf[start, end)` is the ClientHello body (after the 4-byte handshake header). */
function parseBody(buf: Uint8Array, start: number, end: number): ClientHelloInfo | 'invalid' {
  let p = start;
  // legacy_version (2) + random (32)
  p += 34;
  if (p + 1 > end) return 'invalid';
  const sidLen = buf[p];
  if (sidLen > 32) return 'invalid';
  p += 1 + sidLen;
  if (p + 2 > end) return 'invalid';
  const csLen = (buf[p] << 8) | buf[p + 1];
  if (csLen < 2 || (csLen & 1) !== 0) return 'invalid';
  p += 2 + csLen;
  if (p + 1 > end) return 'invalid';
  const compLen = buf[p];
  if (compLen < 1) return 'invalid';
  p += 1 + compLen;
  if (p > end) return 'invalid';
  const info: ClientHelloInfo = {};
  if (p === end) return info; // no extensions (RFC 5246 §7.4.1.2 allows it)
  if (p + 2 > end) return 'invalid';
  const extLen = (buf[p] << 8) | buf[p + 1];
  p += 2;
  if (p + extLen !== end) return 'invalid';
  let seenSni = false;
  let seenAlpn = false;
  while (p < end) {
    if (p + 4 > end) return 'invalid';
    const type = (buf[p] << 8) | buf[p + 1];
    const len = (buf[p + 2] << 8) | buf[p + 3];
    p += 4;
    const extEnd = p + len;
    if (extEnd > end) return 'invalid';
    if (type === EXT_SERVER_NAME) {
      // RFC 8446 §4.2: no more than one extension of the same type.
      if (seenSni) return 'invalid';
      seenSni = true;
      const sni = readServerName(buf, p, extEnd);
      if (sni === 'invalid') return sni;
      if (sni !== undefined) info.sni = sni;
    } else if (type === EXT_ALPN) {
      if (seenAlpn) return 'invalid';
      seenAlpn = true;
      const alpn = readAlpn(buf, p, extEnd);
      if (alpn === 'invalid') return alpn;
      info.alpn = alpn;
    }
    p = extEnd;
  }
  return info;
}

/** RFC 6066 §3: ServerNameList; the first host_name entry is the one used. */
function readServerName(buf: Uint8Array, p: number, end: number): string | undefined | 'invalid' {
  // A server_name extension may be empty in a ServerHello, never meaningfully in a ClientHello,
  // but some stacks send it empty; treat it as "no SNI".
  if (p === end) return undefined;
  if (p + 2 > end) return 'invalid';
  const listLen = (buf[p] << 8) | buf[p + 1];
  p += 2;
  if (p + listLen !== end) return 'invalid';
  let host: string | undefined;
  while (p < end) {
    if (p + 3 > end) return 'invalid';
    const nameType = buf[p];
    const len = (buf[p + 1] << 8) | buf[p + 2];
    p += 3;
    if (p + len > end) return 'invalid';
    if (nameType === SNI_HOST_NAME && host === undefined) {
      host = readHost(buf, p, p + len);
      if (host === 'invalid') return host;
    }
    p += len;
  }
  return host;
}

/** A DNS host name: visible ASCII, lower-cased, one trailing dot dropped. */
function readHost(buf: Uint8Array, p: number, end: number): string | 'invalid' {
  let len = end - p;
  if (len > 0 && buf[end - 1] === 0x2e) len--;
  if (len < 1 || len > MAX_HOST) return 'invalid';
  let s = '';
  for (let i = p; i < p + len; i++) {
    let c = buf[i];
    if (c <= 0x20 || c >= 0x7f) return 'invalid';
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    s += String.fromCharCode(c);
  }
  return s;
}

/** RFC 7301 §3.1: ProtocolNameList, each name 1..255 bytes, the list non-empty. */
function readAlpn(buf: Uint8Array, p: number, end: number): string[] | 'invalid' {
  if (p + 2 > end) return 'invalid';
  const listLen = (buf[p] << 8) | buf[p + 1];
  p += 2;
  if (listLen < 2 || p + listLen !== end) return 'invalid';
  const out: string[] = [];
  while (p < end) {
    const len = buf[p];
    p += 1;
    if (len === 0 || p + len > end) return 'invalid';
    let s = '';
    for (let i = p; i < p + len; i++) s += String.fromCharCode(buf[i]);
    out.push(s);
    p += len;
  }
  return out;
}
