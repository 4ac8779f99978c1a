// The HTTP/1.1 reverse proxy (ProtocolProxy for sniffed `http1` connections). See
// docs/http1.md for behaviour, limits and measured figures.
import type { ClientConn, GatewayContext, ProtocolProxy } from '../../core/proxy.js';
import { H1Upstreams } from '../../upstream/h1-pool.js';
import { Session } from './session.js';

/** Granularity of every HTTP/1 timeout: one sweep over all connections per tick. */
const TICK_MS = 100;

/** State shared by the sessions of one proxy. */
export class Http1ProxyCore {
  /** Coarse clock (epoch ms) refreshed every tick: timeouts need no per-request Date.now(). */
  clock = Date.now();
  readonly sessions = new Set<Session>();
  readonly upstreams = new H1Upstreams();
  draining = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly ctx: GatewayContext) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  private tick(): void {
    const now = Date.now();
    this.clock = now;
    for (const s of this.sessions) s.sweep(now);
    this.upstreams.sweep(now);
    if (this.sessions.size === 0 && this.draining && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.upstreams.closeIdle();
  }
}

class Http1Proxy implements ProtocolProxy {
  readonly core: Http1ProxyCore;

  constructor(ctx: GatewayContext) {
    this.core = new Http1ProxyCore(ctx);
  }

  get activeConnections(): number {
    return this.core.sessions.size;
  }

  handle(conn: ClientConn): void {
    const core = this.core;
    core.start();
    core.clock = Date.now();
    const s = new Session(core, conn);
    if (!conn.socket.destroyed) core.sessions.add(s);
    if (core.draining || this.core.ctx.draining) {
      core.draining = true;
      s.drain();
    }
  }

  async drain(deadline: number): Promise<number> {
    const core = this.core;
    core.draining = true;
    for (const s of core.sessions) s.drain();
    while (core.sessions.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
    }
    const left = [...core.sessions];
    for (const s of left) s.cut();
    core.stop();
    return left.length;
  }
}

export function createHttp1Proxy(ctx: GatewayContext): ProtocolProxy {
  return new Http1Proxy(ctx);
}
