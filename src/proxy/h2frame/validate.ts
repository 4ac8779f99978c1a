// RFC 9113 §8.1.1, §8.2, §8.3 checks on client requests. The HPACK decoder already judged
// every field as it decoded it (names, values, pseudo-header order and duplicates,
// connection-specific names; src/codec/http2/hpack.ts) and left numbers on the decoder:
// what is read here on the hot path are those numbers. Strings are built only for a
// request that is rejected (the access record's detail).
import { fieldProblem, HopError, type HpackDecoder, Pseudo, quoteName } from '../../codec/http2/hpack.js';

const REQUIRED = Pseudo.METHOD | Pseudo.SCHEME | Pseudo.PATH;

/**
 * Why a (non-CONNECT) request header block is malformed, or undefined. `path` is the
 * `:path` value (a string when present: the decoder rejects duplicates).
 */
export function requestProblem(d: HpackDecoder, path: string | undefined): string | undefined {
  if (d.fieldError !== 0) return fieldProblem(d);
  const p = d.pseudo;
  if ((p & Pseudo.STATUS) !== 0) return 'response pseudo-header field ":status" in a request';
  if (d.hopError !== 0) {
    return d.hopError === HopError.TE
      ? '"te" field with a value other than "trailers"'
      : `connection-specific field ${quoteName(d.hopName)}`;
  }
  if ((p & REQUIRED) !== REQUIRED) return 'missing ":method", ":scheme" or ":path"';
  if (path === '') return 'empty ":path"';
  return undefined;
}

/** A CONNECT request (RFC 9113 §8.5) is well formed: `:authority`, no `:scheme`, no `:path`. */
export function connectProblem(d: HpackDecoder): string | undefined {
  if (d.fieldError !== 0) return fieldProblem(d);
  const p = d.pseudo;
  if ((p & (Pseudo.SCHEME | Pseudo.PATH)) !== 0) return 'CONNECT with ":scheme" or ":path"';
  if ((p & Pseudo.AUTHORITY) === 0) return 'CONNECT without ":authority"';
  if ((p & Pseudo.STATUS) !== 0) return 'response pseudo-header field ":status" in a request';
  if (d.hopError !== 0) return 'connection-specific field in a request';
  return undefined;
}

/** Request trailers: no pseudo-header field, nothing malformed, nothing connection-specific. */
export function trailersProblem(d: HpackDecoder): string | undefined {
  if (d.fieldError !== 0) return fieldProblem(d);
  if (d.pseudo !== 0) return 'pseudo-header field in trailers';
  if (d.hopError !== 0) return `connection-specific field ${quoteName(d.hopName)} in trailers`;
  return undefined;
}

/**
 * `content-length` as a number: -1 when absent, -2 when not a single run of digits (a
 * list of values included), else its value.
 */
export function parseContentLength(v: string | string[] | undefined): number {
  if (v === undefined) return -1;
  if (typeof v !== 'string' || v.length === 0 || v.length > 15) return -2;
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -2;
    n = n * 10 + c;
  }
  return n;
}
