// The thrift health check against real servers, silent servers and non-Thrift servers.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import type { Member } from '../src/balancer/types.js';
import { loadConfigText } from '../src/config/load.js';
import type { PoolConfig } from '../src/config/runtime.js';
import { getCheck } from '../src/health/checks/index.js';
import { type Protocol, startCalcServer, type Transport } from './fixtures/thrift/helpers.js';

function poolConfig(transport: Transport, protocol: Protocol, method: string): PoolConfig {
  const r = loadConfigText(
    `listeners:
  - name: l
    bind: ["127.0.0.1:0"]
    routes: [{ pool: p }]
pools:
  p:
    protocol: thrift
    thrift: { transport: ${transport}, protocol: ${protocol} }
    health: { type: thrift, method: "${method}", timeout: 300ms }
    servers: [{ address: "127.0.0.1:1" }]
`,
    '/t.yaml',
  );
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return r.config.pools.get('p')!;
}

async function check(port: number, pc: PoolConfig) {
  const fn = getCheck('thrift');
  assert.ok(fn, 'thrift check registered');
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), pc.health.timeout);
  try {
    return await fn({ host: '127.0.0.1', port, name: 'm' } as Member, {
      config: pc.health,
      pool: pc,
      signal: ac.signal,
      timeout: pc.health.timeout,
    });
  } finally {
    clearTimeout(timer);
  }
}

test('any reply is up: ping, an unknown method, in every transport/protocol', async (t) => {
  for (const transport of ['framed', 'unframed'] as const) {
    for (const protocol of ['binary', 'compact'] as const) {
      const s = await startCalcServer({ name: 'h', transport, protocol });
      t.after(() => s.close());
      assert.deepEqual(await check(s.port, poolConfig(transport, protocol, 'ping')), {
        ok: true,
        detail: 'reply',
      });
      assert.equal(s.calls.get('ping'), 1);
      const unknown = await check(s.port, poolConfig(transport, protocol, 'noSuchMethod'));
      assert.deepEqual(unknown, { ok: true, detail: 'exception reply' }, `${transport}/${protocol}`);
      // A server speaking another transport does not answer a call it cannot read.
      const other = transport === 'framed' ? 'unframed' : 'framed';
      const wrong = await check(s.port, poolConfig(other, protocol, 'ping'));
      assert.equal(wrong.ok, false, `${other} call to a ${transport} server`);
    }
  }
});

test('silence, a closed connection and a non-Thrift answer are down', async (t) => {
  const silent = net.createServer((s) => s.on('error', () => {}));
  const closing = net.createServer((s) => s.destroy());
  const web = http.createServer((_req, res) => res.end('hello'));
  for (const srv of [silent, closing, web]) {
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    t.after(() => {
      srv.close();
      if ('closeAllConnections' in srv) srv.closeAllConnections();
    });
  }
  const port = (s: net.Server) => (s.address() as net.AddressInfo).port;
  const pc = poolConfig('framed', 'binary', 'ping');
  assert.deepEqual(await check(port(silent), pc), { ok: false, detail: 'timeout' });
  assert.deepEqual(await check(port(closing), pc), {
    ok: false,
    detail: 'connection closed without a reply',
  });
  const w = await check(port(web), pc);
  assert.equal(w.ok, false);
  assert.match(w.detail, /not a Thrift reply|closed/);
  const dead = await new Promise<number>((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = port(s);
      s.close(() => resolve(p));
    });
  });
  assert.deepEqual(await check(dead, pc), { ok: false, detail: 'ECONNREFUSED' });
});
