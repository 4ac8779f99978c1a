import { METHODS } from 'node:http';
import type { Matcher, Verdict } from '../matcher.js';

// The methods node's HTTP parser accepts (what the HTTP/1 proxy parses with), minus PRI:
// "PRI * HTTP/2.0" is the HTTP/2 preface, never an HTTP/1 request.
const methods = new Set(METHODS.filter((m) => m !== 'PRI'));
const prefixes = new Set<string>();
let maxMethod = 0;
for (const m of methods) {
  maxMethod = Math.max(maxMethod, m.length);
  for (let i = 1; i <= m.length; i++) prefixes.add(m.slice(0, i));
}

const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;
const VERSION = Buffer.from('HTTP/1.', 'latin1');

/**
 * RFC 9112 §3: request-line = method SP request-target SP HTTP-version CRLF.
 * Says `yes` only on the complete line with version HTTP/1.0 or 1.1: a known method and a
 * space alone are not enough (Redis inline commands look like "GET key\r\n"). Bytes of the
 * target already accepted on an earlier call (`seen`) are not scanned again.
 */
export function matchHttp1(buf: Buffer, seen: number): Verdict {
  const n = buf.length;
  const sp = methodEnd(buf);
  if (sp < 0) return sp === -1 ? 'more' : 'no';
  const t = sp + 1;
  if (n === t) return 'more';
  if (buf[t] === SP) return 'no'; // empty request-target
  let v = buf.indexOf(SP, t);
  const targetEnd = v < 0 ? n : v;
  for (let i = Math.max(t, seen); i < targetEnd; i++) {
    const c = buf[i];
    // Visible ASCII, and raw bytes >= 0x80 that some clients put in paths; no controls.
    if (c < 0x21 || c === 0x7f) return 'no';
  }
  if (v < 0) return 'more';
  v++;
  for (let i = 0; i < VERSION.length; i++) {
    if (v + i >= n) return 'more';
    if (buf[v + i] !== VERSION[i]) return 'no';
  }
  let p = v + VERSION.length;
  if (p >= n) return 'more';
  if (buf[p] !== 0x30 && buf[p] !== 0x31) return 'no';
  p++;
  if (p >= n) return 'more';
  if (buf[p] === LF) return 'yes';
  if (buf[p] !== CR) return 'no';
  p++;
  if (p >= n) return 'more';
  return buf[p] === LF ? 'yes' : 'no';
}

/**
 * Index of the space after a known method; -1 when the bytes so far are a prefix of a
 * known method (need more), -2 when they cannot start a request line.
 */
function methodEnd(buf: Buffer): number {
  const lim = Math.min(buf.length, maxMethod + 1);
  for (let i = 0; i < lim; i++) {
    const c = buf[i];
    if (c === SP) return i > 0 && methods.has(buf.toString('latin1', 0, i)) ? i : -2;
    // Methods are upper-case letters and '-' (M-SEARCH).
    if ((c < 0x41 || c > 0x5a) && c !== 0x2d) return -2;
  }
  if (lim > maxMethod) return -2;
  return prefixes.has(buf.toString('latin1', 0, lim)) ? -1 : -2;
}

export const http1Matcher: Matcher = {
  cls: 'http1',
  match: matchHttp1,
  // A request line cut by the byte cap (or by silence) after "METHOD SP target" is HTTP: its
  // proxy answers 414/408 instead of the bytes going to a TCP backend.
  settle: (buf) => methodEnd(buf) >= 0 && matchHttp1(buf, 0) === 'more' && buf.length > methodEnd(buf) + 1,
};
