// `node dist/examples/client.js`: a few gRPC calls, Thrift calls, HTTP requests and TCP
// connections through the demo gateway, printing which backend answered each — many calls
// on ONE client connection still spread over every server (per-call balancing).
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import thrift from 'thrift';
import { type HelloReply, loadProtos } from './backends/grpc-greeter.js';
import { type CalculatorClient, calculatorModule } from './backends/thrift-calculator.js';

export type Proto = 'grpc' | 'thrift' | 'http' | 'tcp';
export const PROTOCOLS: readonly Proto[] = ['grpc', 'thrift', 'http', 'tcp'];

export interface ProtoResult {
  /** What was done, for humans: "SayHello x9 on 1 connection". */
  what: string;
  /** Answers per backend name, in the order first seen. */
  servers: Map<string, number>;
  /** One reply as received, to show what the backends say. */
  sample?: string;
  /** Failed calls, with the reason as the client saw it. */
  errors: string[];
}

export interface ClientOptions {
  host?: string;
  port?: number;
  /** Calls per protocol (TCP: connections). */
  calls?: number;
  /** Bound for each call, so a stuck proxy shows up as an error instead of a hang. */
  timeoutMs?: number;
  only?: readonly Proto[];
}

const msg = (e: unknown): string => (e instanceof Error ? e.message : String(e));

function withTimeout<T>(
  ms: number,
  what: string,
  run: (cb: (err: unknown, res?: T) => void) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    run((err, res) => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(res as T);
    });
  });
}

/** A protocol that failed this often is not going to work; stop rather than wait out every call. */
const GIVE_UP_AFTER = 3;
const gaveUp = (r: ProtoResult): boolean => r.errors.length >= GIVE_UP_AFTER;

function result(what: string): ProtoResult {
  return { what, servers: new Map(), errors: [] };
}

function count(r: ProtoResult, server: string, reply: string): void {
  r.servers.set(server, (r.servers.get(server) ?? 0) + 1);
  r.sample ??= reply;
}

/** The backend name is the last word of every demo reply ("Hello demo from g2"). */
const lastWord = (s: string): string => s.trim().split(/\s+/).pop() ?? '';

interface GreeterClient extends grpc.Client {
  SayHello(
    req: { name: string },
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: HelloReply) => void,
  ): grpc.ClientUnaryCall;
}

async function grpcCalls(host: string, port: number, n: number, timeoutMs: number): Promise<ProtoResult> {
  const r = result(`helloworld.Greeter/SayHello x${n} on 1 HTTP/2 connection`);
  const Ctor = loadProtos().GreeterClient as unknown as new (
    address: string,
    creds: grpc.ChannelCredentials,
  ) => GreeterClient;
  const client = new Ctor(`${host}:${port}`, grpc.credentials.createInsecure());
  try {
    for (let i = 0; i < n; i++) {
      try {
        const deadline = Date.now() + timeoutMs;
        const reply = await withTimeout<HelloReply | undefined>(timeoutMs + 100, 'SayHello', (cb) =>
          client.SayHello({ name: 'demo' }, { deadline }, cb),
        );
        const text = reply?.message ?? '';
        count(r, lastWord(text), text);
      } catch (e) {
        r.errors.push(msg(e));
        if (gaveUp(r)) break;
      }
    }
  } finally {
    client.close();
  }
  return r;
}

async function thriftCalls(host: string, port: number, n: number, timeoutMs: number): Promise<ProtoResult> {
  const r = result(`Calculator.whoami x${n} on 1 connection (framed binary)`);
  const connection = thrift.createConnection(host, port, {
    transport: thrift.TFramedTransport,
    protocol: thrift.TBinaryProtocol,
    max_attempts: 1,
    connect_timeout: timeoutMs,
  } as thrift.ConnectOptions);
  let lastError: unknown;
  connection.on('error', (e: unknown) => {
    lastError = e;
  });
  try {
    await withTimeout<void>(timeoutMs, 'thrift connect', (cb) => {
      connection.once('connect', () => cb(null));
      connection.once('error', (e: unknown) => cb(e));
    });
    const calc = thrift.createClient(calculatorModule().Client, connection) as CalculatorClient;
    for (let i = 0; i < n; i++) {
      try {
        const who = await withTimeout<string>(timeoutMs, 'whoami', (cb) => calc.whoami(cb));
        count(r, who, who);
      } catch (e) {
        r.errors.push(msg(lastError ?? e));
        if (!connection.connected || gaveUp(r)) break;
      }
    }
  } catch (e) {
    r.errors.push(msg(e));
  } finally {
    // end() marks the close as ours (no reconnect); destroy() because every call has been
    // answered or given up on, and a half-closed socket would wait for a peer that may
    // never close its side.
    connection.end();
    connection.destroy();
  }
  return r;
}

async function httpRequests(host: string, port: number, n: number, timeoutMs: number): Promise<ProtoResult> {
  const r = result(`GET / x${n} on 1 keep-alive connection`);
  // One socket: every request after the first reuses it, and still the backends alternate.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < n; i++) {
      try {
        const { server, body } = await withTimeout<{ server: string; body: string }>(
          timeoutMs,
          'GET /',
          (cb) => {
            const req = http.get({ host, port, path: '/', agent, timeout: timeoutMs }, (res) => {
              let body = '';
              res.setEncoding('utf8');
              res.on('data', (c: string) => {
                if (body.length < 4096) body += c;
              });
              res.on('end', () => {
                if (res.statusCode !== 200) cb(new Error(`HTTP ${res.statusCode}: ${body.trim()}`));
                else
                  cb(null, { server: String(res.headers['x-server'] ?? lastWord(body)), body: body.trim() });
              });
              res.on('error', cb);
            });
            req.on('timeout', () => req.destroy(new Error('timeout')));
            req.on('error', cb);
          },
        );
        count(r, server, body);
      } catch (e) {
        r.errors.push(msg(e));
        if (gaveUp(r)) break;
      }
    }
  } finally {
    agent.destroy();
  }
  return r;
}

/** One connection: say something, read the backend's greeting line ("hello from echo1"). */
function tcpOnce(host: string, port: number, timeoutMs: number): Promise<string> {
  return withTimeout<string>(timeoutMs, 'tcp greeting', (cb) => {
    const s = net.connect({ host, port });
    let got = '';
    s.setEncoding('utf8');
    // Speaking first lets the sniffer decide `tcp` at once instead of after timeouts.sniff.
    s.on('connect', () => s.write('hi\n'));
    s.on('data', (c: string) => {
      got += c;
      const nl = got.indexOf('\n');
      if (nl >= 0) {
        s.destroy();
        cb(null, got.slice(0, nl));
      } else if (got.length > 1024) {
        s.destroy();
        cb(new Error('no greeting line'));
      }
    });
    s.on('error', cb);
    s.on('close', () => cb(new Error(got ? `closed after "${got}"` : 'closed without a greeting')));
    s.setTimeout(timeoutMs, () => s.destroy(new Error('timeout')));
  });
}

async function tcpConnections(
  host: string,
  port: number,
  n: number,
  timeoutMs: number,
): Promise<ProtoResult> {
  const r = result(`${n} TCP connections`);
  for (let i = 0; i < n; i++) {
    try {
      const line = await tcpOnce(host, port, timeoutMs);
      count(r, lastWord(line), line);
    } catch (e) {
      r.errors.push(msg(e));
      if (gaveUp(r)) break;
    }
  }
  return r;
}

/** Runs every protocol's calls through the gateway (in parallel) and says who answered. */
export async function runClient(o: ClientOptions = {}): Promise<Record<Proto, ProtoResult | undefined>> {
  const host = o.host ?? '127.0.0.1';
  const port = o.port ?? 8080;
  const n = o.calls ?? 9;
  const t = o.timeoutMs ?? 3000;
  const only = new Set(o.only ?? PROTOCOLS);
  const run = (p: Proto, f: () => Promise<ProtoResult>) => (only.has(p) ? f() : Promise.resolve(undefined));
  const [g, th, h, tc] = await Promise.all([
    run('grpc', () => grpcCalls(host, port, n, t)),
    run('thrift', () => thriftCalls(host, port, n, t)),
    run('http', () => httpRequests(host, port, n, t)),
    run('tcp', () => tcpConnections(host, port, n, t)),
  ]);
  return { grpc: g, thrift: th, http: h, tcp: tc };
}

const LABEL: Record<Proto, string> = { grpc: 'gRPC', thrift: 'Thrift', http: 'HTTP/1.1', tcp: 'TCP' };

export function formatResults(results: Record<Proto, ProtoResult | undefined>): string {
  const lines: string[] = [];
  for (const p of PROTOCOLS) {
    const r = results[p];
    if (r === undefined) continue;
    const spread = [...r.servers].map(([s, c]) => `${s} x${c}`).join(', ') || 'no answers';
    lines.push(`${LABEL[p].padEnd(9)} ${r.what}`);
    lines.push(`          answered by: ${spread}${r.sample ? `   (e.g. "${r.sample}")` : ''}`);
    if (r.errors.length) {
      const distinct = [...new Set(r.errors)];
      const stopped = gaveUp(r) ? ' (gave up)' : '';
      lines.push(`          ${r.errors.length} failed${stopped}: ${distinct.slice(0, 3).join('; ')}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8080' },
      calls: { type: 'string', short: 'n', default: '9' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write('usage: node dist/examples/client.js [--host H] [--port 8080] [--calls 9]\n');
    return 0;
  }
  const results = await runClient({
    host: values.host,
    port: Number(values.port),
    calls: Math.max(1, Math.min(1000, Number(values.calls) || 9)),
  });
  process.stdout.write(formatResults(results));
  return PROTOCOLS.every((p) => results[p]?.errors.length === 0) ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`${msg(e)}\n`);
      process.exitCode = 1;
    },
  );
}
