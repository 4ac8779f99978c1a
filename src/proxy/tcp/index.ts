// TCP (and TLS passthrough) proxy: one balanced backend connection per client connection.
// Also the fallback for sniffed classes whose own proxy is not registered: those are
// tunnelled as plain `tcp`.
import type { ClientConn, GatewayContext, ProtocolProxy } from '../../core/proxy.js';
import { Tunnel, type TunnelOwner } from './tunnel.js';

class TcpProxy implements ProtocolProxy, TunnelOwner {
  private readonly tunnels = new Set<Tunnel>();
  private drained: (() => void) | null = null;

  constructor(readonly ctx: GatewayContext) {}

  get activeConnections(): number {
    return this.tunnels.size;
  }

  handle(conn: ClientConn): void {
    const t = new Tunnel(this, conn);
    this.tunnels.add(t);
    t.start();
  }

  done(t: Tunnel): void {
    this.tunnels.delete(t);
    if (this.tunnels.size === 0 && this.drained !== null) this.drained();
  }

  /**
   * Tunnels have no unit of work to finish between: let them run until their peers close
   * them or `deadline` passes, then cut what is left (logged).
   */
  async drain(deadline: number): Promise<number> {
    if (this.tunnels.size === 0) return 0;
    let cut = 0;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(
        () => {
          const left = this.tunnels.size;
          cut = left;
          if (left > 0) {
            this.ctx.logger.warn({ type: 'event', event: 'drain_cut', proxy: 'tcp', tunnels: left });
            for (const t of [...this.tunnels]) t.cut();
          }
        },
        Math.max(0, deadline - Date.now()),
      );
      this.drained = () => {
        clearTimeout(timer);
        this.drained = null;
        resolve();
      };
    });
    return cut;
  }
}

export function createTcpProxy(ctx: GatewayContext): ProtocolProxy {
  return new TcpProxy(ctx);
}
