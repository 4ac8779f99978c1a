// Moving a message between transports, and replacing its header, without copying its body.

import type { ThriftProtocol, ThriftTransport } from './constants.js';
import { messageHeaderSize, writeMessageHeader } from './message.js';
import type { ThriftMessage } from './reader.js';
import { writeTHeaderPrefix } from './theader.js';

/** The protocol message without its transport prefix, as buffers, and its length. */
export interface Payload {
  parts: Buffer[];
  length: number;
  protocol: ThriftProtocol;
}

export function payloadOf(msg: ThriftMessage): Payload {
  const length = msg.size - msg.prefix;
  const protocol = msg.header.protocol;
  if (msg.prefix === 0) return { parts: msg.parts, length, protocol };
  const parts = msg.parts.slice();
  parts[0] = parts[0].subarray(msg.prefix);
  return { parts, length, protocol };
}

/**
 * The message with a new name and seqid in its header (the body is shared, not copied).
 * Used when the name changes length (strip_service).
 */
export function withHeader(msg: ThriftMessage, name: string, seqid: number): Payload {
  const hdr = msg.header;
  const nameBytes = Buffer.from(name, 'utf8');
  const size = messageHeaderSize(hdr.protocol, nameBytes.length, seqid);
  const head = Buffer.allocUnsafe(size);
  writeMessageHeader(head, 0, hdr.protocol, hdr.type, nameBytes, seqid);
  const bodyStart = msg.prefix + hdr.length;
  const parts = msg.parts.slice();
  parts[0] = parts[0].subarray(bodyStart);
  parts.unshift(head);
  return { parts, length: msg.size - bodyStart + size, protocol: hdr.protocol };
}

/**
 * Wire buffers for a payload in `transport`. THeader needs the request's flags and
 * sequence.
 */
export function wrap(
  p: Payload,
  transport: ThriftTransport,
  theader?: { flags: number; sequence: number },
): Buffer[] {
  if (transport === 'unframed') return p.parts;
  let prefix: Buffer;
  if (transport === 'framed') {
    prefix = Buffer.allocUnsafe(4);
    prefix.writeInt32BE(p.length, 0);
  } else {
    prefix = writeTHeaderPrefix(p.protocol, theader?.flags ?? 0, theader?.sequence ?? 0, p.length);
  }
  const parts = p.parts.slice();
  parts.unshift(prefix);
  return parts;
}

/**
 * The message's wire buffers in `transport`: as read when the transport is the same
 * (framed and unframed), otherwise re-wrapped around the same payload.
 */
export function convert(
  msg: ThriftMessage,
  transport: ThriftTransport,
  theader?: { flags: number; sequence: number },
): Buffer[] {
  if (msg.transport === transport && transport !== 'header') return msg.parts;
  return wrap(payloadOf(msg), transport, theader);
}

/** One buffer for a list (copies only when there are several). */
export function flatten(parts: Buffer[], length?: number): Buffer {
  return parts.length === 1 ? parts[0] : Buffer.concat(parts, length);
}
