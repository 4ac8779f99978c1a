// gRPC-over-HTTP/2 wire details the proxy needs, without I/O.
// Reference: grpc/grpc doc/PROTOCOL-HTTP2.md and doc/http-grpc-status-mapping.md.

export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** True for `application/grpc`, `application/grpc+proto`, `application/grpc-web`… (PROTOCOL-HTTP2.md). */
export function isGrpcContentType(ct: string | undefined): boolean {
  return ct !== undefined && ct.length >= 16 && ct.startsWith('application/grpc');
}

// grpc-timeout = TimeoutValue TimeoutUnit; value is at most 8 ASCII digits.
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/**
 * Milliseconds from a `grpc-timeout` header, or -1 when absent or malformed (a malformed
 * value is ignored rather than failing the call, as grpc-js does). Sub-millisecond
 * deadlines round up to 1 ms so they still fire.
 */
export function parseGrpcTimeout(v: string | string[] | undefined): number {
  if (typeof v !== 'string' || v.length < 2 || v.length > 9) return -1;
  const mult = UNIT_MS[v[v.length - 1]];
  if (mult === undefined) return -1;
  let n = 0;
  for (let i = 0; i < v.length - 1; i++) {
    const c = v.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  const ms = n * mult;
  return ms < 1 ? 1 : Math.ceil(ms);
}

/**
 * The gRPC status a client sees for an HTTP/2 RST_STREAM code
 * (http-grpc-status-mapping.md, "Errors").
 */
export function grpcStatusForRst(code: number): number {
  switch (code) {
    case 0x0: // NO_ERROR before a response: the server gave up on the call
    case 0x1: // PROTOCOL_ERROR
    case 0x2: // INTERNAL_ERROR
    case 0x3: // FLOW_CONTROL_ERROR
    case 0x4: // SETTINGS_TIMEOUT
    case 0x6: // FRAME_SIZE_ERROR
    case 0x9: // COMPRESSION_ERROR
    case 0xa: // CONNECT_ERROR
      return GrpcStatus.INTERNAL;
    case 0x7: // REFUSED_STREAM
      return GrpcStatus.UNAVAILABLE;
    case 0x8: // CANCEL
      return GrpcStatus.CANCELLED;
    case 0xb: // ENHANCE_YOUR_CALM
      return GrpcStatus.RESOURCE_EXHAUSTED;
    case 0xc: // INADEQUATE_SECURITY
      return GrpcStatus.PERMISSION_DENIED;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** HTTP status → gRPC status for a non-gRPC reply from a gRPC backend (same mapping doc). */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/**
 * grpc-message is percent-encoded (PROTOCOL-HTTP2.md): anything outside 0x20-0x7E and '%'.
 * Only gateway-made messages go through here, so the common case is the fast path.
 */
export function encodeGrpcMessage(msg: string): string {
  for (let i = 0; i < msg.length; i++) {
    const c = msg.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) return slowEncode(msg);
  }
  return msg;
}

function slowEncode(msg: string): string {
  let out = '';
  const bytes = Buffer.from(msg, 'utf8');
  for (const b of bytes) {
    if (b >= 0x20 && b <= 0x7e && b !== 0x25) out += String.fromCharCode(b);
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** "/pkg.Service/Method" → "pkg.Service", or undefined when the path is not of that shape. */
export function grpcServiceOf(path: string): string | undefined {
  const slash = path.indexOf('/', 1);
  if (path.charCodeAt(0) !== 47 || slash <= 1 || slash === path.length - 1) return undefined;
  return path.slice(1, slash);
}

/** 5-byte length-prefixed message framing (Length-Prefixed-Message). */
export function encodeGrpcFrame(payload: Buffer, compressed = false): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}
