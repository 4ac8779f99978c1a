// The CLI as a user runs it: a child process, real signals, exit codes (SPEC §1).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

const CLI = [process.execPath, '--import', 'tsx', path.resolve('src/cli.ts')];

function tmpConfig(text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-cli-'));
  const file = path.join(dir, 'c.yaml');
  fs.writeFileSync(file, text);
  return file;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

test('check exits 0 on a valid config and 1 with FILE:LINE:COL errors on an invalid one', () => {
  const good = tmpConfig(
    'listeners: [{ name: a, bind: ":1", routes: [{ pool: p }] }]\npools: { p: { protocol: tcp, servers: [{ address: "127.0.0.1:1" }] } }\n',
  );
  const ok = spawnSync(CLI[0], [...CLI.slice(1), 'check', '-c', good], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  const bad = tmpConfig('listeners:\n  - name: a\n    bind: ":1"\n    routez: []\n');
  const r = spawnSync(CLI[0], [...CLI.slice(1), 'check', '-c', bad], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.ok(r.stderr.includes(`${bad}:4:5: unknown key "routez"`), r.stderr);
  assert.ok(r.stderr.includes(`${bad}:2:5: missing required key "routes"`), r.stderr);
});

test('usage errors exit 2; --version and --help exit 0', () => {
  const usage = spawnSync(CLI[0], [...CLI.slice(1), 'frobnicate', '-c', 'x'], { encoding: 'utf8' });
  assert.equal(usage.status, 2);
  const noConfig = spawnSync(CLI[0], CLI.slice(1), { encoding: 'utf8' });
  assert.equal(noConfig.status, 2);
  const v = spawnSync(CLI[0], [...CLI.slice(1), '--version'], { encoding: 'utf8' });
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^switchyard \d+\.\d+\.\d+/);
  const h = spawnSync(CLI[0], [...CLI.slice(1), '--help'], { encoding: 'utf8' });
  assert.equal(h.status, 0);
  assert.match(h.stdout, /switchyard check -c FILE/);
});

test('run logs JSON lines, stops gracefully on SIGTERM with exit 0, and a bind failure exits 1', async () => {
  const port = await freePort();
  const file = tmpConfig(
    `listeners: [{ name: a, bind: "127.0.0.1:${port}", routes: [{ pool: p }] }]\npools: { p: { protocol: tcp, health: { type: none }, servers: [{ address: "127.0.0.1:1" }] } }\n`,
  );
  const child = spawn(CLI[0], [...CLI.slice(1), '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const deadline = Date.now() + 15_000;
  while (!out.includes('"listener_start"') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  assert.ok(out.includes('"listener_start"'), `no listener_start record in: ${out}`);
  // A second instance on the same port fails to bind: exit 1.
  const second = spawnSync(CLI[0], [...CLI.slice(1), '-c', file], { encoding: 'utf8', timeout: 15_000 });
  assert.equal(second.status, 1, second.stderr);
  assert.match(second.stderr, /cannot bind/);
  child.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  assert.equal(code, 0);
  const lines = out.trim().split('\n');
  for (const l of lines) JSON.parse(l);
  assert.ok(
    lines.some((l) => l.includes('"stopped"')),
    out,
  );
});
