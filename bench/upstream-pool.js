'use strict';
// Upstream HTTP/2 session pooling, measured: the same requests to one h2c backend through
//   wrapper  http2-wrapper's Agent (http2wrapper.request with that agent, h2c subclass)
//   node     a minimal pool of our own on node:http2 (one reused http2.connect session per origin)
//   frame    Switchyard's frame-level pool (FramePool from dist/src/upstream/h2frame-pool.js)
// Each is driven directly (no gateway in front): the cost measured is the pool + HTTP/2 client.
//
// The backend (node:http2, a 2-byte 200 response) runs in a child pinned to CPU 0; every
// measurement runs in a fresh child pinned to CPU 1 and reports requests/s and CPU µs per
// request (process.cpuUsage, user + system) over N requests after a warm-up (up to 2,000
// requests; the sessions it opens stay in use). A failed request is counted and replaced.
// Runs are interleaved (round r runs every client once) and the table shows medians.
//
// Usage (hold the benchmark lock; `npm run build` first, for dist/):
//   flock /tmp/switchyard-bench.lock node bench/upstream-pool.js [-n 20000] [-r 3] [-c 16,1] [-t 60]
// Options: -n requests per run, -r rounds, -c in-flight levels, -t time cap per run (s),
//   --clients wrapper,node,frame, --json (one JSON line per run instead of the table).
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const SELF = __filename;
const ROOT = path.resolve(__dirname, '..');
const FRAME_POOL = path.join(ROOT, 'dist/src/upstream/h2frame-pool.js');

// ------------------------------------------------------------------ backend (child, CPU 0)

function backend() {
  const http2 = require('node:http2');
  const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
  const HEAD = { ':status': 200, 'content-type': 'text/plain', 'content-length': '2' };
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond(HEAD);
    stream.end('ok');
  });
  server.on('sessionError', () => {});
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`port=${server.address().port}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
}

// ------------------------------------------------------------- clients (child, CPU 1)

/** Each client: `send(done)` issues one GET / and calls done(err) when the response ended. */

function wrapperClient(port) {
  const net = require('node:net');
  const http2w = require('http2-wrapper');
  // http2-wrapper 2.2.4 is TLS-first: its Agent connects with tls + ALPN, and it reuses a
  // session only for origins in the session's origin set, which it builds as
  // https://<socket.servername>:<port>. For an h2c backend the socket comes from
  // createConnection, and `servername` must be set or the set reads https://undefined:PORT,
  // never matches, and every request opens a new session. With the default `https:`
  // protocol (requests then carry `:scheme: https`, which the backend ignores) sessions are
  // reused; an `http:` agent never matches the https:// origin set.
  class H2cAgent extends http2w.Agent {
    createConnection(origin) {
      const socket = net.connect(Number(origin.port), origin.hostname);
      socket.servername = origin.hostname;
      return socket;
    }
  }
  const agent = new H2cAgent({ maxEmptySessions: 1 });
  let opened = 0;
  agent.on('session', () => opened++);
  const opts = { host: '127.0.0.1', port, path: '/', method: 'GET', agent };
  return {
    send(done) {
      const req = http2w.request(opts, (res) => {
        res.on('data', noop);
        res.on('end', () => done(null));
      });
      req.on('error', done);
      req.end();
    },
    sessions: () => opened,
    close: () => agent.destroy(),
  };
}

function nodeClient(port) {
  const http2 = require('node:http2');
  // The minimal "pool of our own": one session per origin, reused while it lives.
  const origin = `http://127.0.0.1:${port}`;
  const sessions = new Map();
  let opened = 0;
  function session() {
    let s = sessions.get(origin);
    if (s === undefined || s.closed || s.destroyed) {
      s = http2.connect(origin);
      opened++;
      s.on('error', noop);
      const self = s;
      s.on('close', () => {
        if (sessions.get(origin) === self) sessions.delete(origin);
      });
      s.on('goaway', () => {
        if (sessions.get(origin) === self) sessions.delete(origin);
      });
      sessions.set(origin, s);
    }
    return s;
  }
  const HEAD = { ':method': 'GET', ':path': '/', ':scheme': 'http', ':authority': `127.0.0.1:${port}` };
  const END = { endStream: true };
  return {
    send(done) {
      const st = session().request(HEAD, END);
      st.on('data', noop);
      st.on('end', () => done(null));
      st.on('error', done);
    },
    sessions: () => opened,
    close: () => {
      for (const s of sessions.values()) s.destroy();
    },
  };
}

async function frameClient(port) {
  if (!fs.existsSync(FRAME_POOL)) throw new Error(`${FRAME_POOL} missing: run \`npm run build\` first`);
  const { FramePool, ServerConns } = await import(FRAME_POOL);
  const pool = new FramePool();
  let opened = 0;
  const connect = ServerConns.prototype.connect;
  ServerConns.prototype.connect = function countedConnect() {
    opened++;
    return connect.call(this);
  };
  const target = { host: '127.0.0.1', port };
  const timeouts = { connect: 3000, serverIdle: 300_000 };
  const HEAD = { ':method': 'GET', ':path': '/', ':scheme': 'http', ':authority': `127.0.0.1:${port}` };
  // One user object per request, as the proxies do (Exchange / the HTTP/1 bridge).
  class Req {
    constructor(done) {
      this.done = done;
      this.up = undefined;
    }
    onConn(c) {
      this.up = c;
      if (c.open(this, HEAD, true) === undefined) this.done(new Error(c.lastError));
    }
    onConnError(_why, detail) {
      this.done(new Error(detail));
    }
    onHeaders() {}
    onData(s, data) {
      this.up.consume(s, data.length);
    }
    onReset(_s, code) {
      this.err = new Error(`reset ${code}`);
    }
    onLost() {
      this.err = new Error('lost');
    }
    onSent() {}
    onStreamError(_s, code) {
      this.err = new Error(`stream error ${code}`);
    }
    onClose() {
      this.done(this.err ?? null);
    }
  }
  return {
    send(done) {
      const r = new Req(done);
      const c = pool.acquire(target, timeouts, r);
      if (c !== undefined) r.onConn(c);
    },
    sessions: () => opened,
    close: () => pool.close(true),
  };
}

function noop() {}

/**
 * Sends `n` requests (or until `capMs`), `inflight` at a time. A failed request is counted
 * and replaced (a client whose sessions get cut keeps going); resolves with { ok, failed }.
 */
function drive(client, n, inflight, capMs) {
  return new Promise((resolve) => {
    let started = 0;
    let ok = 0;
    let failed = 0;
    const deadline = performance.now() + capMs;
    const next = (err) => {
      if (err) {
        failed++;
        if (failed === 1) lastError = err;
      } else ok++;
      if (started < n && performance.now() < deadline) {
        started++;
        client.send(next);
      } else if (ok + failed === started) resolve({ ok, failed });
    };
    const first = Math.min(inflight, n);
    for (let i = 0; i < first; i++) {
      started++;
      client.send(next);
    }
  });
}

let lastError = null;

async function measure(kind, port, n, inflight, capS) {
  const client =
    kind === 'wrapper' ? wrapperClient(port) : kind === 'node' ? nodeClient(port) : await frameClient(port);
  // FramePool sockets are unref'd (they must not keep a gateway alive): hold the loop open.
  const keep = setInterval(noop, 1000);
  // Warm-up: connections up, code optimised.
  await drive(client, Math.min(2000, n), inflight, 10_000);
  lastError = null;
  if (global.gc) global.gc();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const { ok: count, failed } = await drive(client, n, inflight, capS * 1000);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const sessions = client.sessions();
  client.close();
  clearInterval(keep);
  return {
    client: kind,
    inflight,
    requests: count,
    failed,
    first_error: lastError === null ? undefined : String(lastError.message ?? lastError),
    seconds: ms / 1000,
    rps: count / (ms / 1000),
    cpu_us_per_req: (cpu.user + cpu.system) / count,
    sessions,
  };
}

// ------------------------------------------------------------------------- orchestrator

function args() {
  const a = process.argv.slice(2);
  const o = { n: 20000, rounds: 3, levels: [16, 1], cap: 60, clients: ['wrapper', 'node', 'frame'], json: false };
  for (let i = 0; i < a.length; i++) {
    const k = a[i];
    if (k === '-n') o.n = Number(a[++i]);
    else if (k === '-r') o.rounds = Number(a[++i]);
    else if (k === '-c') o.levels = a[++i].split(',').map(Number);
    else if (k === '-t') o.cap = Number(a[++i]);
    else if (k === '--clients') o.clients = a[++i].split(',');
    else if (k === '--json') o.json = true;
    else {
      console.error(`unknown option ${k}`);
      process.exit(2);
    }
  }
  return o;
}

/** Starts `node argv` pinned to `cpu` (taskset). */
function pinned(cpu, argv) {
  const child = spawn('taskset', ['-c', String(cpu), process.execPath, ...argv], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: __dirname,
  });
  return child;
}

function firstLine(child) {
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) resolve(buf.slice(0, i));
    });
    child.on('exit', (code) => reject(new Error(`child exited (${code}) before answering`)));
  });
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const NAMES = {
  wrapper: 'http2-wrapper Agent',
  node: 'own pool on node:http2 (1 session)',
  frame: 'Switchyard FramePool (own codec)',
};

async function main() {
  const o = args();
  const be = pinned(0, [SELF, '--backend']);
  let stopped = false;
  const stop = () => {
    if (!stopped) {
      stopped = true;
      be.kill('SIGTERM');
    }
  };
  process.on('SIGINT', () => {
    stop();
    process.exit(130);
  });
  try {
    const port = Number((await firstLine(be)).split('=')[1]);
    const results = [];
    for (let r = 0; r < o.rounds; r++) {
      for (const inflight of o.levels) {
        for (const kind of o.clients) {
          const child = pinned(1, [
            '--expose-gc',
            SELF,
            '--measure',
            kind,
            String(port),
            String(o.n),
            String(inflight),
            String(o.cap),
          ]);
          const res = JSON.parse(await firstLine(child));
          await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.on('exit', resolve)));
          res.round = r + 1;
          results.push(res);
          if (o.json) console.log(JSON.stringify(res));
          else
            console.error(
              `round ${r + 1} ${kind} x${inflight}: ${Math.round(res.rps)} req/s, ${res.cpu_us_per_req.toFixed(1)} µs CPU/req (${res.requests} ok, ${res.failed} failed, ${res.sessions} session(s) opened)${res.first_error ? ` first error: ${res.first_error}` : ''}`,
            );
        }
      }
    }
    if (o.json) return;
    const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    console.log(
      `\nUpstream pool, h2c GET to one node:http2 backend (CPU 0), client on CPU 1; medians of ${o.rounds} runs of ${o.n} requests; node ${process.version}; load average at the end ${load}\n`,
    );
    console.log(
      '| pool | in flight | requests/s | CPU µs per request | × FramePool CPU | failed requests (all runs) | sessions opened per run |',
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- |');
    for (const inflight of o.levels) {
      const rows = o.clients.map((kind) => {
        const rs = results.filter((x) => x.client === kind && x.inflight === inflight);
        return {
          kind,
          rps: median(rs.map((x) => x.rps)),
          cpu: median(rs.map((x) => x.cpu_us_per_req)),
          failed: rs.reduce((a, x) => a + x.failed, 0),
          sessions: median(rs.map((x) => x.sessions)),
        };
      });
      const base = rows.find((x) => x.kind === 'frame');
      for (const row of rows) {
        const rel = base === undefined ? '' : `${(row.cpu / base.cpu).toFixed(2)}×`;
        console.log(
          `| ${NAMES[row.kind]} | ${inflight} | ${Math.round(row.rps).toLocaleString('en-US')} | ${row.cpu.toFixed(1)} | ${rel} | ${row.failed} | ${row.sessions} |`,
        );
      }
    }
  } finally {
    stop();
  }
}

const mode = process.argv[2];
if (mode === '--backend') backend();
else if (mode === '--measure') {
  const [kind, port, n, inflight, cap] = process.argv.slice(3);
  measure(kind, Number(port), Number(n), Number(inflight), Number(cap)).then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
} else {
  main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
