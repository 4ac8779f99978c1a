// global.workers: 2 through the real CLI: a primary, two workers sharing the listener,
// the admin listener in the primary over merged stats, fan-out of steering, reload and
// stop, replacement of a killed worker, active health checks run once in the primary with
// every worker applying its verdicts, and per-process metrics by worker label
// (docs/operations.md "Multiple processes").
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { type HttpBackend, startHttpBackend, until } from './lifecycle-harness.js';

const CLI = [process.execPath, '--import', 'tsx', path.resolve('src/cli.ts')];

// A cluster-shared listener cannot bind port 0 in every case: pick free ports up front.
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

type Rec = Record<string, unknown>;

interface Gw {
  child: ChildProcess;
  file: string;
  port: number;
  admin: number;
  records: Rec[];
  /** Waits (bounded) for a record matching `pred` and returns it. */
  waitFor(pred: (r: Rec) => boolean, ms?: number): Promise<Rec>;
  exited: Promise<number | null>;
}

const TCP_HEALTH = '{ type: tcp, interval: 100ms, timeout: 500ms, rise: 1, fall: 2 }';

function yaml(
  port: number,
  admin: number,
  servers: { name: string; port: number }[],
  grace = '3s',
  health = TCP_HEALTH,
  /** A second bind of the listener. */
  extra?: number,
): string {
  return `global:
  workers: 2
  grace: ${grace}
  log: { level: info }
listeners:
  - name: edge
    bind: ["127.0.0.1:${port}"${extra === undefined ? '' : `, "127.0.0.1:${extra}"`}]
    routes: [{ pool: h }]
pools:
  h:
    protocol: h1
    health: ${health}
    servers:
${servers.map((s) => `      - { name: ${s.name}, address: "127.0.0.1:${s.port}" }`).join('\n')}
admin:
  bind: 127.0.0.1:${admin}
`;
}

async function startGw(
  t: TestContext,
  servers: { name: string; port: number }[],
  grace?: string,
  health?: string,
): Promise<Gw> {
  const [port, admin] = [await freePort(), await freePort()];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-workers-'));
  const file = path.join(dir, 'c.yaml');
  fs.writeFileSync(file, yaml(port, admin, servers, grace, health));
  const child = spawn(CLI[0], [...CLI.slice(1), '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  // 'close', not 'exit': every record the processes wrote has been read by then.
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const records: Rec[] = [];
  let buf = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
      try {
        records.push(JSON.parse(line) as Rec);
      } catch {
        // not a log record
      }
    }
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const waitFor = async (pred: (r: Rec) => boolean, ms = 15_000): Promise<Rec> => {
    const ok = await until(() => records.some(pred), ms);
    assert.ok(ok, `no such record; stderr: ${err}\n${records.map((r) => JSON.stringify(r)).join('\n')}`);
    return records.find(pred) as Rec;
  };
  const gw: Gw = { child, file, port, admin, records, waitFor, exited };
  // The primary's own records carry no `worker` field.
  await waitFor((r) => r.event === 'started' && r.worker === undefined, 30_000);
  return gw;
}

/** One request on a new connection, so each may land on another worker. */
function get(port: number, p = '/'): Promise<{ status: number; server: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: p, agent: false, headers: { connection: 'close' } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, server: body }));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function adminJson(
  gw: Gw,
  method: string,
  p: string,
  body?: unknown,
): Promise<{ status: number; json: Rec }> {
  const res = await fetch(`http://127.0.0.1:${gw.admin}${p}`, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Rec };
}

async function backends(t: TestContext, ...names: string[]): Promise<HttpBackend[]> {
  const list = await Promise.all(names.map((n) => startHttpBackend(n)));
  t.after(() => Promise.all(list.map((b) => b.close())));
  return list;
}

const workerIds = (gw: Gw, pred: (r: Rec) => boolean): Set<unknown> =>
  new Set(gw.records.filter((r) => pred(r) && r.worker !== undefined).map((r) => r.worker));

test('two worker processes share the listener; stats and metrics are summed over them', async (t) => {
  const [a, b] = await backends(t, 'a', 'b');
  const gw = await startGw(t, [a, b]);
  const started = gw.records.find((r) => r.event === 'started' && r.worker === undefined) as Rec;
  const workers = started.workers as { worker: number; pid: number }[];
  assert.equal(workers.length, 2);
  const pids = new Set(workers.map((w) => w.pid));
  assert.equal(pids.size, 2);
  assert.ok(!pids.has(gw.child.pid as number));
  assert.ok(await until(() => workerIds(gw, (r) => r.event === 'started').size === 2, 5000));

  const N = 20;
  for (let i = 0; i < N; i++) {
    const r = await get(gw.port);
    assert.equal(r.status, 200);
  }
  assert.equal(a.requests + b.requests, N);
  // Both workers took connections (cluster round-robin).
  await until(() => gw.records.filter((r) => r.type === 'access').length >= N, 5000);
  assert.equal(workerIds(gw, (r) => r.type === 'access').size, 2);

  const { status, json } = await adminJson(gw, 'GET', '/stats.json');
  assert.equal(status, 200);
  const pool = (
    json.pools as Record<
      string,
      { requests: { total: number }; servers: { name: string; total: number; state: string }[] }
    >
  ).h;
  assert.equal(pool.requests.total, N);
  assert.equal(
    pool.servers.reduce((n, s) => n + s.total, 0),
    N,
  );
  assert.deepEqual(
    pool.servers.map((s) => [s.name, s.total]),
    [
      ['a', a.requests],
      ['b', b.requests],
    ],
  );
  const perWorker = json.workers as { connections: { total: number } }[];
  assert.equal(perWorker.length, 2);
  assert.equal(
    perWorker.reduce((n, w) => n + w.connections.total, 0),
    N,
  );

  const metrics = await (await fetch(`http://127.0.0.1:${gw.admin}/metrics`)).text();
  const selected = [
    ...metrics.matchAll(/^switchyard_server_selected_total\{pool="h",server="\w"\} (\d+)$/gm),
  ];
  assert.equal(selected.length, 2, metrics);
  assert.equal(
    selected.reduce((n, m) => n + Number(m[1]), 0),
    N,
  );
  assert.match(metrics, /^switchyard_pool_servers\{pool="h",state="up"\} 2$/m);
  const page = await fetch(`http://127.0.0.1:${gw.admin}/`);
  assert.equal(page.status, 200);
});

test('POST state and weight reach every worker; unknown names answer 404', async (t) => {
  const [a, b] = await backends(t, 'a', 'b');
  const gw = await startGw(t, [a, b]);
  const r = await adminJson(gw, 'POST', '/pools/h/servers/a/state', { state: 'maint' });
  assert.equal(r.status, 200);
  assert.equal(r.json.admin, 'maint');
  // Workers log asynchronously: their records may follow the reply by a moment.
  assert.ok(
    await until(() => workerIds(gw, (x) => x.event === 'admin' && x.action === 'set_state').size === 2, 5000),
  );
  const before = a.requests;
  for (let i = 0; i < 10; i++) assert.deepEqual(await get(gw.port), { status: 200, server: 'b' });
  assert.equal(a.requests, before);

  const w = await adminJson(gw, 'POST', '/pools/h/servers/b/weight', { weight: 7 });
  assert.equal(w.status, 200);
  assert.equal(w.json.weight, 7);
  const stats = await adminJson(gw, 'GET', '/stats.json');
  const servers = (
    stats.json.pools as Record<string, { servers: { name: string; weight: number; admin: string }[] }>
  ).h.servers;
  assert.deepEqual(
    servers.map((s) => [s.name, s.admin, s.weight]),
    [
      ['a', 'maint', 1],
      ['b', 'ready', 7],
    ],
  );
  assert.equal((await adminJson(gw, 'POST', '/pools/h/servers/zz/state', { state: 'drain' })).status, 404);
  assert.equal((await adminJson(gw, 'POST', '/pools/nope/servers/a/weight', { weight: 1 })).status, 404);
  assert.equal((await adminJson(gw, 'POST', '/pools/h/servers/a/weight', { weight: 999 })).status, 400);
});

test('SIGHUP reloads every worker with an added server; an invalid file changes nothing', async (t) => {
  const [a, b] = await backends(t, 'a', 'b');
  const gw = await startGw(t, [a]);
  fs.writeFileSync(gw.file, yaml(gw.port, gw.admin, [a, b]));
  gw.child.kill('SIGHUP');
  await gw.waitFor((r) => r.event === 'reload' && r.worker === undefined && r.ok === true);
  assert.ok(await until(() => workerIds(gw, (r) => r.event === 'reload' && r.ok === true).size === 2, 5000));
  for (let i = 0; i < 40 && b.requests === 0; i++) assert.equal((await get(gw.port)).status, 200);
  assert.ok(b.requests > 0, 'the added server got no request');

  fs.writeFileSync(gw.file, 'listeners: [ {');
  gw.child.kill('SIGHUP');
  await gw.waitFor((r) => r.event === 'reload' && r.worker === undefined && r.ok === false);
  const viaApi = await adminJson(gw, 'POST', '/reload');
  assert.equal(viaApi.status, 400);
  assert.ok(Array.isArray(viaApi.json.errors) && viaApi.json.errors.length > 0);
  // No worker was asked to reload the bad file.
  assert.equal(
    gw.records.filter((r) => r.event === 'reload' && r.worker !== undefined && r.ok === false).length,
    0,
  );
  const seen = new Set<string>();
  for (let i = 0; i < 10; i++) {
    const r = await get(gw.port);
    assert.equal(r.status, 200);
    seen.add(r.server);
  }
  assert.deepEqual([...seen].sort(), ['a', 'b']);
});

test('SIGTERM: a request in flight completes, every worker stops, the primary exits 0', async (t) => {
  const [a] = await backends(t, 'a');
  const gw = await startGw(t, [a]);
  const inFlight = get(gw.port, '/slow?ms=700');
  assert.ok(await until(() => a.requests === 1, 5000));
  gw.child.kill('SIGTERM');
  assert.deepEqual(await inFlight, { status: 200, server: 'a' });
  assert.equal(await gw.exited, 0);
  assert.equal(gw.records.filter((r) => r.event === 'stopped' && r.worker !== undefined).length, 2);
  assert.equal(gw.records.filter((r) => r.event === 'worker_exit' && r.code === 0).length, 2);
  assert.ok(gw.records.some((r) => r.event === 'stopped' && r.worker === undefined));
});

test('a worker killed with SIGKILL is logged and replaced; requests keep succeeding', async (t) => {
  const [a] = await backends(t, 'a');
  const gw = await startGw(t, [a]);
  const started = gw.records.find((r) => r.event === 'started' && r.worker === undefined) as Rec;
  const victim = (started.workers as { worker: number; pid: number }[])[0];
  process.kill(victim.pid, 'SIGKILL');
  const exit = await gw.waitFor((r) => r.event === 'worker_exit' && r.worker === victim.worker);
  assert.equal(exit.signal, 'SIGKILL');
  const replaced = await gw.waitFor((r) => r.event === 'worker_start');
  assert.notEqual(replaced.worker, victim.worker);
  for (let i = 0; i < 10; i++) assert.equal((await get(gw.port)).status, 200);
  const stats = await adminJson(gw, 'GET', '/stats.json');
  assert.equal((stats.json.workers as unknown[]).length, 2);
  gw.child.kill('SIGTERM');
  assert.equal(await gw.exited, 0);
});

/** An HTTP server that counts `GET /health` (the health checks) apart from other requests, and can be stopped and started again on its port. */
interface Checked {
  name: string;
  port: number;
  checks: number;
  requests: number;
  stop(): Promise<void>;
  start(): Promise<void>;
}

async function checkedBackend(t: TestContext, name: string): Promise<Checked> {
  let server: http.Server | undefined;
  const b: Checked = {
    name,
    port: 0,
    checks: 0,
    requests: 0,
    stop: () =>
      new Promise<void>((resolve) => {
        const s = server;
        server = undefined;
        if (s === undefined) return resolve();
        s.closeAllConnections();
        s.close(() => resolve());
      }),
    start: async () => {
      const s = http.createServer((req, res) => {
        if (req.url === '/health') b.checks++;
        else b.requests++;
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(name) });
        res.end(name);
      });
      await new Promise<void>((r) => s.listen(b.port, '127.0.0.1', r));
      b.port = (s.address() as net.AddressInfo).port;
      server = s;
    },
  };
  await b.start();
  t.after(() => b.stop());
  return b;
}

const serverState = (gw: Gw, server: string): Promise<string> =>
  adminJson(gw, 'GET', '/stats.json').then(
    ({ json }) =>
      (json.pools as Record<string, { servers: { name: string; state: string }[] }>).h.servers.find(
        (s) => s.name === server,
      )?.state ?? 'missing',
  );

async function untilAsync(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

test('active health checks run once, in the primary; every worker (a replacement too) applies its verdicts', async (t) => {
  const a = await checkedBackend(t, 'a');
  const INTERVAL = 200;
  const gw = await startGw(
    t,
    [a],
    '3s',
    `{ type: http, path: /health, interval: ${INTERVAL}ms, timeout: 500ms, rise: 1, fall: 1 }`,
  );
  const started = gw.records.find((r) => r.event === 'started' && r.worker === undefined) as Rec;
  const workers = (started.workers as { worker: number; pid: number }[]).map((w) => w.worker);

  // One check per interval (±10 % jitter), not one per process: with checks in both workers
  // (and none in the primary) the count would be about twice this.
  const c0 = a.checks;
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, 2000));
  const checks = a.checks - c0;
  const expected = (Date.now() - t0) / INTERVAL;
  assert.ok(checks >= 1 && checks <= expected * 1.3 + 1, `${checks} checks in ${expected} intervals`);

  const downIn = (w: unknown) => (r: Rec) =>
    r.event === 'server_state' && r.worker === w && r.server === 'a' && r.to === 'down';
  const upIn = (w: unknown, after: number) => (r: Rec) =>
    gw.records.indexOf(r) >= after &&
    r.event === 'server_state' &&
    r.worker === w &&
    r.server === 'a' &&
    r.to === 'up';
  await a.stop();
  // The primary decides, each worker applies it (and logs its own state change).
  await gw.waitFor(downIn(undefined));
  for (const w of workers) await gw.waitFor(downIn(w));
  assert.ok(await untilAsync(async () => (await serverState(gw, 'a')) === 'down', 5000));
  /** Requests on new connections (spread over the workers): every one gets no server at all. */
  const allRefused = async (n: number): Promise<void> => {
    const from = gw.records.length;
    for (let i = 0; i < n; i++) assert.equal((await get(gw.port)).status, 503);
    assert.ok(await until(() => gw.records.slice(from).filter((r) => r.type === 'access').length >= n, 5000));
    const access = gw.records.slice(from).filter((r) => r.type === 'access');
    // No worker tried the server (a connect failure would name it): each knew it was down.
    assert.deepEqual(
      access.filter((r) => r.server !== undefined && r.server !== ''),
      [],
    );
  };
  await allRefused(8);

  // A reload keeps the state of a server that stays (in the primary and in every worker).
  fs.writeFileSync(
    gw.file,
    yaml(
      gw.port,
      gw.admin,
      [a],
      '4s',
      `{ type: http, path: /health, interval: ${INTERVAL}ms, timeout: 500ms, rise: 1, fall: 1 }`,
    ),
  );
  const reloads = gw.records.filter((r) => r.event === 'reload' && r.worker === undefined).length;
  gw.child.kill('SIGHUP');
  assert.ok(
    await until(
      () => gw.records.filter((r) => r.event === 'reload' && r.worker === undefined).length > reloads,
      10_000,
    ),
  );
  await allRefused(4);

  // A replacement worker starts with the primary's state: it never sends to the dead server.
  process.kill((started.workers as { pid: number }[])[0].pid, 'SIGKILL');
  const replaced = await gw.waitFor((r) => r.event === 'worker_start');
  await gw.waitFor(downIn(replaced.worker));
  await allRefused(8);
  const live = [workers[1], replaced.worker];

  const mark = gw.records.length;
  await a.start();
  await gw.waitFor(upIn(undefined, mark));
  for (const w of live) await gw.waitFor(upIn(w, mark));
  assert.ok(await untilAsync(async () => (await serverState(gw, 'a')) === 'up', 5000));
  const before = a.requests;
  for (let i = 0; i < 8; i++) assert.deepEqual(await get(gw.port), { status: 200, server: 'a' });
  assert.equal(a.requests - before, 8);
});

// ---- a strict-enough reading of the text exposition format --------------------------------

interface Family {
  type: string;
  samples: { name: string; labels: string; value: number }[];
}

/** One HELP and one TYPE per family, before its samples; samples contiguous; no duplicate series. */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'));
  const families = new Map<string, Family>();
  const help = new Set<string>();
  const closed = new Set<string>();
  const series = new Set<string>();
  let current: string | undefined;
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta;
      assert.ok(!closed.has(name), `family ${name} appears twice`);
      if (current !== undefined && current !== name) closed.add(current);
      current = name;
      if (kind === 'HELP') {
        assert.ok(!help.has(name), `two HELP lines for ${name}`);
        help.add(name);
      } else {
        assert.ok(!families.has(name), `two TYPE lines for ${name}`);
        families.set(name, { type: rest, samples: [] });
      }
      continue;
    }
    assert.ok(!line.startsWith('#'), line);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$/.exec(
      line,
    );
    assert.ok(m, `bad sample line: ${line}`);
    const [, name, labels = '', value] = m;
    assert.ok(!Number.isNaN(Number(value)) || /^(nan|[+-]inf)$/i.test(value), line);
    const base = name.replace(/_(bucket|sum|count)$/, '');
    const fam = families.has(name) ? name : base;
    assert.equal(fam, current, `sample outside its family: ${line}`);
    const f = families.get(fam);
    assert.ok(f, `sample without TYPE: ${line}`);
    assert.ok(!series.has(name + labels), `duplicate series: ${line}`);
    series.add(name + labels);
    f.samples.push({ name, labels, value: Number(value) });
  }
  return families;
}

test("/metrics of the primary: each process's metrics with a worker label, valid exposition", async (t) => {
  const [a] = await backends(t, 'a');
  const gw = await startGw(t, [a]);
  const started = gw.records.find((r) => r.event === 'started' && r.worker === undefined) as Rec;
  const ids = (started.workers as { worker: number }[]).map((w) => String(w.worker));
  for (let i = 0; i < 4; i++) assert.equal((await get(gw.port)).status, 200);
  const res = await fetch(`http://127.0.0.1:${gw.admin}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  const families = parseExposition(text);
  const want = [...ids, 'primary'].sort();
  for (const name of [
    'switchyard_process_cpu_seconds_total',
    'switchyard_process_resident_memory_bytes',
    'switchyard_nodejs_heap_size_used_bytes',
    'switchyard_nodejs_eventloop_lag_seconds',
  ]) {
    const f = families.get(name);
    assert.ok(f, `${name} missing:\n${text}`);
    const workers = f.samples.map((s) => /worker="([^"]*)"/.exec(s.labels)?.[1]);
    // One sample per process, never summed.
    assert.deepEqual([...workers].sort(), want, name);
    assert.ok(f.samples.every((s) => s.value >= 0));
  }
  // Labelled samples keep their own labels after the worker label.
  const gc = families.get('switchyard_nodejs_heap_space_size_used_bytes');
  assert.ok(gc?.samples.every((s) => /^\{worker="[^"]+",space="/.test(s.labels)));
  // The gateway's own families are still there, summed as before.
  assert.match(text, /^switchyard_server_selected_total\{pool="h",server="a"\} 4$/m);
});

// ---- all-or-nothing reloads ------------------------------------------------------------------

/** The workers of the primary's `started` record; SIGCONTs them all when the test ends. */
function workersOf(t: TestContext, gw: Gw): { worker: number; pid: number }[] {
  const started = gw.records.find((r) => r.event === 'started' && r.worker === undefined) as Rec;
  const list = started.workers as { worker: number; pid: number }[];
  t.after(() => {
    for (const w of list) {
      try {
        process.kill(w.pid, 'SIGCONT');
      } catch {
        // exited
      }
    }
  });
  return list;
}

/** `n` requests on new connections: which servers answered, and which workers served them. */
async function spread(gw: Gw, port: number, n: number): Promise<{ servers: string[]; workers: number }> {
  const from = gw.records.length;
  const servers = new Set<string>();
  for (let i = 0; i < n; i++) {
    const r = await get(port);
    assert.equal(r.status, 200);
    servers.add(r.server);
  }
  assert.ok(await until(() => gw.records.slice(from).filter((r) => r.type === 'access').length >= n, 5000));
  const workers = new Set(
    gw.records
      .slice(from)
      .filter((r) => r.type === 'access')
      .map((r) => r.worker),
  );
  return { servers: [...servers].sort(), workers: workers.size };
}

test('a reload that one worker cannot apply leaves every worker on the old config; a good one applies everywhere', async (t) => {
  const [a, b] = await backends(t, 'a', 'b');
  const gw = await startGw(t, [a], '10s');
  const list = workersOf(t, gw);
  assert.ok(await until(() => workerIds(gw, (r) => r.event === 'started').size === 2, 5000));

  // One worker is in its graceful stop (sent SIGTERM, say by an operator recycling it) with
  // a request in flight: it refuses any reload, the other applies it.
  const slow = get(gw.port, '/slow?ms=5000');
  let victim: { worker: number; pid: number } | undefined;
  assert.ok(
    await untilAsync(async () => {
      const { json } = await adminJson(gw, 'GET', '/stats.json');
      const busy = (json.workers as { worker: number; connections: { active: number } }[]).find(
        (w) => w.connections.active > 0,
      );
      victim = list.find((w) => w.worker === busy?.worker);
      return victim !== undefined;
    }, 5000),
  );
  const v = victim as { worker: number; pid: number };
  const live = list.find((w) => w.worker !== v.worker) as { worker: number; pid: number };
  process.kill(v.pid, 'SIGTERM');
  await gw.waitFor((r) => r.event === 'stop' && r.worker === v.worker);

  fs.writeFileSync(gw.file, yaml(gw.port, gw.admin, [b], '10s'));
  const mark = gw.records.length;
  const after = (pred: (r: Rec) => boolean) => (r: Rec) => gw.records.indexOf(r) >= mark && pred(r);
  const res = await adminJson(gw, 'POST', '/reload');
  assert.equal(res.status, 400);
  assert.deepEqual(
    res.json.errors,
    ['the gateway is stopping'].map((e) => `${gw.file}:1:1: ${e}`),
  );
  await gw.waitFor(after((r) => r.event === 'reload' && r.worker === undefined && r.ok === false));
  // The other worker had applied it; new connections reach it only, and it runs the old
  // config again: the primary rolled it back before replying.
  await gw.waitFor(
    after((r) => r.event === 'reload' && r.worker === live.worker && r.ok === true && r.by === 'admin'),
  );
  assert.deepEqual(await spread(gw, gw.port, 6), { servers: ['a'], workers: 1 });
  const rollback = await gw.waitFor(after((r) => r.event === 'reload_rollback'));
  assert.deepEqual(rollback.workers, [live.worker]);
  await gw.waitFor(
    after((r) => r.event === 'reload' && r.worker === live.worker && r.ok === true && r.by === 'primary'),
  );
  assert.deepEqual(await slow, { status: 200, server: 'a' });
  // The stopped worker's replacement starts with the config the others run, not the file.
  await gw.waitFor((r) => r.event === 'worker_exit' && r.worker === v.worker);
  await gw.waitFor((r) => r.event === 'worker_start');
  assert.deepEqual(await spread(gw, gw.port, 10), { servers: ['a'], workers: 2 });
  assert.equal(b.requests, 0);

  const good = await adminJson(gw, 'POST', '/reload');
  assert.equal(good.status, 200, JSON.stringify(good.json));
  assert.deepEqual(await spread(gw, gw.port, 10), { servers: ['b'], workers: 2 });
});

test('a new bind in use is refused before any worker tries it; every worker applies the text the primary validated, not the file as it is later', async (t) => {
  const [a, b] = await backends(t, 'a', 'b');
  const gw = await startGw(t, [a]);
  const [w1, w2] = workersOf(t, gw);
  assert.ok(await until(() => workerIds(gw, (r) => r.event === 'started').size === 2, 5000));

  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  const extra = (holder.address() as net.AddressInfo).port;
  t.after(() => new Promise((r) => holder.close(r)));
  fs.writeFileSync(gw.file, yaml(gw.port, gw.admin, [b], '3s', TCP_HEALTH, extra));
  const busy = await adminJson(gw, 'POST', '/reload');
  assert.equal(busy.status, 400);
  assert.match(
    String((busy.json.errors as string[])[0]),
    new RegExp(`cannot bind 127\\.0\\.0\\.1:${extra}: .*EADDRINUSE`),
  );
  await new Promise((r) => holder.close(r));

  // The file changes (to something invalid) after the primary read it and before the
  // second worker (held stopped) takes the reload.
  const mark = gw.records.length;
  process.kill(w2.pid, 'SIGSTOP');
  const reply = adminJson(gw, 'POST', '/reload');
  await gw.waitFor(
    (r) => gw.records.indexOf(r) >= mark && r.event === 'reload' && r.worker === w1.worker && r.ok === true,
  );
  fs.writeFileSync(gw.file, 'listeners: [ {');
  process.kill(w2.pid, 'SIGCONT');
  const res = await reply;
  assert.equal(res.status, 200, JSON.stringify(res.json));
  assert.deepEqual(await spread(gw, gw.port, 10), { servers: ['b'], workers: 2 });
  assert.deepEqual(await spread(gw, extra, 4), { servers: ['b'], workers: 2 });

  // A worker that replaces a dead one runs what the others run, not the (edited) file, and
  // binds the new address as they do.
  fs.writeFileSync(gw.file, yaml(gw.port, gw.admin, [a]));
  process.kill(w1.pid, 'SIGKILL');
  const replaced = await gw.waitFor((r) => r.event === 'worker_start');
  await gw.waitFor((r) => r.event === 'started' && r.worker === replaced.worker);
  assert.deepEqual(await spread(gw, gw.port, 10), { servers: ['b'], workers: 2 });
  assert.deepEqual(await spread(gw, extra, 4), { servers: ['b'], workers: 2 });
  assert.equal(a.requests, 0);
  // No worker was ever asked to bind the address while it was in use.
  assert.deepEqual(
    gw.records.filter((r) => r.event === 'reload' && r.worker !== undefined && r.ok === false),
    [],
  );
});
