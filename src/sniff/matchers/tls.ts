import { type ClientHelloInfo, parseClientHello } from '../../codec/tls-client-hello.js';
import type { Matcher, Verdict } from '../matcher.js';

/**
 * A TLS record header (0x16 0x03 0x00-0x04, length) starting a ClientHello (handshake type
 * 1). Says `yes` once the whole ClientHello is there so SNI and ALPN can be routed on; a
 * hello that is malformed past a valid header is still TLS (the backend will refuse it),
 * it just carries no SNI. A hello longer than the sniff cap is settled as TLS without SNI.
 */
export function matchTls(buf: Buffer, _seen: number): Verdict {
  const h = header(buf);
  if (h !== 'yes') return h;
  return parseClientHello(buf) === 'more' ? 'more' : 'yes';
}

/** What the ClientHello said, or undefined when it was cut or malformed. */
export function tlsDetail(buf: Buffer): ClientHelloInfo | undefined {
  const r = parseClientHello(buf);
  return typeof r === 'object' ? r : undefined;
}

function header(buf: Buffer): Verdict {
  const n = buf.length;
  if (n < 1) return 'more';
  if (buf[0] !== 0x16) return 'no';
  if (n < 2) return 'more';
  if (buf[1] !== 0x03) return 'no';
  if (n < 3) return 'more';
  if (buf[2] > 0x04) return 'no';
  if (n < 5) return 'more';
  const len = (buf[3] << 8) | buf[4];
  // RFC 8446 §5.1: 1..2^14 bytes of fragment (+256 tolerated on the wire).
  if (len === 0 || len > 16384 + 256) return 'no';
  if (n < 6) return 'more';
  return buf[5] === 0x01 ? 'yes' : 'no';
}

export const tlsMatcher: Matcher = {
  cls: 'tls',
  match: matchTls,
  settle: (buf) => header(buf) === 'yes',
};
