// gRPC end to end through the real gateway (sniffer, listener, registry) from a YAML config.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type Backend, client, startBackend, unary } from './h2-harness.js';
import { startGateway } from './helpers/gateway.js';

test('one gRPC channel through the gateway: 300 calls spread over 3 health-checked servers', async (t) => {
  const backends: Backend[] = [];
  for (let i = 0; i < 3; i++) backends.push(await startBackend(`g${i + 1}`));
  const gw = await startGateway(`
global:
  log: { level: info }
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes:
      - match: { protocol: grpc, service: switchyard.test.TestService }
        pool: greeters
pools:
  greeters:
    protocol: h2
    balance: p2c
    health: { type: grpc, interval: 200ms, timeout: 500ms, rise: 1, fall: 2, service: switchyard.test.TestService }
    servers:
${backends.map((b) => `      - { name: ${b.name}, address: "${b.address}" }`).join('\n')}
`);
  const c = client(gw.port());
  t.after(async () => {
    c.close();
    await gw.stop();
    for (const b of backends) await b.stop();
  });
  const counts = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const { res, status } = await unary(c, { text: 'x', n: i });
    assert.equal(status.code, grpc.status.OK);
    counts.set(res.text, (counts.get(res.text) ?? 0) + 1);
  }
  for (const b of backends) assert.ok((counts.get(b.name) ?? 0) >= 60, `${b.name}: ${counts.get(b.name)}`);
  const access = gw.access();
  assert.ok(access.length >= 300);
  const r = access.at(-1)!;
  assert.equal(r.proto, 'grpc');
  assert.equal(r.grpc_status, 0);
  assert.equal(r.pool, 'greeters');
});
