// The Thrift proxy: per-call routing and balancing over pooled backend connections
// (docs/thrift.md). Sessions split client bytes into calls (session.ts); each call is
// routed, picked and sent on its own (call.ts) over the shared backend connections of
// upstream/thrift-pool.ts.
import type { Member } from '../../balancer/types.js';
import type { PoolConfig } from '../../config/runtime.js';
import type { ClientConn, GatewayContext, ProtocolProxy } from '../../core/proxy.js';
import type { RouteKey } from '../../core/types.js';
import { type BackendOptions, ThriftBackends } from '../../upstream/thrift-pool.js';
import { ClientSession } from './session.js';

export class ThriftProxy implements ProtocolProxy {
  readonly ctx: GatewayContext;
  readonly backends = new ThriftBackends();
  readonly sessions = new Set<ClientSession>();
  /** Reused for every pick: Pool.pick reads it synchronously. */
  readonly pickReq: {
    hashKey: string | undefined;
    avoid: readonly Member[] | undefined;
  } = {
    hashKey: undefined,
    avoid: undefined,
  };
  /** Reused for every route lookup: the router reads it synchronously. */
  readonly routeKey: RouteKey = { proto: 'thrift', source: '', method: undefined, service: undefined };
  /** Backend options per pool config (built once per config load). */
  private readonly opts = new WeakMap<PoolConfig, BackendOptions>();
  private draining = false;
  private drained: (() => void) | undefined;

  /** Client sessions corked to gather replies until the flush at the end of this loop turn. */
  private readonly batched: ClientSession[] = [];
  private readonly flushBatched = (): void => {
    const list = this.batched;
    for (let i = 0; i < list.length; i++) {
      const s = list[i];
      s.batched = false;
      if (!s.closed) s.socket.uncork();
    }
    list.length = 0;
  };

  constructor(ctx: GatewayContext) {
    this.ctx = ctx;
  }

  /** Uncorks `s` in the check phase of this event-loop turn (one setImmediate for all). */
  batch(s: ClientSession): void {
    if (this.batched.push(s) === 1) setImmediate(this.flushBatched);
  }

  get activeConnections(): number {
    return this.sessions.size;
  }

  handle(conn: ClientConn): void {
    const s = new ClientSession(this, conn);
    if (s.closed) return;
    this.sessions.add(s);
    if (this.draining) s.drain();
  }

  backendOptions(pc: PoolConfig, maxMessage: number): BackendOptions {
    let o = this.opts.get(pc);
    if (o === undefined || o.maxMessage !== maxMessage) {
      o = {
        transport: pc.thrift.transport,
        protocol: pc.thrift.protocol,
        pipelining: pc.thrift.pipelining,
        connectTimeout: pc.timeouts.connect,
        idleTimeout: pc.timeouts.serverIdle,
        maxMessage,
      };
      this.opts.set(pc, o);
    }
    return o;
  }

  sessionClosed(s: ClientSession): void {
    this.sessions.delete(s);
    if (this.draining && this.sessions.size === 0) this.drained?.();
  }

  drain(deadline: number): Promise<void> {
    this.draining = true;
    for (const s of this.sessions) s.drain();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        this.drained = undefined;
        for (const s of [...this.sessions]) s.socket.destroy();
        this.backends.closeAll();
        resolve();
      };
      if (this.sessions.size === 0) {
        done();
        return;
      }
      this.drained = done;
      timer = setTimeout(done, Math.max(0, deadline - Date.now()));
    });
  }
}

export function createThriftProxy(ctx: GatewayContext): ProtocolProxy {
  return new ThriftProxy(ctx);
}
