import http from 'node:http';
import http2 from 'node:http2';
import type { Member } from '../../balancer/types.js';
import { type CheckContext, type CheckOutcome, registerCheck } from './registry.js';

function authority(member: Member, ctx: CheckContext): string {
  if (ctx.config.host) return ctx.config.host;
  const host = member.host || '127.0.0.1';
  return host.includes(':') ? `[${host}]:${member.port}` : `${host}:${member.port}`;
}

function verdict(status: number, ctx: CheckContext): CheckOutcome {
  const [lo, hi] = ctx.config.expect;
  return { ok: status >= lo && status <= hi, detail: `HTTP ${status}` };
}

/** HTTP/1.1 GET `path` on a fresh connection (agent:false): a pooled socket would hide a dead server. */
function h1Check(member: Member, ctx: CheckContext): Promise<CheckOutcome> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: CheckOutcome): void => {
      if (done) return;
      done = true;
      ctx.signal.removeEventListener('abort', onAbort);
      req.destroy();
      resolve(o);
    };
    const onAbort = (): void => finish({ ok: false, detail: 'timeout' });
    const req = http.request({
      host: member.host || '127.0.0.1',
      port: member.port,
      method: 'GET',
      path: ctx.config.path,
      agent: false,
      headers: { host: authority(member, ctx), 'user-agent': 'switchyard-health', connection: 'close' },
    });
    req.on('response', (res) => {
      res.on('error', () => {});
      finish(verdict(res.statusCode ?? 0, ctx));
    });
    req.on('error', (err: NodeJS.ErrnoException) =>
      finish({ ok: false, detail: `${err.code ?? err.message}` }),
    );
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener('abort', onAbort, { once: true });
    req.end();
  });
}

/** HTTP/2 (prior knowledge, cleartext) GET `path` for h2 pools: their servers may not speak HTTP/1. */
function h2Check(member: Member, ctx: CheckContext): Promise<CheckOutcome> {
  return new Promise((resolve) => {
    let done = false;
    const host = member.host || '127.0.0.1';
    const url = host.includes(':') ? `http://[${host}]:${member.port}` : `http://${host}:${member.port}`;
    const session = http2.connect(url);
    const finish = (o: CheckOutcome): void => {
      if (done) return;
      done = true;
      ctx.signal.removeEventListener('abort', onAbort);
      session.destroy();
      resolve(o);
    };
    const onAbort = (): void => finish({ ok: false, detail: 'timeout' });
    session.on('error', (err: NodeJS.ErrnoException) =>
      finish({ ok: false, detail: `${err.code ?? err.message}` }),
    );
    if (ctx.signal.aborted) {
      onAbort();
      return;
    }
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    const stream = session.request({
      ':method': 'GET',
      ':path': ctx.config.path,
      ':authority': authority(member, ctx),
      'user-agent': 'switchyard-health',
    });
    stream.on('response', (headers) => finish(verdict(Number(headers[':status']) || 0, ctx)));
    stream.on('error', (err: NodeJS.ErrnoException) =>
      finish({ ok: false, detail: `${err.code ?? err.message}` }),
    );
    stream.on('close', () => finish({ ok: false, detail: 'stream closed before response' }));
    stream.end();
  });
}

export function httpCheck(member: Member, ctx: CheckContext): Promise<CheckOutcome> {
  return ctx.pool.protocol === 'h2' ? h2Check(member, ctx) : h1Check(member, ctx);
}

registerCheck('http', httpCheck);
