// gRPC failure semantics through the proxy: deadlines, cancellation, deny, retries,
// backend resets, rapid reset.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { encodeGrpcFrame } from '../src/codec/grpc/index.js';
import { type Backend, client, startBackend, startHarness, unary, yamlFor } from './h2-harness.js';
import { waitFor } from './helpers/wait.js';

type After = { after(fn: () => Promise<void> | void): void };

async function setup(t: After, yamlExtra: Parameters<typeof yamlFor>[1] = {}, n = 1) {
  const backends: Backend[] = [];
  for (let i = 0; i < n; i++) backends.push(await startBackend(`g${i + 1}`));
  const h = await startHarness(yamlFor(backends, yamlExtra));
  const c = client(h.port);
  t.after(async () => {
    c.close();
    await h.stop();
    for (const b of backends) await b.stop();
  });
  return { backends, h, c };
}

/** A raw HTTP/2 gRPC call, so no client-side deadline or retry hides what the gateway did. */
function rawCall(
  port: number,
  path: string,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer,
): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders | undefined }> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.on('error', reject);
    const req = s.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    });
    let h: http2.IncomingHttpHeaders = {};
    let tr: http2.IncomingHttpHeaders | undefined;
    req.on('response', (x) => {
      h = x;
    });
    req.on('trailers', (x) => {
      tr = x;
    });
    req.on('data', () => {});
    req.on('close', () => {
      s.close();
      resolve({ headers: h, trailers: tr });
    });
    req.end(body);
  });
}

// TestService.Unary request {text: "sleep"}: field 2 (text), length 5.
const SLEEP = encodeGrpcFrame(Buffer.from([0x12, 5, ...Buffer.from('sleep')]));

test('grpc-timeout is enforced at the gateway: DEADLINE_EXCEEDED and the backend sees the cancel', async (t) => {
  const { backends, h } = await setup(t);
  const r = await rawCall(h.port, '/switchyard.test.TestService/Unary', { 'grpc-timeout': '200m' }, SLEEP);
  assert.equal(r.headers['grpc-status'], '4', 'trailers-only DEADLINE_EXCEEDED');
  assert.match(String(r.headers['grpc-message']), /deadline of 200ms exceeded at the gateway/);
  assert.equal(r.headers['content-type'], 'application/grpc');
  await waitFor(() => backends[0].cancelled === 1);
  const rec = h.records.at(-1)!;
  assert.equal(rec.outcome, 'timeout');
  assert.equal(rec.grpc_status, 4);
});

test('client cancel resets the backend stream', async (t) => {
  const { backends, c } = await setup(t);
  const call = c.Unary({ text: 'sleep' }, (e: grpc.ServiceError | null) => {
    assert.equal(e?.code, grpc.status.CANCELLED);
  });
  await waitFor(() => backends[0].calls === 1);
  call.cancel();
  await waitFor(() => backends[0].cancelled === 1);
});

test('deny: PERMISSION_DENIED (7) for gRPC, 403 for plain HTTP/2; no route: UNIMPLEMENTED / 404', async (t) => {
  const routes = `      - match: { protocol: grpc, method: "/switchyard.test.TestService/Bidi*" }
        deny: true
      - match: { protocol: h2, path_prefix: /admin/ }
        deny: true
`;
  const backends = [await startBackend('g1')];
  const h = await startHarness(
    yamlFor(backends, { routes }).replace(
      '- match: { protocol: h2 }',
      '- match: { protocol: h2, host: "127.0.0.1*" }',
    ),
  );
  const c = client(h.port);
  t.after(async () => {
    c.close();
    await h.stop();
    await backends[0].stop();
  });
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    const call = c.Bidi();
    call.on('error', () => {});
    call.on('status', resolve);
    call.write({ text: 'x' });
  });
  assert.equal(status.code, grpc.status.PERMISSION_DENIED);
  assert.equal(backends[0].calls, 0);
  assert.equal(h.records.at(-1)?.outcome, 'denied');

  const s = http2.connect(`http://127.0.0.1:${h.port}`);
  t.after(() => s.close());
  const get = (path: string, authority?: string) =>
    new Promise<number>((resolve, reject) => {
      const req = s.request({ ':path': path, ...(authority ? { ':authority': authority } : {}) });
      req.on('response', (x) => resolve(Number(x[':status'])));
      req.on('error', reject);
      req.resume();
      req.end();
    });
  assert.equal(await get('/admin/x'), 403);
  assert.equal(await get('/x', 'other.example'), 404);
  const r = await rawCall(h.port, '/a.B/C', { ':authority': 'other.example' }, Buffer.alloc(0));
  assert.equal(r.headers['grpc-status'], '12');
});

test('connect failure is retried on another server; without retries it is UNAVAILABLE with the reason', async (t) => {
  const dead = net.createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadAddr = `127.0.0.1:${(dead.address() as net.AddressInfo).port}`;
  await new Promise<void>((r) => dead.close(() => r()));
  const live = await startBackend('live');
  const servers = [{ name: 'dead', address: deadAddr }, live];
  const h = await startHarness(
    yamlFor(servers, { pool: '    health: { type: none }\n    retries: { attempts: 2 }' }),
  );
  const c = client(h.port);
  const h0 = await startHarness(
    yamlFor([{ name: 'dead', address: deadAddr }], {
      pool: '    health: { type: none }\n    retries: { attempts: 0 }',
    }),
  );
  const c0 = client(h0.port);
  t.after(async () => {
    c.close();
    c0.close();
    await h.stop();
    await h0.stop();
    await live.stop();
  });
  for (let i = 0; i < 10; i++) {
    const { res, status } = await unary(c, { text: 'x' });
    assert.equal(status.code, grpc.status.OK);
    assert.equal(res.text, 'live');
  }
  assert.ok(h.records.some((r) => r.retries === 1 && r.server === 'live'));
  const { status } = await unary(c0, { text: 'x' });
  assert.equal(status.code, grpc.status.UNAVAILABLE);
  assert.match(status.details, /server dead: connect failed/);
  assert.equal(h0.records.at(-1)?.outcome, 'connect_failure');
});

test('a backend reset reaches the client as the mapped gRPC status', async (t) => {
  const srv = http2.createServer();
  let n = 0;
  srv.on('stream', (s) => {
    s.on('error', () => {});
    n++;
    if (n === 1)
      s.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM); // before headers
    else {
      // waitForTrailers: node's close() would otherwise end the stream cleanly before the RST.
      s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      s.write(encodeGrpcFrame(Buffer.alloc(0)));
      setTimeout(() => s.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 20); // mid-stream
    }
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const address = `127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
  const h = await startHarness(yamlFor([{ name: 'raw', address }]));
  const c = client(h.port);
  t.after(async () => {
    c.close();
    await h.stop();
    srv.close();
  });
  const first = await unary(c, { text: 'x' });
  assert.equal(first.status.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(first.status.details, /reset the stream \(HTTP\/2 code 11\)/);
  const second = await new Promise<grpc.StatusObject>((resolve) => {
    const call = c.ServerStream({ count: 1 });
    call.on('data', () => {});
    call.on('error', () => {});
    call.on('status', resolve);
  });
  assert.equal(second.code, grpc.status.INTERNAL);
  assert.equal(h.records.at(-1)?.outcome, 'server_reset');
});

test('rapid reset: a client resetting streams too fast gets GOAWAY(ENHANCE_YOUR_CALM); others are unaffected', async (t) => {
  const { h, c, backends } = await setup(t, { listener: '    limits: { h2_resets_per_second: 50 }' });
  const bad = http2.connect(`http://127.0.0.1:${h.port}`);
  bad.on('error', () => {});
  let goawayCode = -1;
  bad.on('goaway', (code) => {
    goawayCode = code;
  });
  const closed = new Promise<void>((r) => bad.on('close', () => r()));
  await new Promise<void>((r) => bad.on('connect', () => r()));
  for (let i = 0; i < 500 && !bad.destroyed && !bad.closed; i++) {
    try {
      const req = bad.request(
        {
          ':method': 'POST',
          ':path': '/switchyard.test.TestService/Unary',
          'content-type': 'application/grpc',
        },
        { endStream: false },
      );
      req.on('error', () => {});
      req.close(http2.constants.NGHTTP2_CANCEL);
    } catch {
      break;
    }
    if (i % 20 === 19) await new Promise((r) => setImmediate(r));
  }
  await closed;
  assert.equal(goawayCode, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  const { status } = await unary(c, { text: 'x' });
  assert.equal(status.code, grpc.status.OK);
  // The resets were cut off well before 500 reached the backend.
  assert.ok(backends[0].calls < 200, `backend saw ${backends[0].calls} calls`);
  assert.ok(h.logs.some((l) => l.event === 'h2_rapid_reset'));
});

test('passive outlier detection counts UNAVAILABLE (14) answers from a server', async (t) => {
  const { h, c } = await setup(t, {
    pool: '    health: { type: none }\n    outlier: { consecutive_failures: 3, eject: 30s }',
  });
  const member = h.pools.get('p')!.members[0];
  for (let i = 0; i < 3; i++) {
    const { status } = await unary(c, { text: 'status:14' });
    assert.equal(status.code, grpc.status.UNAVAILABLE);
    assert.equal(status.details, 'asked for status:14', 'the server status passes untouched');
  }
  assert.ok(member.ejectedUntil > Date.now(), 'ejected after 3 consecutive UNAVAILABLE');
  const { status } = await unary(c, { text: 'x' });
  assert.equal(status.code, grpc.status.UNAVAILABLE);
  assert.match(status.details, /no server available/);
});
