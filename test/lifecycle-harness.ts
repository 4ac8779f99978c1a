// Shared by the lifecycle-* tests: one real gateway listener carrying gRPC, HTTP/1, Thrift
// and TCP to four pools of real backends (grpc-js, node http, thrift npm, net echo), and the
// YAML that describes them.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { type CalcServer, startCalcServer } from './fixtures/thrift/helpers.js';
import { type Backend as GrpcBackend, startBackend } from './h2-harness.js';

export type { GrpcBackend };

export interface HttpBackend {
  name: string;
  port: number;
  /** Requests answered (health checks are TCP connects and do not count). */
  requests: number;
  server: http.Server;
  close(): Promise<void>;
}

/** `GET /` answers the server's name; `GET /slow?ms=N` answers it after N ms (N ≤ 10000). */
export async function startHttpBackend(name: string): Promise<HttpBackend> {
  const server = http.createServer((req, res) => {
    b.requests++;
    const m = /^\/slow\?ms=(\d+)$/.exec(req.url ?? '');
    const reply = (): void => {
      res.writeHead(200, {
        'content-type': 'text/plain',
        'content-length': Buffer.byteLength(name),
        'x-server': name,
      });
      res.end(name);
    };
    req.resume();
    if (m) setTimeout(reply, Math.min(10_000, Number(m[1])));
    else reply();
  });
  server.keepAliveTimeout = 30_000;
  const b: HttpBackend = {
    name,
    port: 0,
    requests: 0,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as net.AddressInfo).port;
  return b;
}

export interface EchoBackend {
  name: string;
  port: number;
  accepted: number;
  close(): Promise<void>;
}

/** Greets each connection with `NAME\n`, then echoes. */
export async function startEchoBackend(name: string): Promise<EchoBackend> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    b.accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.write(`${name}\n`);
    s.pipe(s);
  });
  const b: EchoBackend = {
    name,
    port: 0,
    accepted: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as net.AddressInfo).port;
  return b;
}

/** One server of each protocol, named `<prefix><i>` (g…, h…, t…, e…). */
export interface BackendSet {
  grpc: GrpcBackend;
  http: HttpBackend;
  thrift: CalcServer;
  echo: EchoBackend;
}

export async function startBackendSet(i: number): Promise<BackendSet> {
  const [grpc, httpB, thrift, echo] = await Promise.all([
    startBackend(`g${i}`),
    startHttpBackend(`h${i}`),
    startCalcServer({ name: `t${i}`, transport: 'framed', protocol: 'binary' }),
    startEchoBackend(`e${i}`),
  ]);
  return { grpc, http: httpB, thrift, echo };
}

export async function closeBackendSet(s: BackendSet): Promise<void> {
  await Promise.all([s.grpc.stop(), s.http.close(), s.thrift.close(), s.echo.close()]);
}

/**
 * One listener for every protocol: gRPC → pool `g` (h2), HTTP → `h` (h1), Thrift → `t`
 * (framed binary), TCP → `e`. `extra` is appended at top level (e.g. an admin block).
 */
export function lifecycleYaml(
  sets: BackendSet[],
  opts: { grace?: string; extra?: string; bind?: string } = {},
): string {
  const health = '{ type: tcp, interval: 100ms, timeout: 500ms, rise: 1, fall: 2 }';
  const list = (f: (s: BackendSet) => { name: string; port: number }): string =>
    sets.map((s) => `      - { name: ${f(s).name}, address: "127.0.0.1:${f(s).port}" }`).join('\n');
  return `global:
  grace: ${opts.grace ?? '3s'}
  log: { level: info }
  timeouts: { sniff: 1s }
listeners:
  - name: edge
    bind: ["${opts.bind ?? '127.0.0.1:0'}"]
    routes:
      - match: { protocol: grpc }
        pool: g
      - match: { protocol: http }
        pool: h
      - match: { protocol: thrift }
        pool: t
      - match: { protocol: tcp }
        pool: e
pools:
  g:
    protocol: h2
    health: ${health}
    servers:
${list((s) => s.grpc)}
  h:
    protocol: h1
    health: ${health}
    servers:
${list((s) => s.http)}
  t:
    protocol: thrift
    thrift: { transport: framed, protocol: binary }
    health: ${health}
    servers:
${list((s) => s.thrift)}
  e:
    protocol: tcp
    health: ${health}
    servers:
${list((s) => s.echo)}
${opts.extra ?? ''}`;
}

/**
 * Connects a TCP tunnel through the gateway and reads the backend's greeting line. The
 * client speaks first (`hi\n` cannot start any sniffed protocol, so it is classified `tcp`
 * at once) and waits for the greeting and that echo, leaving nothing unread.
 */
export async function openTunnel(port: number): Promise<{ socket: net.Socket; name: string }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write('hi\n');
  let buf = '';
  const name = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => {
      socket.destroy();
      reject(new Error('no greeting'));
    }, 5000);
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0 && buf.endsWith('hi\n') && buf.length >= nl + 4) {
        clearTimeout(t);
        socket.off('data', onData);
        socket.off('close', onClose);
        resolve(buf.slice(0, nl));
      }
    };
    const onClose = (): void => {
      clearTimeout(t);
      reject(new Error('closed before greeting'));
    };
    socket.on('data', onData);
    socket.once('close', onClose);
  });
  return { socket, name };
}

export function echoOnce(socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const t = setTimeout(() => {
      socket.off('data', onData);
      reject(new Error(`no echo of ${text}`));
    }, 5000);
    const onData = (d: Buffer): void => {
      got += d.toString();
      if (got.length >= text.length) {
        clearTimeout(t);
        socket.off('data', onData);
        resolve(got);
      }
    };
    socket.on('data', onData);
    socket.write(text);
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 10 ms until it holds or `ms` pass; returns whether it held. */
export async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(10);
  }
  return cond();
}

/**
 * The real CLI (`src/cli.ts -c file`) as a child process; its stdout is collected in
 * `out()`. When the test ends it is killed if still running and `dir` is removed.
 */
export function spawnCli(
  t: { after(fn: () => Promise<void> | void): void },
  file: string,
  dir: string,
): { child: ChildProcess; out(): string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/cli.ts'), '-c', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  t.after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { child, out: () => out, exited };
}
