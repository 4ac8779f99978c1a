// `npm start`: the example backends, then the gateway on one port (examples/demo.yaml) in
// front of them. Ctrl-C (SIGINT) or SIGTERM stops everything gracefully; SIGHUP reloads.
import { fileURLToPath } from 'node:url';
import { type Running, startFromFile } from '../src/lifecycle/run.js';
import { DEMO_ADMIN_PORT, DEMO_BACKENDS, DEMO_GATEWAY_PORT } from './layout.js';
import { fromRoot } from './root.js';

interface Backend {
  readonly name: string;
  readonly port: number;
  close(): Promise<void>;
}

async function closeAll(backends: Backend[]): Promise<void> {
  await Promise.allSettled(backends.map((b) => b.close()));
}

async function main(): Promise<void> {
  const backends: Backend[] = [];
  try {
    for (const { kind, start, servers } of DEMO_BACKENDS) {
      for (const [name, port] of Object.entries(servers)) {
        try {
          backends.push(await start(port, name));
        } catch (e) {
          throw new Error(`cannot start ${kind} ${name} on 127.0.0.1:${port}: ${(e as Error).message}`);
        }
      }
    }
  } catch (e) {
    await closeAll(backends);
    throw e;
  }

  let running: Running;
  try {
    running = await startFromFile(fromRoot('examples', 'demo.yaml'), { pretty: process.stdout.isTTY });
  } catch (e) {
    await closeAll(backends);
    throw e;
  }

  // Run from source (tsx) the client is the .ts file; after `npm run build`, the .js one.
  const client = fileURLToPath(import.meta.url).endsWith('.ts')
    ? 'npx tsx examples/client.ts'
    : 'node dist/examples/client.js';
  const list = (k: number) =>
    Object.entries(DEMO_BACKENDS[k].servers)
      .map(([n, p]) => `${n} :${p}`)
      .join(', ');
  process.stdout.write(`
Switchyard demo is running: gateway on 127.0.0.1:${DEMO_GATEWAY_PORT}, stats on http://127.0.0.1:${DEMO_ADMIN_PORT}/
  backends  gRPC greeters ${list(0)}
            HTTP ${list(1)}   Thrift ${list(2)}   TCP ${list(3)}
Try it from another terminal (every call goes to port ${DEMO_GATEWAY_PORT}):
  ${client.padEnd(40)} gRPC, Thrift, HTTP and TCP calls, and which server answered each
  ${`curl -i http://127.0.0.1:${DEMO_GATEWAY_PORT}/`.padEnd(40)} HTTP: run it twice, web1 and web2 take turns
  ${`nc 127.0.0.1 ${DEMO_GATEWAY_PORT}`.padEnd(40)} TCP: an echo server greets you; each connection is balanced
  ${`curl http://127.0.0.1:${DEMO_ADMIN_PORT}/stats.json`.padEnd(40)} what the gateway counted (or open the stats page)
Ctrl-C stops it gracefully.

`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${signal}: stopping the gateway, then the backends\n`);
    running
      .stop()
      .then(() => closeAll(backends))
      .then(
        () => process.exit(0),
        (e: unknown) => {
          process.stderr.write(`stop failed: ${(e as Error).stack ?? String(e)}\n`);
          process.exit(1);
        },
      );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', () => void running.reload());
}

main().catch((e: unknown) => {
  const errs = (e as { configErrors?: string[] }).configErrors;
  process.stderr.write(`${errs ? errs.join('\n') : ((e as Error).message ?? String(e))}\n`);
  process.exit(1);
});
