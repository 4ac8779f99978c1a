// Zero-downtime reload for every protocol (SPEC §1 SIGHUP, §4 POST /reload): clients keep
// calling through one gateway port while the config is swapped again and again; not one
// call fails, servers each new config adds take traffic, and work that started before a
// reload finishes on the config it started with.
import assert from 'node:assert/strict';

import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Pool as UndiciPool } from 'undici';
import { type CalculatorClient, call, connectClient } from './fixtures/thrift/helpers.js';
import { client as grpcClient, type Msg, unary } from './h2-harness.js';
import { startGateway } from './helpers/gateway.js';
import {
  type BackendSet,
  closeBackendSet,
  echoOnce,
  lifecycleYaml,
  openTunnel,
  sleep,
  spawnCli,
  startBackendSet,
  startHttpBackend,
  until,
} from './lifecycle-harness.js';

const ADMIN = 'admin: { bind: "127.0.0.1:0" }';

/** Counts answers per server name. */
class Tally {
  readonly by = new Map<string, number>();
  add(name: string): void {
    this.by.set(name, (this.by.get(name) ?? 0) + 1);
  }
  get(name: string): number {
    return this.by.get(name) ?? 0;
  }
}

test('gRPC, HTTP/1 keep-alive, Thrift and TCP through repeated reloads: zero failures, added servers take traffic, long work finishes', {
  timeout: 90_000,
}, async (t) => {
  const N = 4;
  const sets: BackendSet[] = [];
  t.after(async () => {
    for (const s of sets) await closeBackendSet(s);
  });
  for (let i = 0; i < N; i++) sets.push(await startBackendSet(i));
  // Config k holds two servers per pool: k mod N and k+1 mod N. Each reload adds one
  // server (its first traffic in this config is awaited) and removes one (work on it finishes).
  const cfg = (k: number): string => lifecycleYaml([sets[k % N], sets[(k + 1) % N]], { extra: ADMIN });
  const gw = await startGateway(cfg(0));
  const port = gw.port();
  const admin = gw.adminAddress!;
  const g = grpcClient(port);
  const h1 = new UndiciPool(`http://127.0.0.1:${port}`, { connections: 2, keepAliveTimeout: 30_000 });
  let h1Connects = 0;
  h1.on('connect', () => {
    h1Connects++;
  });
  const th = await connectClient({ port, transport: 'framed', protocol: 'binary' });
  // Connected right before its first call: a silent client would be sniffed as TCP after 1s.
  let thSlow: Awaited<ReturnType<typeof connectClient>> | undefined;
  const h1Slow = new UndiciPool(`http://127.0.0.1:${port}`, { connections: 1 });
  t.after(async () => {
    g.close();
    th.close();
    thSlow?.close();
    await h1.close();
    await h1Slow.close();
    await gw.stop();
  });

  const failures: string[] = [];
  const tallies = { grpc: new Tally(), http: new Tally(), thrift: new Tally() };
  let running = true;
  const hardStop = Date.now() + 60_000;
  const loop = async (kind: string, one: () => Promise<void>): Promise<number> => {
    let n = 0;
    while (running && n < 50_000 && Date.now() < hardStop) {
      try {
        await one();
      } catch (e) {
        failures.push(`${kind} call ${n}: ${(e as Error).message}`);
      }
      n++;
    }
    return n;
  };
  const loops = [
    loop('grpc', async () => {
      const { res, status } = await unary(g, { text: 'x' });
      if (status.code !== grpc.status.OK) throw new Error(`grpc-status ${status.code} ${status.details}`);
      tallies.grpc.add(res.text);
    }),
    loop('grpc', async () => {
      const { res, status } = await unary(g, { text: 'y' });
      if (status.code !== grpc.status.OK) throw new Error(`grpc-status ${status.code} ${status.details}`);
      tallies.grpc.add(res.text);
    }),
    loop('http1', async () => {
      const r = await h1.request({ path: '/', method: 'GET' });
      const body = await r.body.text();
      if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}: ${body}`);
      tallies.http.add(body);
    }),
    loop('http1', async () => {
      const r = await h1.request({ path: '/', method: 'GET' });
      const body = await r.body.text();
      if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}: ${body}`);
      tallies.http.add(body);
    }),
    loop('thrift', async () => {
      tallies.thrift.add(await call<string>((cb) => th.calc.whoami(cb)));
    }),
  ];

  // Long work started on config 0, spanning several reloads that remove its server.
  const tunnel = await openTunnel(port);
  const stream = new Promise<{ n: number; code: number }>((resolve) => {
    let n = 0;
    const s = g.ServerStream({ count: 16, size: 8, delayMs: 150 });
    s.on('data', (_m: Msg) => {
      n++;
    });
    s.on('error', () => {});
    s.on('status', (st: grpc.StatusObject) => resolve({ n, code: st.code }));
  });
  const slowHttp = h1Slow
    .request({ path: '/slow?ms=1500', method: 'GET' })
    .then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
  thSlow = await connectClient({ port, transport: 'framed', protocol: 'binary' });
  const slowClient = thSlow.calc as CalculatorClient;
  const slowThrift = call<string>((cb) => slowClient.slow(1500, cb));
  await sleep(100);

  const viaAdmin = async (): Promise<{ status: number; body: string }> => {
    const r = await fetch(`http://127.0.0.1:${admin.port}/reload`, { method: 'POST' });
    return { status: r.status, body: await r.text() };
  };

  const RELOADS = 12;
  for (let k = 1; k <= RELOADS; k++) {
    const added = sets[(k + 1) % N];
    const before = {
      grpc: tallies.grpc.get(added.grpc.name),
      http: tallies.http.get(added.http.name),
      thrift: tallies.thrift.get(added.thrift.name),
    };
    gw.rewrite(cfg(k));
    const started = Date.now();
    if (k % 2 === 0) {
      const r = await viaAdmin();
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(JSON.parse(r.body), { ok: true });
    } else {
      assert.deepEqual(await gw.reload(), { ok: true });
    }
    const reached = await until(
      () =>
        tallies.grpc.get(added.grpc.name) > before.grpc &&
        tallies.http.get(added.http.name) > before.http &&
        tallies.thrift.get(added.thrift.name) > before.thrift,
      5000,
    );
    assert.ok(
      reached,
      `reload ${k}: ${added.grpc.name}/${added.http.name}/${added.thrift.name} got no traffic`,
    );
    // New tunnels use the new pool (roundrobin over its two servers).
    const names = new Set<string>();
    for (let i = 0; i < 2; i++) {
      const x = await openTunnel(port);
      names.add(x.name);
      x.socket.destroy();
    }
    assert.ok(names.has(added.echo.name), `reload ${k}: tunnels went to ${[...names]}`);
    if (k === 6) {
      // An invalid file and a failing bind are refused; both keep serving.
      gw.rewrite(`${cfg(k)}\nbogus_key: 1\n`);
      const bad = await gw.reload();
      assert.equal(bad.ok, false);
      assert.ok(!bad.ok && bad.errors.some((e) => /:\d+:\d+: unknown key "bogus_key"/.test(e)), String(bad));
      const badAdmin = await viaAdmin();
      assert.equal(badAdmin.status, 400);
      assert.match(badAdmin.body, /unknown key/);
      const taken = net.createServer();
      await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
      const busy = (taken.address() as net.AddressInfo).port;
      gw.rewrite(cfg(k).replace('bind: ["127.0.0.1:0"]', `bind: ["127.0.0.1:0", "127.0.0.1:${busy}"]`));
      const noBind = await gw.reload();
      taken.close();
      assert.equal(noBind.ok, false);
      assert.ok(!noBind.ok && noBind.errors.some((e) => e.includes('cannot bind')), JSON.stringify(noBind));
      await gw.waitFor((r) => r.event === 'reload' && r.ok === false);
    }
    await sleep(Math.max(0, 200 - (Date.now() - started)));
  }
  running = false;
  const counts = await Promise.all(loops);

  assert.deepEqual(failures, [], 'no call failed across the reloads');
  for (const n of counts) assert.ok(n > 20, `every loop kept calling: ${counts}`);
  assert.equal(gw.port(), port, 'the unchanged listener kept its socket');
  assert.ok(h1Connects <= 2, `HTTP/1 keep-alive connections survived the reloads (${h1Connects} connects)`);
  assert.deepEqual(th.errors, [], 'the Thrift connection saw no error');

  const st = await stream;
  assert.equal(st.code, grpc.status.OK, 'the server stream spanning the reloads finished OK');
  assert.equal(st.n, 16, 'and delivered every message');
  const sh = await slowHttp;
  assert.equal(sh.status, 200);
  assert.ok(sh.body === 'h0' || sh.body === 'h1', sh.body);
  const stt = await slowThrift;
  assert.match(stt, /^t[01]:1500$/);
  assert.equal(tunnel.name === 'e0' || tunnel.name === 'e1', true);
  assert.equal(
    await echoOnce(tunnel.socket, 'after-reloads'),
    'after-reloads',
    'the tunnel opened first still works',
  );
  tunnel.socket.destroy();

  const reloads = gw.records.filter((r) => r.event === 'reload');
  assert.equal(reloads.filter((r) => r.ok === true).length, RELOADS);
  assert.ok(reloads.filter((r) => r.ok === false).length >= 3);
});

test('SIGHUP to the CLI reloads the config file; an invalid file is logged and the old config keeps serving', {
  timeout: 60_000,
}, async (t) => {
  const a = await startHttpBackend('a');
  const b = await startHttpBackend('b');
  t.after(async () => {
    await a.close();
    await b.close();
  });
  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
  const port = (free.address() as net.AddressInfo).port;
  await new Promise((r) => free.close(r));
  const yaml = (be: { port: number; name: string }): string => `global: { grace: 2s }
listeners:
  - name: edge
    bind: ["127.0.0.1:${port}"]
    routes: [{ match: { protocol: http }, pool: web }]
pools:
  web:
    protocol: h1
    health: { type: none }
    servers: [{ name: ${be.name}, address: "127.0.0.1:${be.port}" }]
`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-reload-'));
  const file = path.join(dir, 'c.yaml');
  fs.writeFileSync(file, yaml(a));
  const cli = spawnCli(t, file, dir);
  const { child, exited } = cli;
  const count = (re: RegExp): number =>
    cli
      .out()
      .split('\n')
      .filter((l) => re.test(l)).length;
  assert.ok(await until(() => cli.out().includes('"listener_start"'), 15_000), cli.out());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const get = (): Promise<string> =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => {
            body += d.toString();
          });
          res.on('end', () => resolve(body));
        })
        .on('error', reject);
    });
  assert.equal(await get(), 'a');
  fs.writeFileSync(file, yaml(b));
  child.kill('SIGHUP');
  assert.ok(await until(() => count(/"event":"reload".*"ok":true/) === 1, 10_000), cli.out());
  assert.equal(await get(), 'b', 'the reloaded pool serves new requests on the kept-alive connection');
  fs.writeFileSync(file, 'listeners: [ { name: x } ]\n');
  child.kill('SIGHUP');
  assert.ok(await until(() => count(/"event":"reload".*"ok":false/) === 1, 10_000), cli.out());
  assert.equal(await get(), 'b', 'an invalid file changes nothing');
  assert.match(cli.out(), /"errors":\[".*c\.yaml:1:\d+: /);
  assert.match(cli.out(), /"event":"reload","ok":true,"by":"SIGHUP"/);
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('a reload that cannot bind changes nothing (weights included); a reload can add and remove binds; none once stopping', {
  timeout: 30_000,
}, async (t) => {
  const a = await startHttpBackend('a');
  t.after(() => a.close());
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => taken.close(() => r())));
  const busy = (taken.address() as net.AddressInfo).port;
  const yaml = (binds: string[], weight: number): string => `global: { grace: 1s }
listeners:
  - name: edge
    bind: [${binds.map((b) => `"${b}"`).join(', ')}]
    routes: [{ match: { protocol: http }, pool: web }]
pools:
  web:
    protocol: h1
    health: { type: none }
    servers: [{ name: a, address: "127.0.0.1:${a.port}", weight: ${weight} }]
`;
  const gw = await startGateway(yaml(['127.0.0.1:0'], 1));
  let stopped = false;
  t.after(async () => {
    if (!stopped) await gw.stop();
  });
  const member = () => gw.gateway.view().pools.get('web')!.pool.members[0];
  const get = async (port: number): Promise<string> => {
    const r = await fetch(`http://127.0.0.1:${port}/`);
    return r.text();
  };
  const first = gw.port();
  assert.equal(await get(first), 'a');
  // A keep-alive connection accepted on the first bind, kept across the reloads.
  const kept = net.connect(first, '127.0.0.1');
  kept.on('error', () => {});
  let keptIn = '';
  kept.on('data', (d: Buffer) => {
    keptIn += d.toString();
  });
  t.after(() => kept.destroy());
  const keptGet = async (): Promise<boolean> => {
    const before = keptIn.length;
    kept.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    return until(() => keptIn.length > before && keptIn.endsWith('\r\n\r\na'), 5000);
  };
  assert.ok(await keptGet());

  gw.rewrite(yaml(['127.0.0.1:0', `127.0.0.1:${busy}`], 50));
  const r = await gw.reload();
  assert.equal(r.ok, false);
  assert.equal(member().weight, 1, 'the weight of the failed config was not applied');
  assert.equal(gw.gateway.addresses('edge').length, 1);
  assert.equal(await get(first), 'a');

  // Move the listener to a new ephemeral bind: the old one stops, the new one serves.
  const free = net.createServer();
  await new Promise<void>((res) => free.listen(0, '127.0.0.1', res));
  const next = (free.address() as net.AddressInfo).port;
  await new Promise((res) => free.close(res));
  gw.rewrite(yaml([`127.0.0.1:${next}`], 7));
  assert.deepEqual(await gw.reload(), { ok: true });
  assert.equal(member().weight, 7);
  assert.equal(await get(next), 'a');
  const refused = await new Promise<string>((res) => {
    const s = net.connect(first, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      res('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => res(e.code ?? e.message));
  });
  assert.equal(refused, 'ECONNREFUSED', 'the removed bind no longer accepts');
  assert.ok(await keptGet(), 'a connection it accepted before is untouched');
  assert.ok(gw.records.some((x) => x.event === 'listener_stop' && x.bind === '127.0.0.1:0'));

  const stopping = gw.stop();
  stopped = true;
  gw.rewrite(yaml(['127.0.0.1:0'], 3));
  const late = await gw.reload();
  assert.equal(late.ok, false, 'no reload once a stop has begun');
  await stopping;
  assert.deepEqual(gw.gateway.addresses('edge'), [], 'and it opened no listener');
});
