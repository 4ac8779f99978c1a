// Strict, bounded HTTP/1.1 head parser (RFC 9112). Pure: no I/O.
//
// Why our own: node's llhttp is only reachable through undocumented internals, and the proxy
// needs the raw head bytes and body framing, not a decoded message. The parser is strict on
// purpose — every shape two HTTP implementations may read differently (request smuggling) is
// an error: CL together with TE, differing Content-Length values, transfer codings other than
// a final `chunked`, obs-fold, bare CR or LF, whitespace before the colon, control bytes.

/** tchar (RFC 9110 §5.6.2). */
const TOKEN = new Uint8Array(256);
/** field-value bytes: VCHAR, SP, HTAB, obs-text (RFC 9110 §5.5); no CTL, no DEL. */
const VALUE = new Uint8Array(256);
/** request-target bytes: visible ASCII only. */
const TARGET = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) {
  TARGET[c] = 1;
  VALUE[c] = 1;
}
for (let c = 0x80; c <= 0xff; c++) VALUE[c] = 1;
VALUE[0x20] = 1;
VALUE[0x09] = 1;
for (const ch of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TOKEN[ch.charCodeAt(0)] = 1;
}

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

/** True when `s` is a non-empty token (header name, method). */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (TOKEN[s.charCodeAt(i)] !== 1) return false;
  return true;
}

/** True when `s` may be sent as an HTTP/1 field value (no CR, LF, NUL or other CTL). */
export function isFieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || VALUE[c] !== 1) return false;
  }
  return true;
}

/** A head that cannot be accepted: the status to answer with (400, 431, 501) and why. */
export class HeadError {
  constructor(
    readonly status: number,
    readonly reason: string,
  ) {}
}

/** Body framing of a message. */
export const BODY_NONE = 0;
export const BODY_LENGTH = 1;
export const BODY_CHUNKED = 2;
/** Response only: the body runs until the server closes. */
export const BODY_CLOSE = 3;

/**
 * Field kinds the proxy acts on, found while parsing (by length and a case-insensitive
 * compare: no lower-cased string per field). Everything else is F_OTHER.
 */
export const F_OTHER = 0;
export const F_CONNECTION = 1;
export const F_KEEP_ALIVE = 2;
export const F_PROXY_CONNECTION = 3;
export const F_TE = 4;
export const F_XFP = 5;
export const F_UPGRADE = 6;
export const F_XFF = 7;
export const F_FORWARDED = 8;
export const F_HOST = 9;
export const F_CONTENT_LENGTH = 10;
export const F_TRANSFER_ENCODING = 11;
export const F_EXPECT = 12;

/** Numbers per field in `Fields.offs`: line start, colon, value start, value end, kind. */
export const FIELD_STRIDE = 5;

/**
 * Parsed fields. The strings of names and values are made only when asked for (most
 * exchanges forward head bytes as ranges and never need them): `offs` holds, per field,
 * offsets into `head` (the head as a latin1 string from its first line); `head[i]` is the
 * byte at `headBase + i` of the parsed buffer's head.
 */
/** Shared by heads that have no fields yet (never written: parseFields assigns a new array). */
const NO_OFFS: number[] = [];
/**
 * parseFields collects offsets here and copies them out once, sized exactly: pushing into
 * a fresh array per head re-grew it several times (the largest share of per-request garbage).
 */
const SCRATCH: number[] = [];
/** SCRATCH is trimmed back to this after an unusually long head. */
const SCRATCH_KEEP = 1024;

class Fields {
  head = '';
  /** Offset in the head bytes (from the parse start) where `head` begins (leading CRLFs). */
  headBase = 0;
  offs: number[] = NO_OFFS;
  contentLength = -1; // -1 when absent
  /** Content-Length fields seen; a value that was a list counts 2 (needs normalising). */
  clCount = 0;
  chunked = false;
  /** A Transfer-Encoding was present (even when not `chunked`). */
  te = false;
  close = false;
  keepAliveToken = false;
  upgradeToken = false;
  /** Connection-listed names other than close/keep-alive/upgrade: hop-by-hop too. */
  connTokens: string[] | undefined = undefined;
  private n: string[] | undefined = undefined;
  private l: string[] | undefined = undefined;
  private v: string[] | undefined = undefined;

  /** Header names as sent. */
  get names(): string[] {
    if (this.n === undefined) {
      const o = this.offs;
      const out: string[] = [];
      for (let i = 0; i < o.length; i += FIELD_STRIDE) out.push(this.head.slice(o[i], o[i + 1]));
      this.n = out;
    }
    return this.n;
  }

  /** Lower-cased names, index-aligned with `names`. */
  get lower(): string[] {
    if (this.l === undefined) {
      const n = this.names;
      const out: string[] = [];
      for (let i = 0; i < n.length; i++) out.push(n[i].toLowerCase());
      this.l = out;
    }
    return this.l;
  }

  /** Values (surrounding whitespace removed), index-aligned with `names`. */
  get values(): string[] {
    if (this.v === undefined) {
      const o = this.offs;
      const out: string[] = [];
      for (let i = 0; i < o.length; i += FIELD_STRIDE) out.push(this.head.slice(o[i + 2], o[i + 3]));
      this.v = out;
    }
    return this.v;
  }
}

export class Http1Request extends Fields {
  method = '';
  target = '';
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor = 1;
  /** Bytes of the head including its final CRLFCRLF (and leading empty lines). */
  headBytes = 0;
  host: string | undefined = undefined;
  bodyKind = BODY_NONE;
  keepAlive = true;
  /** Value of `Upgrade` when `Connection: upgrade` asked for it. */
  upgrade: string | undefined = undefined;
  expectContinue = false;
}

export class Http1Response extends Fields {
  minor = 1;
  status = 0;
  /** End of the status line in `head` (the reason phrase is sliced only when asked for). */
  eol = 0;
  headBytes = 0;
  keepAlive = true;

  get reason(): string {
    return this.eol > 13 ? this.head.slice(13, this.eol) : '';
  }
}

function isDigits(s: string): boolean {
  if (s.length === 0 || s.length > 15) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** True when `s[pos..pos+name.length)` equals lower-case `name` ignoring ASCII case (token bytes). */
function eqName(s: string, pos: number, name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    // `| 0x20` lower-cases letters; the other token bytes never map onto a letter or '-'.
    if ((s.charCodeAt(pos + i) | 0x20) !== name.charCodeAt(i)) return false;
  }
  return true;
}

function fieldKind(s: string, pos: number, len: number): number {
  switch (len) {
    case 2:
      return eqName(s, pos, 'te') ? F_TE : F_OTHER;
    case 4:
      return eqName(s, pos, 'host') ? F_HOST : F_OTHER;
    case 6:
      return eqName(s, pos, 'expect') ? F_EXPECT : F_OTHER;
    case 7:
      return eqName(s, pos, 'upgrade') ? F_UPGRADE : F_OTHER;
    case 9:
      return eqName(s, pos, 'forwarded') ? F_FORWARDED : F_OTHER;
    case 10:
      if (eqName(s, pos, 'connection')) return F_CONNECTION;
      return eqName(s, pos, 'keep-alive') ? F_KEEP_ALIVE : F_OTHER;
    case 14:
      return eqName(s, pos, 'content-length') ? F_CONTENT_LENGTH : F_OTHER;
    case 15:
      return eqName(s, pos, 'x-forwarded-for') ? F_XFF : F_OTHER;
    case 16:
      return eqName(s, pos, 'proxy-connection') ? F_PROXY_CONNECTION : F_OTHER;
    case 17:
      if (eqName(s, pos, 'transfer-encoding')) return F_TRANSFER_ENCODING;
      return eqName(s, pos, 'x-forwarded-proto') ? F_XFP : F_OTHER;
  }
  return F_OTHER;
}

/** Why the field line at `pos` is not acceptable (the checks in the order they apply). */
function lineError(s: string, pos: number): string {
  const e = s.indexOf('\r\n', pos);
  const c0 = s.charCodeAt(pos);
  if (c0 === 0x20 || c0 === 0x09) return 'obs-fold';
  const colon = s.indexOf(':', pos);
  if (colon === -1 || colon > e || colon === pos) return 'bad header line';
  for (let i = pos; i < colon; i++) {
    if (TOKEN[s.charCodeAt(i)] !== 1) return 'bad header name';
  }
  return 'bad header value';
}

/**
 * Parses header lines of `s` from `pos`; `s` ends with the CRLF of the last line. Returns an
 * error reason or undefined. Records Host/Upgrade/Expect via `extra` when given.
 */
function parseFields(s: string, pos: number, f: Fields, extra: Http1Request | undefined): string | undefined {
  let teValue = '';
  const len = s.length;
  const offs = SCRATCH;
  let k = 0;
  while (pos < len) {
    // One pass over the line: token name, ':', value bytes, CRLF. Anything else is an error,
    // and lineError() tells which.
    let colon = pos;
    while (TOKEN[s.charCodeAt(colon)] === 1) colon++;
    if (colon === pos || s.charCodeAt(colon) !== 0x3a) return lineError(s, pos);
    let vs = colon + 1;
    for (let c = s.charCodeAt(vs); c === 0x20 || c === 0x09; c = s.charCodeAt(vs)) vs++;
    let e = vs;
    while (VALUE[s.charCodeAt(e)] === 1) e++;
    if (s.charCodeAt(e) !== 0x0d || s.charCodeAt(e + 1) !== 0x0a) return lineError(s, pos);
    let ve = e;
    while (ve > vs) {
      const c = s.charCodeAt(ve - 1);
      if (c !== 0x20 && c !== 0x09) break;
      ve--;
    }
    const kind = fieldKind(s, pos, colon - pos);
    offs[k] = pos;
    offs[k + 1] = colon;
    offs[k + 2] = vs;
    offs[k + 3] = ve;
    offs[k + 4] = kind;
    k += FIELD_STRIDE;
    switch (kind) {
      case F_CONTENT_LENGTH: {
        // A list of identical values is allowed (RFC 9112 §6.3 item 5); anything else is not.
        let n = ve > vs && ve - vs <= 15 ? 0 : -1;
        for (let i = vs; i < ve && n !== -1; i++) {
          const c = s.charCodeAt(i);
          n = c >= 0x30 && c <= 0x39 ? n * 10 + (c - 0x30) : -1;
        }
        f.clCount++;
        if (n === -1) {
          const value = s.slice(vs, ve);
          f.clCount++;
          for (const part of value.split(',')) {
            const t = part.trim();
            if (!isDigits(t)) return 'bad content-length';
            const v = Number(t);
            if (n !== -1 && v !== n) return 'differing content-length';
            n = v;
          }
        }
        if (f.contentLength !== -1 && f.contentLength !== n) return 'differing content-length';
        f.contentLength = n;
        break;
      }
      case F_TRANSFER_ENCODING: {
        const value = s.slice(vs, ve);
        f.te = true;
        teValue = teValue === '' ? value : `${teValue}, ${value}`;
        break;
      }
      case F_CONNECTION: {
        if (ve - vs === 10 && eqName(s, vs, 'keep-alive')) {
          f.keepAliveToken = true;
          break;
        }
        if (ve - vs === 5 && eqName(s, vs, 'close')) {
          f.close = true;
          break;
        }
        for (const part of s.slice(vs, ve).split(',')) {
          const t = part.trim().toLowerCase();
          if (t === 'close') f.close = true;
          else if (t === 'keep-alive') f.keepAliveToken = true;
          else if (t === 'upgrade') f.upgradeToken = true;
          else if (t !== '') {
            if (f.connTokens === undefined) f.connTokens = [t];
            else if (f.connTokens.length < 32) f.connTokens.push(t);
          }
        }
        break;
      }
      case F_HOST:
        if (extra !== undefined) {
          if (extra.host !== undefined) return 'duplicate host';
          extra.host = s.slice(vs, ve);
        }
        break;
      case F_UPGRADE:
        if (extra !== undefined) extra.upgrade = s.slice(vs, ve);
        break;
      case F_EXPECT:
        if (extra !== undefined && s.slice(vs, ve).toLowerCase() === '100-continue')
          extra.expectContinue = true;
        break;
    }
    pos = e + 2;
  }
  f.offs = offs.slice(0, k);
  if (k > SCRATCH_KEEP) offs.length = SCRATCH_KEEP;
  if (f.te) {
    const codings = teValue.toLowerCase().split(',');
    const last = codings[codings.length - 1].trim();
    if (last !== 'chunked') return extra ? 'transfer-encoding not ending in chunked' : undefined;
    if (codings.length > 1) return extra ? 'unsupported transfer-coding' : undefined;
    f.chunked = true;
  }
  return undefined;
}

/**
 * Parses a request head at `buf[start..]`. Returns null while incomplete (and within
 * `maxHead` bytes), the request, or a HeadError (431 when the head exceeds `maxHead`).
 */
export function parseRequest(buf: Buffer, start: number, maxHead: number): Http1Request | HeadError | null {
  let p = start;
  // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line.
  for (let k = 0; k < 4 && p + 1 < buf.length && buf[p] === 13 && buf[p + 1] === 10; k++) p += 2;
  const idx = buf.indexOf(CRLFCRLF, p);
  if (idx === -1) {
    if (buf.length - start > maxHead) return new HeadError(431, 'request header too large');
    return null;
  }
  const headBytes = idx + 4 - start;
  if (headBytes > maxHead) return new HeadError(431, 'request header too large');
  const s = buf.toString('latin1', p, idx + 2);
  const sp1 = s.indexOf(' ');
  if (sp1 <= 0) return new HeadError(400, 'bad request line');
  for (let i = 0; i < sp1; i++) {
    if (TOKEN[s.charCodeAt(i)] !== 1) return new HeadError(400, 'bad method');
  }
  const sp2 = s.indexOf(' ', sp1 + 1);
  if (sp2 === -1 || sp2 === sp1 + 1) return new HeadError(400, 'bad request line');
  for (let i = sp1 + 1; i < sp2; i++) {
    if (TARGET[s.charCodeAt(i)] !== 1) return new HeadError(400, 'bad request target');
  }
  const eol = s.indexOf('\r\n', sp2);
  if (eol !== sp2 + 9 || s.charCodeAt(sp2 + 1) !== 0x48 || !s.startsWith('HTTP/1.', sp2 + 1)) {
    return new HeadError(400, 'bad http version');
  }
  const mc = s.charCodeAt(sp2 + 8);
  if (mc !== 0x30 && mc !== 0x31) return new HeadError(505, 'http version not supported');
  const minor = mc - 0x30;
  const req = new Http1Request();
  req.head = s;
  req.headBase = p - start;
  req.method = s.slice(0, sp1);
  req.target = s.slice(sp1 + 1, sp2);
  req.minor = minor;
  req.headBytes = headBytes;
  const err = parseFields(s, eol + 2, req, req);
  if (err !== undefined) {
    return new HeadError(err === 'unsupported transfer-coding' ? 501 : 400, err);
  }
  if (req.te) {
    // RFC 9112 §6.1: TE in HTTP/1.0 is faulty framing; §6.3: TE with CL is a smuggling shape.
    if (minor === 0) return new HeadError(400, 'transfer-encoding in HTTP/1.0');
    if (req.contentLength !== -1) return new HeadError(400, 'content-length with transfer-encoding');
  }
  if (minor === 1 && req.host === undefined) return new HeadError(400, 'missing host');
  req.keepAlive = minor === 1 ? !req.close : req.keepAliveToken && !req.close;
  req.bodyKind = req.chunked ? BODY_CHUNKED : req.contentLength > 0 ? BODY_LENGTH : BODY_NONE;
  if (!req.upgradeToken) req.upgrade = undefined;
  return req;
}

/**
 * Parses a response head at `buf[start..]`. Returns null while incomplete, the response, or
 * a HeadError (the proxy answers 502 for any of them).
 */
export function parseResponse(buf: Buffer, start: number, maxHead: number): Http1Response | HeadError | null {
  const idx = buf.indexOf(CRLFCRLF, start);
  if (idx === -1) {
    if (buf.length - start > maxHead) return new HeadError(502, 'response header too large');
    return null;
  }
  const headBytes = idx + 4 - start;
  if (headBytes > maxHead) return new HeadError(502, 'response header too large');
  const s = buf.toString('latin1', start, idx + 2);
  const eol = s.indexOf('\r\n');
  if (eol < 12 || !s.startsWith('HTTP/1.') || s.charCodeAt(8) !== 0x20) {
    return new HeadError(502, 'bad status line');
  }
  const mc = s.charCodeAt(7);
  if (mc !== 0x30 && mc !== 0x31) return new HeadError(502, 'bad status line');
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return new HeadError(502, 'bad status code');
    status = status * 10 + (c - 0x30);
  }
  if (status < 100) return new HeadError(502, 'bad status code');
  if (eol > 12 && s.charCodeAt(12) !== 0x20) return new HeadError(502, 'bad status line');
  for (let i = 13; i < eol; i++) {
    if (VALUE[s.charCodeAt(i)] !== 1) return new HeadError(502, 'bad reason phrase');
  }
  const res = new Http1Response();
  res.head = s;
  res.minor = mc - 0x30;
  res.status = status;
  res.eol = eol;
  res.headBytes = headBytes;
  const err = parseFields(s, eol + 2, res, undefined);
  if (err !== undefined) return new HeadError(502, err);
  // RFC 9112 §6.3 lets a recipient drop CL in favour of TE; refusing is simpler and safe.
  if (res.te && res.contentLength !== -1) return new HeadError(502, 'content-length with transfer-encoding');
  res.keepAlive = res.minor === 1 ? !res.close : res.keepAliveToken && !res.close;
  return res;
}

/** Body framing of a response to a request with `method` (RFC 9112 §6.3). */
export function responseBodyKind(res: Http1Response, method: string): number {
  const st = res.status;
  if (method === 'HEAD' || st < 200 || st === 204 || st === 304) return BODY_NONE;
  if (res.te) return res.chunked ? BODY_CHUNKED : BODY_CLOSE;
  if (res.contentLength >= 0) return res.contentLength === 0 ? BODY_NONE : BODY_LENGTH;
  return BODY_CLOSE;
}

// Chunked decoder states.
const S_SIZE = 0;
const S_EXT = 1;
const S_SIZE_LF = 2;
const S_DATA = 3;
const S_DATA_CR = 4;
const S_DATA_LF = 5;
const S_TRAILER_START = 6;
const S_TRAILER = 7;
const S_TRAILER_LF = 8;
const S_END_LF = 9;
const S_DONE = 10;

/** Result of ChunkedDecoder.feed when the bytes are malformed. */
export const CHUNK_ERROR = -2;
/** Result of ChunkedDecoder.feed when all bytes were consumed and the body goes on. */
export const CHUNK_MORE = -1;

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

/**
 * Tracks chunked framing (RFC 9112 §7.1) over arbitrary splits without copying. The proxy
 * forwards the raw bytes; the decoder only says where the body ends. With a `sink`, data
 * bytes are also reported (to de-chunk for HTTP/1.0 clients or HTTP/2 upstreams), and
 * trailer lines are collected (bounded).
 */
export class ChunkedDecoder {
  private state = S_SIZE;
  private size = 0;
  private sizeDigits = 0;
  private lineBytes = 0;
  private trailerBytes = 0;
  /** Raw trailer section text (only collected with a sink). */
  trailers = '';
  /** Data bytes seen so far. */
  dataBytes = 0;

  constructor(
    private readonly maxTrailer: number,
    private readonly sink?: (buf: Buffer, start: number, end: number) => void,
  ) {}

  get done(): boolean {
    return this.state === S_DONE;
  }

  /**
   * Consumes `buf[start..end)`. Returns the offset just past the body's last byte when the
   * body ends in this range, CHUNK_MORE when more is needed, CHUNK_ERROR on bad framing.
   */
  feed(buf: Buffer, start: number, end: number): number {
    let i = start;
    while (i < end) {
      const c = buf[i];
      switch (this.state) {
        case S_SIZE: {
          const h = HEX[c];
          if (h >= 0) {
            // 13 hex digits = 2^52: beyond any real body and still exact in a double.
            if (++this.sizeDigits > 13) return CHUNK_ERROR;
            this.size = this.size * 16 + h;
          } else if (this.sizeDigits === 0) return CHUNK_ERROR;
          else if (c === 0x0d) this.state = S_SIZE_LF;
          else if (c === 0x3b) {
            this.state = S_EXT;
            this.lineBytes = 0;
          } else return CHUNK_ERROR;
          i++;
          break;
        }
        case S_EXT:
          if (c === 0x0d) this.state = S_SIZE_LF;
          else if (c === 0x0a || VALUE[c] !== 1 || ++this.lineBytes > 1024) return CHUNK_ERROR;
          i++;
          break;
        case S_SIZE_LF:
          if (c !== 0x0a) return CHUNK_ERROR;
          i++;
          if (this.size === 0) {
            this.state = S_TRAILER_START;
          } else this.state = S_DATA;
          break;
        case S_DATA: {
          const n = Math.min(this.size, end - i);
          if (this.sink !== undefined) this.sink(buf, i, i + n);
          this.dataBytes += n;
          this.size -= n;
          i += n;
          if (this.size === 0) this.state = S_DATA_CR;
          break;
        }
        case S_DATA_CR:
          if (c !== 0x0d) return CHUNK_ERROR;
          this.state = S_DATA_LF;
          i++;
          break;
        case S_DATA_LF:
          if (c !== 0x0a) return CHUNK_ERROR;
          this.state = S_SIZE;
          this.sizeDigits = 0;
          i++;
          break;
        case S_TRAILER_START:
          if (c === 0x0d) {
            this.state = S_END_LF;
            i++;
            break;
          }
          this.state = S_TRAILER;
          this.lineBytes = 0;
          break;
        case S_TRAILER:
          if (c === 0x0d) this.state = S_TRAILER_LF;
          else if (c === 0x0a || (VALUE[c] !== 1 && c !== 0x3a)) return CHUNK_ERROR;
          else if (this.sink !== undefined) this.trailers += String.fromCharCode(c);
          if (++this.trailerBytes > this.maxTrailer) return CHUNK_ERROR;
          i++;
          break;
        case S_TRAILER_LF:
          if (c !== 0x0a) return CHUNK_ERROR;
          if (this.sink !== undefined) this.trailers += '\n';
          this.state = S_TRAILER_START;
          i++;
          break;
        case S_END_LF:
          if (c !== 0x0a) return CHUNK_ERROR;
          this.state = S_DONE;
          return i + 1;
        default:
          return CHUNK_ERROR;
      }
    }
    return CHUNK_MORE;
  }

  /** Trailer fields as [lower-case name, value] pairs (only with a sink). */
  trailerPairs(): [string, string][] {
    const out: [string, string][] = [];
    for (const line of this.trailers.split('\n')) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon);
      let ok = true;
      for (let i = 0; i < name.length; i++) if (TOKEN[name.charCodeAt(i)] !== 1) ok = false;
      if (ok) out.push([name.toLowerCase(), line.slice(colon + 1).trim()]);
    }
    return out;
  }
}
