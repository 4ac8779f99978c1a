import type { Matcher, Verdict } from '../matcher.js';

/** RFC 9113 §3.4: the client connection preface. */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * Decides on the 24-byte preface alone: gRPC-Java and newer grpc-go wait for the server's
 * SETTINGS before sending anything else, so waiting for HEADERS would deadlock.
 */
export function matchHttp2(buf: Buffer, seen: number): Verdict {
  const n = Math.min(buf.length, H2_PREFACE.length);
  for (let i = seen; i < n; i++) if (buf[i] !== H2_PREFACE[i]) return 'no';
  return n === H2_PREFACE.length ? 'yes' : 'more';
}

export const http2Matcher: Matcher = {
  cls: 'h2',
  match: matchHttp2,
  settle: () => false,
};
