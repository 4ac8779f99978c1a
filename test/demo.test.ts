// `npm start` as a newcomer runs it: the demo as a child process on its fixed ports, the
// example client through port 8080, then SIGTERM (SPEC §5).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PROTOCOLS, runClient } from '../examples/client.js';
import { DEMO_ADMIN_PORT, DEMO_BACKENDS, DEMO_GATEWAY_PORT } from '../examples/layout.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The first of `ports` that 127.0.0.1 cannot bind now, if any. */
async function firstBusy(ports: number[]): Promise<number | undefined> {
  for (const port of ports) {
    const s = net.createServer();
    const free = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!free) return port;
    await new Promise((r) => s.close(r));
  }
  return undefined;
}

const servers = (kind: number): string[] => Object.keys(DEMO_BACKENDS[kind].servers);
const addresses = (kind: number): string[] =>
  Object.entries(DEMO_BACKENDS[kind].servers).map(([n, p]) => `${n} 127.0.0.1:${p} up`);
const EXPECTED = { grpc: servers(0), http: servers(1), thrift: servers(2), tcp: servers(3) };

test('the demo serves gRPC, HTTP, Thrift and TCP on one port, each call balanced, and stops with exit 0', async (t) => {
  const ports = [
    DEMO_GATEWAY_PORT,
    DEMO_ADMIN_PORT,
    ...DEMO_BACKENDS.flatMap((b) => Object.values(b.servers) as number[]),
  ];
  const busy = await firstBusy(ports);
  if (busy !== undefined) {
    t.skip(
      `port ${busy} is in use on 127.0.0.1 (is a demo already running?); the demo needs its fixed ports`,
    );
    return;
  }

  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/demo.ts'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  // Bounded: the gateway logs one record per call.
  child.stdout.on('data', (d: Buffer) => {
    if (out.length < 1_000_000) out += d;
  });
  child.stderr.on('data', (d: Buffer) => {
    if (err.length < 100_000) err += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );

  const until = Date.now() + 30_000;
  while (!out.includes('Switchyard demo is running')) {
    assert.ok(
      child.exitCode === null,
      `demo exited with ${child.exitCode} before it was ready:\n${err}\n${out}`,
    );
    assert.ok(Date.now() < until, `demo not ready in 30 s:\n${err}\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  const results = await runClient({ calls: 12, timeoutMs: 5000 });
  for (const p of PROTOCOLS) {
    const r = results[p];
    assert.ok(r, p);
    assert.deepEqual(r.errors, [], `${p} calls failed`);
    const answered = [...r.servers.keys()];
    for (const s of answered) assert.ok(EXPECTED[p].includes(s), `${p}: unexpected answer from "${s}"`);
    assert.ok(answered.length > 1, `${p}: every call went to ${answered.join(', ')}; expected a spread`);
  }

  const stats = (await (await fetch(`http://127.0.0.1:${DEMO_ADMIN_PORT}/stats.json`)).json()) as {
    pools: Record<string, { servers: { name: string; address: string; state: string }[] }>;
  };
  // Also proves examples/layout.ts (where the backends listen) and demo.yaml agree.
  for (const [pool, kind] of [
    ['greeters', 0],
    ['web', 1],
    ['calc', 2],
    ['echo', 3],
  ] as const) {
    assert.deepEqual(
      stats.pools[pool]?.servers.map((s) => `${s.name} ${s.address} ${s.state}`),
      addresses(kind),
      pool,
    );
  }

  child.kill('SIGTERM');
  const { code, signal } = await exited;
  assert.equal(signal, null, err);
  assert.equal(code, 0, err);
});
