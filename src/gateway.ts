// The running gateway: builds live objects from a GatewayConfig, binds listeners, hands
// each sniffed connection to its protocol proxy, and swaps configs on reload.
import net from 'node:net';
import type { MemberOwner, PoolMember } from './balancer/member.js';
import { type Pool, poolsFor } from './balancer/pool.js';
import type { GatewayConfig, ListenerConfig, PoolConfig } from './config/runtime.js';
import { formatHostPort, unmapIPv4 } from './core/address.js';
import { type Logger, logEvent } from './core/logger.js';
import type { GatewayContext, ListenerSnapshot, ListenerState, ProtocolProxy } from './core/proxy.js';
import type { AccessRecord, SniffClass, SniffResult, WorkProtocol } from './core/types.js';
import { HealthManager } from './health/manager.js';
import type { RemoteHealth } from './health/remote.js';
import { type TlsTerminator, tlsTerminatorFor } from './listener/tls.js';
import { PROXIES } from './proxy/registry.js';
import { compileRouter } from './router/compile.js';
import { classify } from './sniff/classify.js';
import { StatsRegistry } from './stats/registry.js';

interface LivePool {
  pool: Pool;
  config: PoolConfig;
}

interface Binding {
  key: string;
  server: net.Server;
  state: ListenerState;
  /**
   * Connections accepted by a bind a reload opened, before that reload commits (its
   * listener state and the config they would read are not live yet); null once live.
   */
  pending: net.Socket[] | null;
}

export interface GatewayView {
  listeners: ListenerState[];
  pools: ReadonlyMap<string, { pool: Pool; config: PoolConfig }>;
}

export interface GatewayOptions {
  /**
   * Run no active health checks: member health comes from these verdicts (a worker of a
   * multi-process gateway, fed by the primary). Passive health is unchanged.
   */
  remoteHealth?: RemoteHealth;
}

export class Gateway {
  private config!: GatewayConfig;
  private pools = new Map<string, LivePool>();
  private listeners = new Map<string, ListenerState>();
  private tls = new Map<string, TlsTerminator>();
  private bindings = new Map<string, Binding>();
  private readonly proxies = new Map<SniffClass, ProtocolProxy>();
  private readonly sockets = new Set<net.Socket>();
  private connections = 0;
  private stopping = false;
  readonly stats: StatsRegistry;
  private readonly health: HealthManager;
  readonly ctx: GatewayContext;

  private constructor(
    readonly logger: Logger,
    opts: GatewayOptions = {},
  ) {
    this.stats = new StatsRegistry(() => this.view());
    this.health = new HealthManager(logger, { remote: opts.remoteHealth });
    const gw = this;
    let accessLog = true;
    this.ctx = {
      logger,
      finish(record: AccessRecord) {
        gw.stats.record(record);
        if (accessLog) logger.info({ type: 'access', ...record });
      },
      get draining() {
        return gw.stopping;
      },
    };
    this.setAccessLog = (on) => {
      accessLog = on;
    };
    const tcp = PROXIES.tcp!(this.ctx);
    this.proxies.set('tcp', tcp);
    for (const cls of ['http1', 'h2', 'thrift', 'tls'] as const) {
      const f = PROXIES[cls];
      this.proxies.set(cls, f ? f(this.ctx) : tcp);
    }
  }

  private setAccessLog: (on: boolean) => void;

  /** Builds everything and binds every listener; rejects (and closes what it opened) if a bind fails. */
  static async start(config: GatewayConfig, logger: Logger, opts: GatewayOptions = {}): Promise<Gateway> {
    const gw = new Gateway(logger, opts);
    try {
      await gw.apply(config);
    } catch (e) {
      await gw.stop(0);
      throw e;
    }
    return gw;
  }

  get currentConfig(): GatewayConfig {
    return this.config;
  }

  get draining(): boolean {
    return this.stopping;
  }

  view(): GatewayView {
    return { listeners: [...this.listeners.values()], pools: this.pools };
  }

  /** Bound addresses of a listener (tests bind port 0). */
  addresses(listener: string): net.AddressInfo[] {
    const out: net.AddressInfo[] = [];
    for (const b of this.bindings.values()) {
      if (b.state.name === listener) out.push(b.server.address() as net.AddressInfo);
    }
    return out;
  }

  /**
   * Swaps in a validated config. Unchanged binds keep their sockets; servers that stay keep
   * their state. One apply runs at a time (SIGHUP and POST /reload may race); it is refused
   * once a stop has begun, and when it throws (a bind failed) nothing has changed.
   */
  apply(next: GatewayConfig): Promise<void> {
    const run = this.applying.then(() => this.applyNow(next));
    this.applying = run.catch(noop);
    return run;
  }

  private applying: Promise<void> = Promise.resolve();

  private async applyNow(next: GatewayConfig): Promise<void> {
    if (this.stopping) throw new Error('the gateway is stopping');
    // Building the new pools adopts surviving members (weights, owner): remember what they
    // were, so a failed bind can put them back as they were.
    const saved: {
      m: PoolMember;
      weight: number;
      maxconn: number;
      backup: boolean;
      owner: MemberOwner | undefined;
    }[] = [];
    for (const p of this.pools.values()) {
      for (const m of p.pool.members) {
        saved.push({ m, weight: m.weight, maxconn: m.maxconn, backup: m.backup, owner: m.owner });
      }
    }
    const pools = new Map<string, LivePool>();
    for (const [name, pool] of poolsFor(next.pools, (n) => this.pools.get(n)?.pool)) {
      pools.set(name, { pool, config: pool.config });
    }

    // Bind new addresses first, so a failing bind leaves the running config untouched.
    const wanted = new Map<string, { cfg: ListenerConfig; index: number }>();
    for (const l of next.listeners) {
      l.binds.forEach((b, i) => {
        wanted.set(bindKey(b.host, b.port), { cfg: l, index: i });
      });
    }
    const opened: Binding[] = [];
    const states = new Map<string, ListenerState>();
    for (const l of next.listeners) {
      const snapshot = this.snapshot(l, pools);
      const state = this.listeners.get(l.name);
      if (state) {
        states.set(l.name, state);
      } else {
        states.set(l.name, {
          name: l.name,
          current: snapshot,
          connections: { active: 0, total: 0, refused: 0, sniffTimeouts: 0 },
        });
      }
    }
    // Certificates and keys are read and parsed before anything changes: one that cannot be
    // read or parsed fails the reload like a bad bind.
    const terminators = new Map<string, TlsTerminator>();
    try {
      for (const l of next.listeners) if (l.tls) terminators.set(l.name, tlsTerminatorFor(l.name, l.tls));
      for (const [key, w] of wanted) {
        if (this.bindings.has(key)) continue;
        const b = await this.bind(key, w.cfg, states.get(w.cfg.name)!);
        opened.push(b);
      }
      // A stop that began while we were binding wins: it already closed the live binds.
      if (this.stopping) throw new Error('the gateway is stopping');
    } catch (e) {
      for (const b of opened) {
        b.server.close();
        for (const s of b.pending ?? []) s.destroy();
        b.pending = null;
      }
      for (const x of saved) {
        x.m.weight = x.weight;
        x.m.maxconn = x.maxconn;
        x.m.backup = x.backup;
        x.m.owner = x.owner;
      }
      throw e;
    }
    // Commit: nothing below can fail.
    for (const b of opened) {
      this.bindings.set(b.key, b);
      logEvent(this.logger, 'listener_start', { listener: b.state.name, bind: b.key });
    }
    for (const [key, b] of this.bindings) {
      const w = wanted.get(key);
      if (!w) {
        b.server.close();
        this.bindings.delete(key);
        logEvent(this.logger, 'listener_stop', { listener: b.state.name, bind: key });
      } else {
        b.state = states.get(w.cfg.name)!;
      }
    }
    for (const l of next.listeners) {
      const state = states.get(l.name)!;
      state.current = this.snapshot(l, pools);
      const term = terminators.get(l.name);
      if (term !== undefined) this.tls.set(l.name, term);
      else this.tls.delete(l.name);
    }
    this.pools = pools;
    this.listeners = states;
    this.config = next;
    this.setAccessLog(next.global.log.access);
    // Nobody reads stats without an admin listener; skip the counting then.
    this.stats.enabled = next.admin?.metrics ?? false;
    // Surviving pools keep their scheduler (rise/fall streaks continue); removed ones stop.
    this.health.update([...pools.values()].map((p) => p.pool));
    // Connections that reached a new bind while we were committing are served now.
    for (const b of opened) {
      const waiting = b.pending ?? [];
      b.pending = null;
      for (const s of waiting) if (!s.destroyed) this.serve(s, b);
    }
  }

  private snapshot(
    l: ListenerConfig,
    pools: ReadonlyMap<string, { pool: Pool; config: PoolConfig }>,
  ): ListenerSnapshot {
    const router = compileRouter(l.routes, pools);
    const others: WorkProtocol[] = ['http1', 'h2', 'grpc', 'thrift', 'tls'];
    return {
      config: l,
      router,
      tcpOnly: l.protocols.includes('tcp') && !others.some((p) => router.accepts(p)),
      timeouts: l.timeouts,
      limits: l.limits,
      pools,
    };
  }

  private bind(key: string, cfg: ListenerConfig, state: ListenerState): Promise<Binding> {
    const hp = cfg.binds.find((b) => bindKey(b.host, b.port) === key)!;
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true });
    const binding: Binding = { key, server, state, pending: [] };
    server.on('connection', (socket) => this.onConnection(socket, binding));
    return new Promise((resolve, reject) => {
      server.once('error', (e) => reject(new Error(`cannot bind ${formatHostPort(hp)}: ${e.message}`)));
      // An empty host means every interface: node picks :: (dual-stack) then.
      server.listen({ host: hp.host || undefined, port: hp.port, backlog: 1024 }, () => {
        server.removeAllListeners('error');
        server.on('error', (e) =>
          this.logger.error({ type: 'event', event: 'listener_error', bind: key, err: e.message }),
        );
        resolve(binding);
      });
    });
  }

  private onConnection(socket: net.Socket, binding: Binding): void {
    socket.on('error', noop);
    if (binding.pending !== null) {
      // Paused (pauseOnConnect) until the apply that opened this bind commits or fails.
      binding.pending.push(socket);
      return;
    }
    this.serve(socket, binding);
  }

  private serve(socket: net.Socket, binding: Binding): void {
    const state = binding.state;
    const snap = state.current;
    if (
      this.stopping ||
      this.connections >= this.config.global.maxconn ||
      state.connections.active >= snap.config.maxconn
    ) {
      state.connections.refused++;
      socket.destroy();
      return;
    }
    this.connections++;
    state.connections.active++;
    state.connections.total++;
    this.sockets.add(socket);
    socket.once('close', () => {
      this.connections--;
      state.connections.active--;
      this.sockets.delete(socket);
    });
    const clientIp = unmapIPv4(socket.remoteAddress);
    const clientAddr = `${clientIp}:${socket.remotePort}`;
    if (snap.tcpOnly) {
      // Nothing to tell apart: no sniff delay, not even for server-speaks-first protocols.
      this.proxies.get('tcp')!.handle({ socket, sniff: UNSNIFFED, listener: state, clientIp, clientAddr });
      return;
    }
    classify(socket, { timeoutMs: snap.timeouts.sniff, maxBytes: snap.limits.sniffBytes }).then(
      (sniff) => {
        if (sniff.reason === 'closed' || socket.destroyed) {
          socket.destroy();
          return;
        }
        if (sniff.reason === 'timeout') state.connections.sniffTimeouts++;
        if (!snap.config.protocols.includes(sniff.cls)) {
          this.logger.info({
            type: 'event',
            event: 'refused_protocol',
            listener: state.name,
            client: clientAddr,
            protocol: sniff.cls,
          });
          socket.destroy();
          return;
        }
        const tls = this.tls.get(state.name);
        if (sniff.cls === 'tls' && tls) {
          tls.terminate(
            socket,
            sniff,
            (tlsSocket, info) => {
              this.sockets.add(tlsSocket);
              tlsSocket.once('close', () => this.sockets.delete(tlsSocket));
              const dispatch = (inner: SniffResult) => {
                if (inner.reason === 'closed') return void tlsSocket.destroy();
                // TLS inside TLS is not unwrapped again: it is tunnelled.
                const cls = dispatchClass(inner.cls === 'tls' ? 'tcp' : inner.cls, snap);
                this.proxies.get(cls)!.handle({
                  socket: tlsSocket,
                  sniff: cls === inner.cls ? inner : { ...inner, cls },
                  listener: state,
                  clientIp,
                  clientAddr,
                  tls: info,
                });
              };
              // ALPN already names the protocol: no need to read (and later replay) any
              // decrypted bytes, which node's HTTP/2 session cannot take from a TLSSocket.
              const byAlpn = info.alpn === 'h2' ? 'h2' : info.alpn === 'http/1.1' ? 'http1' : undefined;
              if (byAlpn) {
                dispatch({ cls: byAlpn, head: EMPTY, reason: 'match' });
                return;
              }
              classify(tlsSocket, { timeoutMs: snap.timeouts.sniff, maxBytes: snap.limits.sniffBytes }).then(
                dispatch,
                () => tlsSocket.destroy(),
              );
            },
            (err) => {
              this.logger.info({
                type: 'event',
                event: 'tls_error',
                listener: state.name,
                client: clientAddr,
                err,
              });
            },
          );
          return;
        }
        const cls = dispatchClass(sniff.cls, snap);
        const handed = cls === sniff.cls ? sniff : { ...sniff, cls };
        this.proxies.get(cls)!.handle({ socket, sniff: handed, listener: state, clientIp, clientAddr });
      },
      (err: Error) => {
        this.logger.warn({ type: 'event', event: 'sniff_error', client: clientAddr, err: err.message });
        socket.destroy();
      },
    );
  }

  /**
   * Graceful stop: stop accepting at once, let proxies drain until `graceMs`, then cut what
   * is left (one `drain_cut` record says how many connections of which protocol). Resolves
   * when every listener and connection is closed; a second call waits for the first.
   */
  stop(graceMs = this.config?.global.grace ?? 0): Promise<void> {
    this.stopped ??= this.stopNow(graceMs);
    return this.stopped;
  }

  private stopped: Promise<void> | undefined;

  private async stopNow(graceMs: number): Promise<void> {
    this.stopping = true;
    const deadline = Date.now() + graceMs;
    for (const b of this.bindings.values()) {
      b.server.close();
      logEvent(this.logger, 'listener_stop', { listener: b.state.name, bind: b.key });
    }
    this.bindings.clear();
    this.health.stop();
    this.stats.close();
    const named = new Map<ProtocolProxy, string>();
    for (const [cls, p] of this.proxies) if (!named.has(p)) named.set(p, cls);
    // Each proxy says how many connections it had to cut at the deadline: the record names
    // what was cut, by protocol.
    const protocols: Record<string, number> = {};
    await Promise.all(
      [...named].map(async ([p, name]) => {
        const cut = await p.drain(deadline);
        if (cut > 0) protocols[name] = cut;
      }),
    );
    // Connections still sniffing, or in a proxy that lost track of them, are cut now.
    let unclassified = 0;
    for (const s of this.sockets) {
      if (s.destroyed) continue;
      unclassified++;
      s.destroy();
    }
    if (unclassified > 0) protocols.unclassified = unclassified;
    let connections = 0;
    for (const n of Object.values(protocols)) connections += n;
    if (connections > 0) {
      this.logger.warn(
        { type: 'event', event: 'drain_cut', connections, protocols, grace_ms: graceMs },
        'drain: connections cut',
      );
    }
  }
}

/** Work protocols a sniffed class can carry, to see whether any route wants them. */
const CARRIES: Record<SniffClass, readonly WorkProtocol[]> = {
  http1: ['http1'],
  h2: ['h2', 'grpc'],
  thrift: ['thrift'],
  tls: ['tls'],
  tcp: ['tcp'],
};

/**
 * A class no route of this listener wants, on a listener with tcp routes, is tunnelled as
 * TCP: a tcp-only listener passes HTTP, Thrift or TLS bytes through untouched, as an L4
 * balancer would, while listeners with protocol routes still get protocol-level handling.
 */
function dispatchClass(cls: SniffClass, snap: ListenerSnapshot): SniffClass {
  if (cls === 'tcp') return cls;
  for (const p of CARRIES[cls]) if (snap.router.accepts(p)) return cls;
  return snap.router.accepts('tcp') ? 'tcp' : cls;
}

function bindKey(host: string, port: number): string {
  return formatHostPort({ host, port });
}

function noop(): void {}

const EMPTY = Buffer.alloc(0);
const UNSNIFFED: SniffResult = Object.freeze({ cls: 'tcp', head: EMPTY, reason: 'unrecognised' });
