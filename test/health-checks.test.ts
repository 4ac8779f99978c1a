import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { Pool, type ServerStateEvent } from '../src/balancer/pool.js';
import type { MemberSpec } from '../src/balancer/types.js';
import type { HealthConfig, PoolConfig } from '../src/config/runtime.js';
import type { HealthCheckType, PoolProtocol } from '../src/core/types.js';
import { getCheck, registerCheck } from '../src/health/checks/index.js';
import { HealthManager } from '../src/health/manager.js';
import { HealthScheduler } from '../src/health/scheduler.js';

function spec(name: string, port: number): MemberSpec {
  return {
    name,
    address: `127.0.0.1:${port}`,
    host: '127.0.0.1',
    port,
    weight: 1,
    backup: false,
    maxconn: 0,
  };
}

function poolConfig(
  servers: MemberSpec[],
  health: Partial<HealthConfig>,
  extra: Partial<PoolConfig> = {},
  protocol: PoolProtocol = 'tcp',
): PoolConfig {
  return {
    name: 'p',
    protocol,
    balance: 'roundrobin',
    health: {
      type: 'tcp',
      interval: 50,
      timeout: 500,
      rise: 2,
      fall: 3,
      service: '',
      path: '/healthz',
      expect: [200, 399],
      method: 'ping',
      ...health,
    },
    retries: { attempts: 0, on: [] },
    thrift: { transport: 'framed', protocol: 'binary', stripService: false, pipelining: false },
    timeouts: { sniff: 1000, connect: 1000, clientIdle: 1000, serverIdle: 1000, request: 1000, tunnel: 1000 },
    servers,
    ...extra,
  };
}

function capture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A TCP server that can be stopped and started again on the same port. */
class TcpServer {
  server: net.Server | undefined;
  readonly sockets = new Set<net.Socket>();
  port = 0;

  async start(): Promise<void> {
    const s = net.createServer((sock) => {
      this.sockets.add(sock);
      sock.on('error', () => {});
      sock.on('close', () => this.sockets.delete(sock));
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (s.address() as net.AddressInfo).port;
    this.server = s;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s === undefined) return;
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return (server.address() as net.AddressInfo).port;
}

test('tcp: down after `fall` failed checks, up after `rise` on restart; picks skip the down server', async (t) => {
  const a = new TcpServer();
  const b = new TcpServer();
  await a.start();
  await b.start();
  t.after(() => Promise.all([a.stop(), b.stop()]));
  const pool = new Pool(poolConfig([spec('a', a.port), spec('b', b.port)], { fall: 3, rise: 2 }));
  const [ma, mb] = pool.members;
  const events: ServerStateEvent[] = [];
  pool.onStateChange((e) => events.push(e));
  const { logger, lines } = capture();
  const sched = new HealthScheduler(pool, logger);
  t.after(() => sched.stop());
  sched.start();

  await waitFor('first checks', () => ma.lastCheck?.ok === true && mb.lastCheck?.ok === true);
  assert.equal(ma.lastCheck?.detail, 'connected');

  await a.stop();
  await waitFor('a down', () => ma.health === 'down');
  assert.equal(ma.state, 'down');
  assert.equal(mb.state, 'up');
  assert.match(ma.lastCheck?.detail ?? '', /^connect ECONNREFUSED/);
  assert.deepEqual(events, [
    {
      event: 'server_state',
      pool: 'p',
      server: 'a',
      from: 'up',
      to: 'down',
      reason: `health check failed 3 times: ${ma.lastCheck?.detail}`,
    },
  ]);
  const logged = lines.find((l) => l.event === 'server_state');
  assert.ok(logged, 'state change logged');
  assert.deepEqual([logged.type, logged.server, logged.from, logged.to], ['event', 'a', 'up', 'down']);
  for (let i = 0; i < 50; i++) {
    const p = pool.pick();
    assert.ok(p.ok && p.member === mb, 'never the down server');
    p.release({ ok: true });
  }

  await a.start(); // same port
  await waitFor('a up', () => ma.health === 'up');
  assert.equal(events.length, 2);
  assert.equal(events[1].to, 'up');
  assert.match(events[1].reason, /^health check passed 2 times/);
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const p = pool.pick();
    if (p.ok) {
      seen.add(p.member.name);
      p.release({ ok: true });
    }
  }
  assert.deepEqual([...seen].sort(), ['a', 'b']);
});

test('http/1: 200 is up, 503 takes the server down, 200 brings it back; Host and path as configured', async (t) => {
  let status = 200;
  const seen: { host?: string; url?: string }[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ host: req.headers.host, url: req.url });
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end('x');
  });
  const port = await listen(server);
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const pool = new Pool(
    poolConfig(
      [spec('w', port)],
      { type: 'http', host: 'svc.example', path: '/healthz', fall: 2, rise: 2 },
      {},
      'h1',
    ),
  );
  const [m] = pool.members;
  const sched = new HealthScheduler(pool, capture().logger);
  t.after(() => sched.stop());
  sched.start();
  await waitFor('first check', () => m.lastCheck !== undefined);
  assert.deepEqual(m.lastCheck && [m.lastCheck.ok, m.lastCheck.detail], [true, 'HTTP 200']);
  assert.deepEqual(seen[0], { host: 'svc.example', url: '/healthz' });

  status = 503;
  await waitFor('down', () => m.health === 'down');
  assert.equal(m.lastCheck?.detail, 'HTTP 503');
  assert.deepEqual(pool.pick(), { ok: false, reason: 'no_server' });
  status = 204;
  await waitFor('up', () => m.health === 'up');
  assert.equal(pool.pick().ok, true);
});

test('http/2 pools are checked over HTTP/2; expect range is honoured', async (t) => {
  let status = 200;
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    stream.respond({ ':status': headers[':path'] === '/ready' ? status : 404 });
    stream.end();
  });
  server.on('session', (s) => s.on('error', () => {}));
  const port = await listen(server);
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const pool = new Pool(
    poolConfig(
      [spec('g', port)],
      { type: 'http', path: '/ready', expect: [200, 200], fall: 1, rise: 1 },
      {},
      'h2',
    ),
  );
  const [m] = pool.members;
  const sched = new HealthScheduler(pool, capture().logger);
  t.after(() => sched.stop());
  sched.start();
  await waitFor('first check', () => m.lastCheck !== undefined);
  assert.equal(m.lastCheck?.detail, 'HTTP 200');
  status = 299; // outside expect [200, 200]
  await waitFor('down', () => m.health === 'down');
  assert.equal(m.lastCheck?.detail, 'HTTP 299');
});

test('a check that does not answer within `timeout` fails as timeout', async (t) => {
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  const port = await listen(silent);
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => silent.close(() => r()));
  });
  const pool = new Pool(poolConfig([spec('s', port)], { type: 'http', timeout: 100, fall: 1 }, {}, 'h1'));
  const [m] = pool.members;
  const sched = new HealthScheduler(pool, capture().logger);
  t.after(() => sched.stop());
  sched.start();
  await waitFor('down', () => m.health === 'down');
  assert.equal(m.lastCheck?.detail, 'timeout');
});

test('reload: adopt keeps health of carried-over members; stop halts checks; type none brings members up', async (t) => {
  const a = new TcpServer();
  await a.start();
  const port = a.port;
  await a.stop();
  t.after(() => a.stop());
  const cfg = poolConfig([spec('a', port)], { fall: 1, rise: 2 });
  const old = new Pool(cfg);
  const [m] = old.members;
  const sched = new HealthScheduler(old, capture().logger);
  t.after(() => sched.stop());
  sched.start();
  await waitFor('down', () => m.health === 'down');

  const next = new Pool(poolConfig([spec('a', port)], { fall: 1, rise: 2, interval: 60 }), old);
  assert.equal(next.members[0], m);
  sched.adopt(next);
  assert.equal(next.members[0].state, 'down', 'health survives the reload');
  assert.deepEqual(next.pick(), { ok: false, reason: 'no_server' });
  await a.start();
  await waitFor('up after restart', () => m.health === 'up');
  assert.equal(next.pick().ok, true);

  sched.stop();
  const last = m.lastCheck?.at;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(m.lastCheck?.at, last, 'no checks after stop');

  m.health = 'down';
  const none = new Pool(poolConfig([spec('a', port)], { type: 'none' }), next);
  const idle = new HealthScheduler(none, capture().logger);
  idle.start();
  idle.stop();
  assert.equal(m.state, 'up');
});

test('registered check types are used; an unknown type falls back to tcp with a warning', async (t) => {
  const a = new TcpServer();
  await a.start();
  t.after(() => a.stop());
  const calls: string[] = [];
  registerCheck('custom-test', async (member, ctx) => {
    calls.push(`${member.name}:${ctx.timeout}`);
    return { ok: false, detail: 'custom says no' };
  });
  assert.equal(typeof getCheck('custom-test'), 'function');
  const custom = new Pool(
    poolConfig([spec('a', a.port)], { type: 'custom-test' as HealthCheckType, fall: 1 }),
  );
  const s1 = new HealthScheduler(custom, capture().logger);
  t.after(() => s1.stop());
  s1.start();
  await waitFor('custom check ran', () => custom.members[0].health === 'down');
  assert.equal(custom.members[0].lastCheck?.detail, 'custom says no');
  assert.equal(calls[0], 'a:500');

  const { logger, lines } = capture();
  const unknown = new Pool(poolConfig([spec('a', a.port)], { type: 'nonexistent' as HealthCheckType }));
  const s2 = new HealthScheduler(unknown, logger);
  t.after(() => s2.stop());
  s2.start();
  await waitFor('tcp fallback ran', () => unknown.members[0].lastCheck !== undefined);
  assert.equal(unknown.members[0].lastCheck?.detail, 'connected');
  assert.ok(lines.some((l) => l.event === 'health_check_unavailable' && l.check === 'nonexistent'));
});

test('outlier: N consecutive reported failures eject a server until `eject` passes; a success resets', async () => {
  const pool = new Pool(
    poolConfig(
      [spec('a', 1), spec('b', 2)],
      { type: 'none' },
      { outlier: { consecutiveFailures: 3, eject: 150 } },
    ),
  );
  const [a, b] = pool.members;
  const events: ServerStateEvent[] = [];
  pool.onStateChange((e) => events.push(e));
  const fail = (): void => {
    const p = pool.pick({ prefer: 'a' });
    assert.ok(p.ok && p.member === a);
    p.release({ ok: false, failure: 'connect' });
  };
  fail();
  fail();
  const ok = pool.pick({ prefer: 'a' });
  assert.ok(ok.ok);
  ok.release({ ok: true }); // resets the streak
  fail();
  fail();
  const other = pool.pick({ prefer: 'a' });
  assert.ok(other.ok);
  other.release({ ok: false, failure: 'other' }); // not a server failure: neither counts nor resets
  assert.equal(a.state, 'up');
  fail();
  assert.equal(a.state, 'down');
  assert.equal(a.errors, 6);
  assert.equal(events.length, 1);
  assert.match(events[0].reason, /^outlier: 3 consecutive failures/);
  for (let i = 0; i < 20; i++) {
    const p = pool.pick({ prefer: 'a' });
    assert.ok(p.ok && p.member === b, 'ejected server gets no work');
    p.release({ ok: true });
  }
  await waitFor('ejection over', () => {
    const p = pool.pick({ prefer: 'a' });
    if (p.ok) p.release({ ok: true });
    return p.ok && p.member === a;
  });
  assert.equal(a.state, 'up');
  assert.deepEqual(
    events.map((e) => [e.from, e.to, e.reason]),
    [
      ['up', 'down', events[0].reason],
      ['down', 'up', 'outlier ejection ended'],
    ],
  );
});

test('HealthManager: adopts reloaded pools by name and stops removed ones', async (t) => {
  const a = new TcpServer();
  await a.start();
  t.after(() => a.stop());
  const manager = new HealthManager(capture().logger);
  t.after(() => manager.stop());
  const cfg = poolConfig([spec('a', a.port)], { fall: 1, rise: 1 });
  const first = new Pool(cfg);
  const [m] = first.members;
  manager.update([first]);
  await waitFor('checked', () => m.lastCheck !== undefined);
  await a.stop();
  await waitFor('down', () => m.health === 'down');
  const second = new Pool(cfg, first);
  manager.update([second]);
  assert.equal(second.members[0].state, 'down');
  await a.start();
  await waitFor('up via the adopted scheduler', () => m.health === 'up');
  manager.update([]);
  const last = m.lastCheck?.at;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(m.lastCheck?.at, last, 'removed pool is no longer checked');
});
