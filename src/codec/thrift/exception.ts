// TApplicationException replies the gateway writes itself (no server, timeout, refused):
// an EXCEPTION message whose struct is { 1: string message, 2: i32 type }, in the
// transport and protocol the client speaks, with the client's seqid.

import {
  C_BINARY,
  C_I32,
  EXCEPTION,
  T_I32,
  T_STRING,
  type ThriftProtocol,
  type ThriftTransport,
} from './constants.js';
import { messageHeaderSize, writeMessageHeader } from './message.js';
import { THEADER_FIXED, writeTHeaderPrefix } from './theader.js';
import { varint32Size, writeVarint32, zigzag32 } from './varint.js';

export interface ExceptionReply {
  transport: ThriftTransport;
  protocol: ThriftProtocol;
  /** The reply's method name: the bare method, as a (multiplexed) server would send it. */
  name: string;
  seqid: number;
  type: number; // TAppErr
  message: string;
  /** THeader clients: the request frame's flags and sequence. */
  theader?: { flags: number; sequence: number };
}

/** The whole wire reply (transport framing included). */
export function writeApplicationException(r: ExceptionReply): Buffer {
  const name = Buffer.from(r.name, 'utf8');
  const text = Buffer.from(r.message, 'utf8');
  const head = messageHeaderSize(r.protocol, name.length, r.seqid);
  const body =
    r.protocol === 'binary'
      ? 3 + 4 + text.length + 3 + 4 + 1
      : 1 + varint32Size(text.length) + text.length + 1 + varint32Size(zigzag32(r.type)) + 1;
  const msgLen = head + body;
  const prefix = r.transport === 'framed' ? 4 : r.transport === 'header' ? THEADER_FIXED + 4 : 0;
  const out = Buffer.allocUnsafe(prefix + msgLen);
  if (r.transport === 'framed') out.writeInt32BE(msgLen, 0);
  else if (r.transport === 'header') {
    const th = r.theader ?? { flags: 0, sequence: 0 };
    writeTHeaderPrefix(r.protocol, th.flags, th.sequence, msgLen).copy(out, 0);
  }
  let o = writeMessageHeader(out, prefix, r.protocol, EXCEPTION, name, r.seqid);
  if (r.protocol === 'binary') {
    out[o++] = T_STRING;
    o = out.writeInt16BE(1, o);
    o = out.writeInt32BE(text.length, o);
    o += text.copy(out, o);
    out[o++] = T_I32;
    o = out.writeInt16BE(2, o);
    o = out.writeInt32BE(r.type, o);
  } else {
    // Field ids 1 and 2 as deltas from the previous id (1 each) in the high nibble.
    out[o++] = (1 << 4) | C_BINARY;
    o = writeVarint32(out, o, text.length);
    o += text.copy(out, o);
    out[o++] = (1 << 4) | C_I32;
    o = writeVarint32(out, o, zigzag32(r.type));
  }
  out[o++] = 0; // STOP
  return out;
}
