// Graceful stop for every protocol (SPEC §1 signals): new connections are refused at once,
// HTTP/2 peers get GOAWAY and their streams finish, HTTP/1 in-flight requests finish with
// `Connection: close` while idle keep-alive connections close, Thrift connections close
// between calls, TCP tunnels get `global.grace` and are then cut (logged), /healthz says
// 503 during the drain, and the CLI exits 0 after SIGTERM.
import assert from 'node:assert/strict';

import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type CalculatorClient, call, connectClient } from './fixtures/thrift/helpers.js';
import { client as grpcClient, type Msg } from './h2-harness.js';
import { startGateway } from './helpers/gateway.js';
import {
  closeBackendSet,
  echoOnce,
  lifecycleYaml,
  openTunnel,
  spawnCli,
  startBackendSet,
  startHttpBackend,
  until,
} from './lifecycle-harness.js';

/** A gRPC frame of switchyard.test.StreamRequest { count, size, delay_ms } (protobuf varints < 128). */
function streamRequestFrame(count: number, size: number, delayMs: number): Buffer {
  const msg = Buffer.from([0x08, count, 0x10, size, 0x18, delayMs & 0x7f, delayMs >> 7]);
  // delay_ms is a two-byte varint: set the continuation bit on its low byte.
  msg[5] |= 0x80;
  const frame = Buffer.alloc(5 + msg.length);
  frame.writeUInt32BE(msg.length, 1);
  msg.copy(frame, 5);
  return frame;
}

/** Resolves with the error code when a connect to `port` fails, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

test('graceful stop drains every protocol and cuts tunnels at global.grace', {
  timeout: 60_000,
}, async (t) => {
  const set = await startBackendSet(0);
  t.after(() => closeBackendSet(set));
  const gw = await startGateway(
    lifecycleYaml([set], { grace: '3s', extra: 'admin: { bind: "127.0.0.1:0" }' }),
  );
  const port = gw.port();
  const admin = gw.adminAddress!;
  let stopped: Promise<void> | undefined;
  t.after(async () => {
    await (stopped ?? gw.stop());
  });
  /** What happened, in order (the order is asserted, not the times). */
  const seq: string[] = [];

  // HTTP/2 (raw node:http2 client): a server stream of 6 messages 250 ms apart.
  const h2 = http2.connect(`http://127.0.0.1:${port}`);
  h2.on('error', () => {});
  let goaway = -1;
  h2.on('goaway', (code: number) => {
    goaway = code;
    seq.push('h2 goaway');
  });
  const h2Stream = h2.request({
    ':method': 'POST',
    ':path': '/switchyard.test.TestService/ServerStream',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  h2Stream.end(streamRequestFrame(6, 4, 250));
  let h2Bytes = 0;
  h2Stream.on('data', (d: Buffer) => {
    h2Bytes += d.length;
  });
  const h2Done = new Promise<{ grpcStatus: string | undefined }>((resolve) => {
    h2Stream.on('trailers', (tr) => resolve({ grpcStatus: tr['grpc-status'] as string | undefined }));
    h2Stream.on('close', () => resolve({ grpcStatus: undefined }));
  });

  // gRPC (grpc-js): a server stream started before the stop.
  const g = grpcClient(port);
  t.after(() => g.close());
  let gMsgs = 0;
  const gDone = new Promise<number>((resolve) => {
    const s = g.ServerStream({ count: 6, size: 4, delayMs: 250 });
    s.on('data', (_m: Msg) => {
      gMsgs++;
    });
    s.on('error', () => {});
    s.on('status', (st: grpc.StatusObject) => resolve(st.code));
  });

  // HTTP/1: a slow request in flight, and an idle keep-alive connection.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const slowH1 = new Promise<{ status: number; connection: string | undefined; body: string }>(
    (resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/slow?ms=1200', agent }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => {
            body += d.toString();
          });
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }),
          );
        })
        .on('error', reject);
    },
  );
  const idleH1 = net.connect(port, '127.0.0.1');
  idleH1.on('error', () => {});
  let idleH1Reply = '';
  idleH1.on('data', (d: Buffer) => {
    idleH1Reply += d.toString();
  });
  idleH1.on('close', () => seq.push('h1 idle closed'));
  idleH1.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.ok(await until(() => idleH1Reply.endsWith('h0'), 5000), idleH1Reply);

  // Thrift: a slow call in flight on one connection, another connection idle after a call.
  // Each connection calls right after connecting: a silent one would be sniffed as TCP.
  const thIdle = await connectClient({ port, transport: 'framed', protocol: 'binary' });
  t.after(() => thIdle.close());
  assert.equal(await call<string>((cb) => thIdle.calc.whoami(cb)), 't0');
  const thBusy = await connectClient({ port, transport: 'framed', protocol: 'binary' });
  t.after(() => thBusy.close());
  thIdle.connection.on('close', () => seq.push('thrift idle closed'));
  const slowThrift = call<string>((cb) => (thBusy.calc as CalculatorClient).slow(1200, cb)).then((r) => {
    seq.push('thrift slow replied');
    return r;
  });
  thBusy.connection.on('close', () => seq.push('thrift busy closed'));

  // TCP: a tunnel that stays open past the grace.
  const tunnel = await openTunnel(port);
  tunnel.socket.on('close', () => seq.push('tunnel closed'));

  // Everything is in flight: the backends have the slow work.
  assert.ok(
    await until(
      () => set.http.requests >= 2 && (set.thrift.calls.get('slow') ?? 0) === 1 && gMsgs >= 1,
      5000,
    ),
  );
  assert.ok(h2Bytes > 0, 'the raw HTTP/2 stream is flowing');

  stopped = gw.stop();
  seq.push('stop');
  assert.equal(await tryConnect(port), 'ECONNREFUSED', 'a new connection is refused at once');
  const hz = await fetch(`http://127.0.0.1:${admin.port}/healthz`);
  assert.equal(hz.status, 503, '/healthz answers 503 while draining');
  assert.equal(await echoOnce(tunnel.socket, 'during-drain'), 'during-drain', 'tunnels still carry data');

  assert.equal(await h2Done.then((r) => r.grpcStatus), '0', 'the HTTP/2 stream in flight finished with OK');
  assert.equal(goaway, http2.constants.NGHTTP2_NO_ERROR, 'the HTTP/2 client got GOAWAY(NO_ERROR)');
  assert.equal(await gDone, grpc.status.OK, 'the grpc-js stream in flight finished OK');
  assert.equal(gMsgs, 6);
  const h1 = await slowH1;
  assert.equal(h1.status, 200);
  assert.equal(h1.body, 'h0');
  assert.equal(h1.connection, 'close', 'the in-flight HTTP/1 response carries Connection: close');
  assert.equal(await slowThrift, 't0:1200', 'the Thrift call in flight got its reply');
  assert.ok(await until(() => seq.includes('thrift busy closed'), 5000), 'then its connection was closed');

  await stopped;
  assert.ok(seq.includes('tunnel closed'), 'the tunnel was cut at the grace');
  const cut = gw.records.find((r) => r.event === 'drain_cut' && r.proxy === 'tcp');
  assert.ok(cut, 'the log says what was cut');
  assert.equal(cut.tunnels, 1);
  // Idle connections went at once, long before the tunnel was cut at the grace.
  const at = (what: string): number => seq.indexOf(what);
  assert.ok(at('h1 idle closed') > at('stop') && at('h1 idle closed') < at('tunnel closed'), seq.join(', '));
  assert.ok(
    at('thrift idle closed') > at('stop') && at('thrift idle closed') < at('tunnel closed'),
    seq.join(', '),
  );
  assert.ok(at('thrift slow replied') < at('thrift busy closed'), seq.join(', '));
  assert.ok(at('h2 goaway') > at('stop'), seq.join(', '));
  assert.ok(gw.records.some((r) => r.event === 'stopped'));
  h2.destroy();
});

test('the CLI drains on SIGTERM: an in-flight request finishes, /healthz is 503 meanwhile, exit 0', {
  timeout: 60_000,
}, async (t) => {
  const be = await startHttpBackend('a');
  t.after(() => be.close());
  const ports: number[] = [];
  for (let i = 0; i < 2; i++) {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    ports.push((s.address() as net.AddressInfo).port);
    await new Promise((r) => s.close(r));
  }
  const [port, adminPort] = ports;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-stop-'));
  const file = path.join(dir, 'c.yaml');
  fs.writeFileSync(
    file,
    `global: { grace: 5s }
admin: { bind: "127.0.0.1:${adminPort}" }
listeners:
  - name: edge
    bind: ["127.0.0.1:${port}"]
    routes: [{ match: { protocol: http }, pool: web }]
pools:
  web:
    protocol: h1
    health: { type: none }
    servers: [{ name: a, address: "127.0.0.1:${be.port}" }]
`,
  );
  const cli = spawnCli(t, file, dir);
  const { child, exited } = cli;
  assert.ok(await until(() => cli.out().includes('admin listening'), 15_000), cli.out());
  const slow = new Promise<{ status: number; connection: string | undefined; body: string }>(
    (resolve, reject) => {
      http
        .get(
          { host: '127.0.0.1', port, path: '/slow?ms=1500', agent: new http.Agent({ keepAlive: true }) },
          (res) => {
            let body = '';
            res.on('data', (d: Buffer) => {
              body += d.toString();
            });
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }),
            );
          },
        )
        .on('error', reject);
    },
  );
  assert.ok(await until(() => be.requests === 1, 5000));
  child.kill('SIGTERM');
  assert.ok(await until(() => cli.out().includes('"graceful stop"'), 5000), cli.out());
  const hz = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
  assert.equal(hz.status, 503);
  assert.equal(await tryConnect(port), 'ECONNREFUSED');
  const r = await slow;
  assert.deepEqual(r, { status: 200, connection: 'close', body: 'a' });
  assert.equal(await exited, 0);
  assert.match(cli.out(), /"event":"stopped"/);
  assert.doesNotMatch(cli.out(), /"drain_cut"/, 'nothing had to be cut');
});

test('when the grace runs out, work still running on every protocol is cut and the log says what was cut', {
  timeout: 60_000,
}, async (t) => {
  const set = await startBackendSet(0);
  t.after(() => closeBackendSet(set));
  const gw = await startGateway(lifecycleYaml([set], { grace: '600ms' }));
  const port = gw.port();
  let stopped: Promise<void> | undefined;
  t.after(async () => {
    await (stopped ?? gw.stop());
  });
  const g = grpcClient(port);
  t.after(() => g.close());
  const gDone = new Promise<number>((resolve) => {
    const s = g.ServerStream({ count: 100, size: 4, delayMs: 100 });
    s.on('data', () => {});
    s.on('error', () => {});
    s.on('status', (st: grpc.StatusObject) => resolve(st.code));
  });
  const slowH1 = new Promise<string>((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path: '/slow?ms=8000', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve('ended'));
        res.on('error', () => resolve('error'));
      })
      .on('error', (e) => resolve(`error ${e.message}`));
  });
  const th = await connectClient({ port, transport: 'framed', protocol: 'binary' });
  t.after(() => th.close());
  // The thrift library never calls back a call whose connection closed: watch the close.
  const slowThrift = Promise.race([
    call<string>((cb) => (th.calc as CalculatorClient).slow(8000, cb)).then(
      (r) => r,
      (e: Error) => `error ${e.message}`,
    ),
    new Promise<string>((resolve) => th.connection.once('close', () => resolve('error: closed'))),
  ]);
  const tunnel = await openTunnel(port);
  assert.ok(
    await until(
      () => set.http.requests >= 1 && (set.thrift.calls.get('slow') ?? 0) === 1 && set.grpc.calls >= 1,
      5000,
    ),
  );
  stopped = gw.stop();
  await stopped;
  assert.notEqual(await gDone, grpc.status.OK, 'the gRPC stream was cut');
  assert.match(await slowH1, /error/, 'the HTTP/1 request was cut');
  assert.match(await slowThrift, /error/, 'the Thrift call was cut');
  assert.ok(
    await until(() => tunnel.socket.destroyed || tunnel.socket.readableEnded, 2000),
    'the tunnel was cut',
  );
  const access = gw.access();
  for (const proto of ['grpc', 'http1', 'thrift', 'tcp']) {
    const rec = access.find((r) => r.proto === proto);
    assert.ok(rec, `an access record for the ${proto} work: ${JSON.stringify(access)}`);
    assert.equal(rec.outcome, 'cut', `${proto}: ${JSON.stringify(rec)}`);
  }
  const cut = gw.records.find((r) => r.event === 'drain_cut' && r.protocols !== undefined);
  assert.ok(cut, 'a drain_cut event names what was cut');
  assert.deepEqual(cut.protocols, { h2: 1, http1: 1, thrift: 1, tcp: 1 });
  assert.equal(cut.connections, 4);
});

test('when the grace runs out with only an HTTP/1 request in flight, the drain_cut record names just that connection', {
  timeout: 30_000,
}, async (t) => {
  const set = await startBackendSet(0);
  t.after(() => closeBackendSet(set));
  const gw = await startGateway(lifecycleYaml([set], { grace: '300ms' }));
  let stopped: Promise<void> | undefined;
  t.after(async () => {
    await (stopped ?? gw.stop());
  });
  const slow = new Promise<string>((resolve) => {
    http
      .get({ host: '127.0.0.1', port: gw.port(), path: '/slow?ms=8000', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve('ended'));
        res.on('error', () => resolve('error'));
      })
      .on('error', (e) => resolve(`error ${e.message}`));
  });
  assert.ok(await until(() => set.http.requests >= 1, 5000));
  stopped = gw.stop();
  await stopped;
  assert.match(await slow, /error/, 'the HTTP/1 request was cut');
  const cut = gw.records.find((r) => r.event === 'drain_cut' && r.protocols !== undefined);
  assert.ok(cut, 'a drain_cut event');
  // The session's client socket is a re-wrap of the accepted one: both count as one
  // connection, cut by the HTTP/1 proxy, not as a connection still being sniffed.
  assert.deepEqual(cut.protocols, { http1: 1 });
  assert.equal(cut.connections, 1);
});
