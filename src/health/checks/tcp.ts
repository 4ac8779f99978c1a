import net from 'node:net';
import type { Member } from '../../balancer/types.js';
import { type CheckContext, type CheckOutcome, registerCheck } from './registry.js';

/** Connect, then close at once: the server is up when it accepts. */
export function tcpCheck(member: Member, ctx: CheckContext): Promise<CheckOutcome> {
  return new Promise((resolve) => {
    if (ctx.signal.aborted) {
      resolve({ ok: false, detail: 'timeout' });
      return;
    }
    const sock = net.connect({ host: member.host || '127.0.0.1', port: member.port });
    const onAbort = (): void => finish(false, 'timeout');
    const finish = (ok: boolean, detail: string): void => {
      ctx.signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve({ ok, detail });
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => finish(true, 'connected'));
    sock.on('error', (err: NodeJS.ErrnoException) => finish(false, `connect ${err.code ?? err.message}`));
  });
}

registerCheck('tcp', tcpCheck);
