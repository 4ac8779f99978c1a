// The Thrift proxy: per-call routing and balancing over pooled backend connections
// (docs/thrift.md). Sessions split client bytes into calls (session.ts); each call is
// routed, picked and sent on its own (call.ts) over the shared backend connections of
// upstream/thrift-pool.ts.
import { performance } from 'node:perf_hooks';
import type { Member } from '../../balancer/types.js';
import type { PoolConfig } from '../../config/runtime.js';
import type { ClientConn, GatewayContext, ProtocolProxy } from '../../core/proxy.js';
import type { RouteKey } from '../../core/types.js';
import { type BackendOptions, ThriftBackends } from '../../upstream/thrift-pool.js';
import { DeadlineList } from './deadlines.js';
import { ClientSession } from './session.js';

const SWEEP_MS = 500;

interface PoolState {
  opts: BackendOptions;
  deadlines: DeadlineList;
}

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
  /** Per pool config (built once per config load): backend options, request deadlines. */
  private readonly pools = new WeakMap<PoolConfig, PoolState>();
  /** Request-timeout lists by duration, shared across pools and reloads. */
  private readonly deadlines = new Map<number, DeadlineList>();
  private sweeper: NodeJS.Timeout | undefined;
  private draining = false;
  /** Set when `global.grace` ran out: calls still running end as `cut`, not blamed on a server. */
  cutting = false;
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
    this.startSweeper();
    const s = new ClientSession(this, conn);
    if (s.closed) return;
    this.sessions.add(s);
    if (this.draining) s.drain();
  }

  poolState(pc: PoolConfig, maxMessage: number): PoolState {
    let st = this.pools.get(pc);
    if (st === undefined || st.opts.maxMessage !== maxMessage) {
      const ms = pc.timeouts.request;
      let deadlines = this.deadlines.get(ms);
      if (deadlines === undefined) {
        deadlines = new DeadlineList(ms);
        this.deadlines.set(ms, deadlines);
      }
      st = {
        opts: {
          transport: pc.thrift.transport,
          protocol: pc.thrift.protocol,
          pipelining: pc.thrift.pipelining,
          connectTimeout: pc.timeouts.connect,
          idleTimeout: pc.timeouts.serverIdle,
          maxMessage,
        },
        deadlines,
      };
      this.pools.set(pc, st);
    }
    return st;
  }

  /**
   * Idle timeouts without a timer refresh per read and write: every SWEEP_MS, a session or
   * backend connection that saw no I/O since the last sweep starts (or goes on) being
   * idle; idle past its timeout, it is closed. Closes come between timeout and timeout +
   * SWEEP_MS, never early.
   */
  private readonly sweep = (): void => {
    const now = performance.now();
    for (const s of this.sessions) s.sweep(now);
    this.backends.sweep(now);
  };

  private startSweeper(): void {
    if (this.sweeper !== undefined) return;
    this.sweeper = setInterval(this.sweep, SWEEP_MS);
    this.sweeper.unref();
  }

  sessionClosed(s: ClientSession): void {
    this.sessions.delete(s);
    if (this.draining && this.sessions.size === 0) this.drained?.();
  }

  drain(deadline: number): Promise<number> {
    this.draining = true;
    for (const s of this.sessions) s.drain();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        this.drained = undefined;
        const cut = this.sessions.size;
        this.cutting = cut > 0;
        for (const s of [...this.sessions]) s.socket.destroy();
        this.backends.closeAll();
        if (this.sweeper !== undefined) clearInterval(this.sweeper);
        this.sweeper = undefined;
        resolve(cut);
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
