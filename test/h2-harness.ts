// Shared by the h2-*/grpc-* tests: real grpc-js backends, and the HTTP/2 proxy in front of
// them with the real config loader, router and balancer Pool (and, on request, the real
// health scheduler), behind a minimal sniff (first 24 bytes) like the gateway's.
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import pino from 'pino';
import type { Pool } from '../src/balancer/pool.js';
import type { ClientConn, GatewayContext, ProtocolProxy } from '../src/core/proxy.js';
import type { AccessRecord } from '../src/core/types.js';
import { listenerFromYaml } from './helpers/listener.js';
import { jsonLines } from './helpers/log.js';
import '../src/health/checks/index.js';
import { HealthScheduler } from '../src/health/scheduler.js';
import { createH2FrameProxy } from '../src/proxy/h2frame/index.js';
import { FramePool } from '../src/upstream/h2frame-pool.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PROTOS = path.join(here, '..', 'protos');

const loaderOpts = { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true };

// biome-ignore lint/suspicious/noExplicitAny: grpc-js service constructors are dynamically typed
type Ctor = any;

export function testProto(): { TestService: Ctor; health: { Health: Ctor } } {
  const def = protoLoader.loadSync(
    [path.join(PROTOS, 'test.proto'), path.join(PROTOS, 'health.proto')],
    loaderOpts,
  );
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    switchyard: { test: { TestService: Ctor } };
    grpc: { health: { v1: { Health: Ctor } } };
  };
  return { TestService: pkg.switchyard.test.TestService, health: { Health: pkg.grpc.health.v1.Health } };
}

export interface Msg {
  payload: Buffer;
  text: string;
  n: number;
}

export interface Backend {
  name: string;
  port: number;
  address: string;
  server: grpc.Server;
  calls: number;
  cancelled: number;
  /** Metadata of the last call. */
  lastMetadata: grpc.Metadata | undefined;
  setHealth(status: 'SERVING' | 'NOT_SERVING'): void;
  stop(): Promise<void>;
}

/** A TestService + grpc.health.v1 server answering with its own name in `text`. */
export async function startBackend(name: string, port = 0): Promise<Backend> {
  const { TestService, health } = testProto();
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 64 << 20,
    'grpc.max_send_message_length': 64 << 20,
  });
  let healthStatus = 'SERVING';
  const b: Backend = {
    name,
    port: 0,
    address: '',
    server,
    calls: 0,
    cancelled: 0,
    lastMetadata: undefined,
    setHealth(s) {
      healthStatus = s;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };
  const track = (call: { on(e: 'cancelled', f: () => void): void; metadata: grpc.Metadata }): void => {
    b.calls++;
    b.lastMetadata = call.metadata;
    call.on('cancelled', () => {
      b.cancelled++;
    });
  };
  server.addService(TestService.service, {
    Unary(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      track(call);
      const text = call.request.text;
      if (text === 'sleep') {
        // never answers: deadline/cancel tests
        return;
      }
      if (text.startsWith('status:')) {
        const md = new grpc.Metadata();
        md.set('x-trailer-bin', Buffer.from([0, 1, 2, 255]));
        md.set('x-trailer', 'yes');
        cb({ code: Number(text.slice(7)), details: `asked for ${text}`, metadata: md });
        return;
      }
      const md = new grpc.Metadata();
      md.set('x-server', name);
      const echoBin = call.metadata.get('x-echo-bin');
      if (echoBin.length > 0) md.set('x-echo-bin', echoBin[0] as Buffer);
      call.sendMetadata(md);
      const tr = new grpc.Metadata();
      tr.set('x-trailer-bin', Buffer.from([9, 8, 7, 0, 255]));
      cb(null, { payload: call.request.payload, text: name, n: call.request.n }, tr);
    },
    ServerStream(call: grpc.ServerWritableStream<{ count: number; size: number; delayMs: number }, Msg>) {
      track(call);
      const { count, size, delayMs } = call.request;
      const payload = Buffer.alloc(size, 7);
      let i = 0;
      const next = (): void => {
        if (call.cancelled) return;
        while (i < count) {
          const ok = call.write({ payload, text: name, n: i++ });
          if (delayMs > 0) {
            setTimeout(next, delayMs);
            return;
          }
          if (!ok) {
            call.once('drain', next);
            return;
          }
        }
        call.end();
      };
      next();
    },
    ClientStream(call: grpc.ServerReadableStream<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      track(call);
      let n = 0;
      let bytes = 0;
      call.on('data', (m: Msg) => {
        n++;
        bytes += m.payload.length;
      });
      call.on('end', () => cb(null, { payload: Buffer.alloc(0), text: `${name}:${bytes}`, n }));
    },
    Bidi(call: grpc.ServerDuplexStream<Msg, Msg>) {
      track(call);
      call.on('data', (m: Msg) => call.write({ payload: m.payload, text: name, n: m.n }));
      call.on('end', () => call.end());
    },
  });
  server.addService(health.Health.service, {
    Check(
      call: grpc.ServerUnaryCall<{ service: string }, unknown>,
      cb: grpc.sendUnaryData<{ status: string }>,
    ) {
      const svc = call.request.service;
      if (svc !== '' && svc !== 'switchyard.test.TestService') cb(null, { status: 'SERVICE_UNKNOWN' });
      else cb(null, { status: healthStatus });
    },
  });
  b.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  b.address = `127.0.0.1:${b.port}`;
  return b;
}

export interface Harness {
  port: number;
  records: AccessRecord[];
  logs: Record<string, unknown>[];
  pools: Map<string, Pool>;
  upstream: { sessionCount(target?: { host: string; port: number }): number; close(force?: boolean): void };
  proxy: ProtocolProxy;
  stop(): Promise<void>;
}

/**
 * The HTTP/2 proxy behind a listener built from YAML (listener binds are ignored: the
 * harness listens on an ephemeral loopback port). `health: true` runs the pools' checks.
 */
export async function startHarness(
  yaml: string,
  opts: { health?: boolean; clientPing?: { after: number; timeout: number } } = {},
): Promise<Harness> {
  const { pools, state } = listenerFromYaml(yaml, '/tmp/switchyard-h2-test.yaml');
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, jsonLines(logs));
  const schedulers: HealthScheduler[] = [];
  if (opts.health) {
    for (const pool of pools.values()) {
      const s = new HealthScheduler(pool, logger);
      s.start();
      schedulers.push(s);
    }
  }
  const records: AccessRecord[] = [];
  const ctx: GatewayContext = {
    logger,
    finish(r) {
      records.push(r);
    },
    draining: false,
  };
  const upstream = new FramePool({ pingInterval: 1000, pingTimeout: 1000 });
  const proxy = createH2FrameProxy(ctx, {
    upstream,
    clientPingAfter: opts.clientPing?.after,
    clientPingTimeout: opts.clientPing?.timeout,
  });
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let head = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      head = Buffer.concat([head, d]);
      if (head.length < 24) return;
      socket.off('data', onData);
      socket.pause();
      const ip = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
      const conn: ClientConn = {
        socket,
        sniff: { cls: 'h2', head, reason: 'match' },
        listener: state,
        clientIp: ip,
        clientAddr: `${ip}:${socket.remotePort}`,
      };
      proxy.handle(conn);
    };
    socket.on('data', onData);
    socket.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    records,
    logs,
    pools,
    upstream,
    proxy,
    async stop() {
      for (const s of schedulers) s.stop();
      await proxy.drain(Date.now() + 200);
      upstream.close(true);
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export function client(port: number, opts: grpc.ChannelOptions = {}): Ctor {
  const { TestService } = testProto();
  return new TestService(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), opts);
}

export function unary(
  c: Ctor,
  req: Partial<Msg>,
  opts: { metadata?: grpc.Metadata; deadline?: number } = {},
): Promise<{ res: Msg; status: grpc.StatusObject; headers: grpc.Metadata | undefined }> {
  return new Promise((resolve, reject) => {
    let headers: grpc.Metadata | undefined;
    let res: Msg | undefined;
    let err: grpc.ServiceError | null = null;
    const call = c.Unary(
      { payload: Buffer.alloc(0), text: '', n: 0, ...req },
      opts.metadata ?? new grpc.Metadata(),
      opts.deadline ? { deadline: Date.now() + opts.deadline } : {},
      (e: grpc.ServiceError | null, r: Msg) => {
        err = e;
        res = r;
      },
    );
    call.on('metadata', (m: grpc.Metadata) => {
      headers = m;
    });
    call.on('status', (status: grpc.StatusObject) => {
      // 'status' fires after the callback in grpc-js
      setImmediate(() => {
        if (err !== null && status.code === grpc.status.OK) reject(err);
        else resolve({ res: res as Msg, status, headers });
      });
    });
  });
}

/** YAML for one listener routing gRPC (and h2) to pool `p` of the given backends. */
export function yamlFor(
  backends: { name: string; address: string }[],
  extra: { pool?: string; routes?: string; listener?: string; global?: string } = {},
): string {
  const servers = backends.map((b) => `      - { name: ${b.name}, address: "${b.address}" }`).join('\n');
  return `
global:
  log: { level: debug }
${extra.global ?? ''}
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
${extra.listener ?? ''}
    routes:
${extra.routes ?? ''}
      - match: { protocol: h2 }
        pool: p
pools:
  p:
    protocol: h2
    balance: roundrobin
${extra.pool ?? '    health: { type: none }'}
    servers:
${servers}
`;
}
