// `health.type: thrift`: a real call of `health.method` with no arguments, in the pool's
// transport and protocol, on a fresh connection (a pooled one would hide a dead server).
// Any reply means the server's Thrift stack answered: a REPLY (even a declared exception
// in it), or an EXCEPTION message such as TApplicationException UNKNOWN_METHOD. Silence
// until the timeout, a closed connection, or bytes that are not a Thrift reply are down.
// For multiplexed servers, configure the method as "Service:method".
import net from 'node:net';
import type { Member } from '../../balancer/types.js';
import { CALL, EXCEPTION, REPLY } from '../../codec/thrift/constants.js';
import { messageHeaderSize, writeMessageHeader } from '../../codec/thrift/message.js';
import { MessageReader } from '../../codec/thrift/reader.js';
import { type CheckContext, type CheckOutcome, registerCheck } from './registry.js';

/** A health reply bigger than this is refused (bounded memory per check). */
const MAX_REPLY = 1024 * 1024;
const SEQID = 1;

/** The call's wire bytes: header, empty argument struct (STOP), framed if the pool is. */
export function healthCallBytes(
  method: string,
  transport: 'framed' | 'unframed',
  protocol: 'binary' | 'compact',
): Buffer {
  const name = Buffer.from(method, 'utf8');
  const msgLen = messageHeaderSize(protocol, name.length, SEQID) + 1;
  const pre = transport === 'framed' ? 4 : 0;
  const out = Buffer.allocUnsafe(pre + msgLen);
  if (pre) out.writeInt32BE(msgLen, 0);
  const o = writeMessageHeader(out, pre, protocol, CALL, name, SEQID);
  out[o] = 0; // STOP: no arguments
  return out;
}

export function thriftCheck(member: Member, ctx: CheckContext): Promise<CheckOutcome> {
  return new Promise((resolve) => {
    const { transport, protocol } = ctx.pool.thrift;
    const method = ctx.config.method;
    let done = false;
    const sock = net.connect({ host: member.host || '127.0.0.1', port: member.port, noDelay: true });
    const finish = (o: CheckOutcome): void => {
      if (done) return;
      done = true;
      ctx.signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve(o);
    };
    const onAbort = (): void => finish({ ok: false, detail: 'timeout' });
    if (ctx.signal.aborted) {
      onAbort();
      return;
    }
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    const reader = new MessageReader(transport, protocol, MAX_REPLY, false);
    sock.on('error', (err: NodeJS.ErrnoException) =>
      finish({ ok: false, detail: `${err.code ?? err.message}` }),
    );
    sock.on('close', () => finish({ ok: false, detail: 'connection closed without a reply' }));
    sock.once('connect', () => sock.write(healthCallBytes(method, transport, protocol)));
    sock.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      const msg = reader.next();
      if (msg !== undefined) {
        const t = msg.header.type;
        if (t === REPLY) finish({ ok: true, detail: 'reply' });
        else if (t === EXCEPTION) finish({ ok: true, detail: 'exception reply' });
        else finish({ ok: false, detail: `unexpected message type ${t}` });
        return;
      }
      if (reader.error !== undefined) finish({ ok: false, detail: `not a Thrift reply: ${reader.error}` });
    });
  });
}

registerCheck('thrift', thriftCheck);
