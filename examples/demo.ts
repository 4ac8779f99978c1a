// `npm start`: example backends plus the gateway on one port, configured by examples/demo.yaml.
import type { Server } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFromFile } from '../src/lifecycle/run.js';
import { startTcpEcho } from './backends/tcp-echo.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// Compiled to dist/examples/; the YAML stays in examples/.
const configFile = path.resolve(
  here,
  here.includes(`${path.sep}dist${path.sep}`) ? '../../examples' : '.',
  'demo.yaml',
);

interface Closable {
  close(): unknown;
}

async function main(): Promise<void> {
  const backends: Closable[] = [];
  const servers: Server[] = [await startTcpEcho(7001, 'echo1'), await startTcpEcho(7002, 'echo2')];
  backends.push(...servers);
  const running = await startFromFile(configFile, { pretty: process.stdout.isTTY });
  process.stdout.write(`
Switchyard demo is running on 127.0.0.1:8080 (stats: http://127.0.0.1:9901/).
  TCP echo:  nc 127.0.0.1 8080         (each connection balanced over echo1/echo2)
Ctrl-C stops it gracefully.
`);
  const stop = async () => {
    await running.stop();
    for (const b of backends) b.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', () => void running.reload());
}

main().catch((e: unknown) => {
  const errs = (e as { configErrors?: string[] }).configErrors;
  process.stderr.write(`${errs ? errs.join('\n') : String((e as Error).stack ?? e)}\n`);
  process.exit(1);
});
