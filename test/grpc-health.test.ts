// health.type grpc: the check itself, and its effect on balancing through the proxy.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Member } from '../src/balancer/types.js';
import { DEFAULT_HEALTH } from '../src/config/defaults.js';
import type { PoolConfig } from '../src/config/runtime.js';
import { grpcCheck } from '../src/health/checks/grpc.js';
import { getCheck } from '../src/health/checks/index.js';
import { type Backend, client, startBackend, startHarness, unary, yamlFor } from './h2-harness.js';
import { waitFor } from './helpers/wait.js';

function check(port: number, service = '', timeout = 1000) {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), timeout);
  return grpcCheck({ host: '127.0.0.1', port } as Member, {
    config: { ...DEFAULT_HEALTH, type: 'grpc', service, timeout },
    pool: {} as PoolConfig,
    signal: ac.signal,
    timeout,
  }).finally(() => clearTimeout(t));
}

test('grpc check: SERVING passes, NOT_SERVING / unknown service / closed port / timeout fail', async (t) => {
  assert.equal(getCheck('grpc'), grpcCheck);
  const b = await startBackend('h1');
  t.after(() => b.stop());
  assert.deepEqual(await check(b.port), { ok: true, detail: 'SERVING' });
  assert.deepEqual(await check(b.port, 'switchyard.test.TestService'), { ok: true, detail: 'SERVING' });
  assert.deepEqual(await check(b.port, 'no.Such'), { ok: false, detail: 'SERVICE_UNKNOWN' });
  b.setHealth('NOT_SERVING');
  assert.deepEqual(await check(b.port), { ok: false, detail: 'NOT_SERVING' });
  await b.stop();
  const closed = await check(b.port);
  assert.equal(closed.ok, false);
  // A server that accepts but never speaks HTTP/2: the check times out.
  const net = await import('node:net');
  const muted = new Set<import('node:net').Socket>();
  const mute = net.createServer((s) => {
    muted.add(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of muted) s.destroy();
    mute.close();
  });
  const hung = await check((mute.address() as { port: number }).port, '', 300);
  assert.deepEqual(hung, { ok: false, detail: 'timeout' });
});

const HEALTH = '    health: { type: grpc, interval: 100ms, timeout: 300ms, rise: 1, fall: 2 }';

test('NOT_SERVING removes a server; a killed server stops getting calls and none fail after', async (t) => {
  const backends: Backend[] = [];
  for (let i = 0; i < 3; i++) backends.push(await startBackend(`g${i + 1}`));
  const h = await startHarness(yamlFor(backends, { pool: HEALTH }), { health: true });
  const c = client(h.port);
  t.after(async () => {
    c.close();
    await h.stop();
    for (const b of backends) await b.stop();
  });
  const pool = h.pools.get('p')!;
  const member = (name: string) => pool.members.find((m) => m.name === name)!;

  backends[0].setHealth('NOT_SERVING');
  await waitFor(() => member('g1').health === 'down');
  const seen = new Set<string>();
  for (let i = 0; i < 30; i++) {
    const { res, status } = await unary(c, { text: 'x' });
    assert.equal(status.code, grpc.status.OK);
    seen.add(res.text);
  }
  assert.ok(!seen.has('g1'), 'a NOT_SERVING server got calls');
  backends[0].setHealth('SERVING');
  await waitFor(() => member('g1').health === 'up');

  // Kill g2 while calls run; once it is down, every call succeeds and none reach it.
  let stop = false;
  const during = (async () => {
    while (!stop) await unary(c, { text: 'x' });
  })();
  await new Promise((r) => setTimeout(r, 50));
  await backends[1].stop();
  await waitFor(() => member('g2').health === 'down');
  stop = true;
  await during;
  const after = new Map<string, number>();
  for (let i = 0; i < 60; i++) {
    const { res, status } = await unary(c, { text: 'x' });
    assert.equal(status.code, grpc.status.OK, `call ${i} failed after g2 was marked down: ${status.details}`);
    after.set(res.text, (after.get(res.text) ?? 0) + 1);
  }
  assert.equal(after.get('g2'), undefined);
  assert.ok((after.get('g1') ?? 0) > 0 && (after.get('g3') ?? 0) > 0);
});

test('no server up: UNAVAILABLE (14), trailers-only, message says why', async (t) => {
  const b = await startBackend('g1');
  const h = await startHarness(yamlFor([b], { pool: HEALTH }), { health: true });
  const c = client(h.port);
  t.after(async () => {
    c.close();
    await h.stop();
    await b.stop();
  });
  b.setHealth('NOT_SERVING');
  await waitFor(() => h.pools.get('p')!.members[0].health === 'down');
  const { status, headers } = await unary(c, { text: 'x' });
  assert.equal(status.code, grpc.status.UNAVAILABLE);
  assert.match(status.details, /no server available in pool p/);
  assert.equal(headers, undefined, 'trailers-only response has no separate headers');
  const r = h.records.at(-1)!;
  assert.equal(r.grpc_status, 14);
  assert.equal(r.outcome, 'no_server');
});
