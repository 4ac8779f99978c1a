// Shared by the http1-* tests: the HTTP/1 proxy behind a minimal sniff (first chunk), with
// the real config loader, router and balancer Pool, plus small real node:http backends.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Pool } from '../src/balancer/pool.js';
import type { ClientConn, GatewayContext, ListenerState, ProtocolProxy } from '../src/core/proxy.js';
import type { AccessRecord } from '../src/core/types.js';
import { createHttp1Proxy } from '../src/proxy/http1/index.js';
import { listenerFromYaml } from './helpers/listener.js';

export interface Harness {
  port: number;
  records: AccessRecord[];
  pools: Map<string, Pool>;
  proxy: ProtocolProxy;
  state: ListenerState;
  /** The proxy's client-side sockets (to observe backpressure). */
  sockets: Set<net.Socket>;
  close(): Promise<void>;
}

/** Starts the HTTP/1 proxy for the first listener of `yaml` on an ephemeral loopback port. */
export async function startHarness(yaml: string): Promise<Harness> {
  const { pools, state } = listenerFromYaml(yaml, '/tmp/switchyard-http1-test.yaml');
  const logger = pino({ level: 'silent' }, new Writable({ write: (_c, _e, cb) => cb() }));
  const records: AccessRecord[] = [];
  const ctx: GatewayContext = {
    logger,
    finish(r) {
      records.push(r);
    },
    draining: false,
  };
  const proxy = createHttp1Proxy(ctx);
  const sockets = new Set<net.Socket>();
  // allowHalfOpen as the gateway's listener: the proxy decides when to end its side.
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.once('data', (head: Buffer) => {
      socket.pause();
      const ip = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
      const conn: ClientConn = {
        socket,
        sniff: { cls: 'http1', head, reason: 'match' },
        listener: state,
        clientIp: ip,
        clientAddr: `${ip}:${socket.remotePort}`,
      };
      proxy.handle(conn);
    });
    socket.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    records,
    pools,
    proxy,
    state,
    sockets,
    async close() {
      await proxy.drain(Date.now() + 200);
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface Backend {
  port: number;
  server: http.Server;
  /** Requests seen, in order. */
  seen: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[];
  /** Distinct client sockets the backend saw. */
  sockets: number;
  close(): Promise<void>;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

/**
 * A node:http backend that records every request (body read whole) and answers with
 * `handler`, or by default 200 `name:METHOD:URL`. `streamHandler` takes over before the body
 * is read (for echo/streaming tests).
 */
export async function startBackend(
  name: string,
  handler?: Handler,
  streamHandler?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean,
): Promise<Backend> {
  const seen: Backend['seen'] = [];
  const server = http.createServer();
  const b: Backend = {
    port: 0,
    server,
    seen,
    sockets: 0,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  server.on('connection', () => b.sockets++);
  server.on('request', (req, res) => {
    if (streamHandler?.(req, res)) return;
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts).toString();
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (handler) handler(req, res, body);
      else res.end(`${name}:${req.method}:${req.url}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as net.AddressInfo).port;
  return b;
}

/** A raw client socket to the proxy on `port`, once connected. */
export async function connectRaw(port: number): Promise<net.Socket> {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  return sock;
}

/** Sends raw bytes on a fresh socket and collects everything until close or `ms`. */
export async function rawExchange(port: number, data: string | Buffer, ms = 2000): Promise<string> {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => {});
  const parts: Buffer[] = [];
  sock.on('data', (c: Buffer) => parts.push(c));
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write(data);
  await new Promise<void>((r) => {
    const t = setTimeout(r, ms);
    sock.once('close', () => {
      clearTimeout(t);
      r();
    });
  });
  sock.destroy();
  return Buffer.concat(parts).toString('latin1');
}

/** A plain keep-alive GET through a given agent; resolves with status, headers and body. */
export function get(
  port: number,
  path: string,
  opts: { agent?: http.Agent; headers?: http.OutgoingHttpHeaders; method?: string; body?: string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: opts.method ?? 'GET',
        agent: opts.agent,
        headers: opts.headers,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function poolYaml(name: string, ports: number[], extra = ''): string {
  return `  ${name}:
    protocol: h1
    health: { type: none }
${extra}    servers:
${ports.map((p, i) => `      - { name: ${name}${i + 1}, address: "127.0.0.1:${p}" }`).join('\n')}
`;
}

/** A node:http2 backend that records the request headers it saw (h1 → h2 pool tests). */
export async function h2Backend(): Promise<{
  port: number;
  close(): Promise<void>;
  seen: http2.IncomingHttpHeaders[];
}> {
  const seen: http2.IncomingHttpHeaders[] = [];
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (stream, headers) => {
    seen.push(headers);
    const parts: Buffer[] = [];
    stream.on('data', (c: Buffer) => parts.push(c));
    stream.on('end', () => {
      const body = Buffer.concat(parts).toString();
      if (headers[':path'] === '/trailers') {
        stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc123' }));
        stream.end(`h2:${body}`);
        return;
      }
      stream.respond({ ':status': 201, 'x-proto': 'h2' });
      stream.end(`h2:${headers[':method']}:${headers[':path']}:${headers[':authority']}:${body}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        // The gateway keeps its upstream session open (pooled): end it from this side.
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  };
}

/** The bridge scenario's config: `/two/…` and `/trailers` to an h2 pool, the rest to h1. */
export function bridgeYaml(h1Port: number, h2Port: number): string {
  return `
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes:
      - { match: { protocol: http, path_prefix: /two/ }, pool: two }
      - { match: { protocol: http, path: /trailers }, pool: two }
      - { match: { protocol: http }, pool: one }
pools:
  one:
    protocol: h1
    health: { type: none }
    servers: [{ address: "127.0.0.1:${h1Port}" }]
  two:
    protocol: h2
    health: { type: none }
    servers: [{ address: "127.0.0.1:${h2Port}" }]
`;
}

/**
 * The bridge scenario on one keep-alive connection to `port` (run through the proxy
 * harness and through the real gateway): an h1 request, an h2 request with a body and a
 * client X-Forwarded-For, and a chunked upload whose response comes back with trailers.
 */
export async function checkBridge(
  assert: typeof import('node:assert/strict'),
  port: number,
  h2seen: http2.IncomingHttpHeaders[],
): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const a = await get(port, '/one', { agent });
    assert.equal(a.body, 'h1:GET:/one');
    const b = await get(port, '/two/x?q=1', {
      agent,
      method: 'POST',
      body: 'payload',
      headers: { host: 'svc.test', 'x-forwarded-for': '10.1.1.1' },
    });
    assert.equal(b.status, 201);
    assert.equal(b.headers['x-proto'], 'h2');
    assert.equal(b.body, 'h2:POST:/two/x?q=1:svc.test:payload');
    assert.equal(h2seen[0]['x-forwarded-for'], '10.1.1.1, 127.0.0.1');
    assert.equal(h2seen[0].connection, undefined);
    // chunked upload de-chunked into DATA frames; response re-chunked with the trailers
    const tr = await new Promise<{ body: string; trailers: http.IncomingHttpHeaders }>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/trailers', agent },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ body: Buffer.concat(parts).toString(), trailers: res.trailers }));
        },
      );
      req.on('error', reject);
      req.write('ab');
      setTimeout(() => req.end('cd'), 10);
    });
    assert.equal(tr.body, 'h2:abcd');
    assert.equal(tr.trailers['x-checksum'], 'abc123');
  } finally {
    agent.destroy();
  }
}

/**
 * The proxy with one catch-all HTTP route to pool `pool` of `backend`; both are closed when
 * the test ends.
 */
export async function harnessFor(
  t: { after(fn: () => Promise<void> | void): void },
  pool: string,
  backend: { port: number; close(): Promise<void> },
): Promise<Harness> {
  const h = await startHarness(`
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes: [{ match: { protocol: http }, pool: ${pool} }]
pools:
${poolYaml(pool, [backend.port])}`);
  t.after(async () => {
    await h.close();
    await backend.close();
  });
  return h;
}
