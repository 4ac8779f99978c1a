// The frame-level proxy's upstream connections (src/upstream/h2frame-pool.ts) against
// backends that misbehave: a server that stops answering (PING liveness), a server that
// refuses streams (REFUSED_STREAM is replayed on another server), a server whose SETTINGS
// lower the stream window mid-call, and the request body kept for a replay.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { test } from 'node:test';
import { FrameType } from '../src/codec/http2/index.js';
import { startHarness, yamlFor } from './h2-harness.js';
import { rawH2Server } from './helpers/raw-h2-server.js';
import { waitFor } from './helpers/wait.js';

type After = { after(fn: () => Promise<void> | void): void };

function fetch(
  port: number,
  t: After,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer }> {
  const c = http2.connect(`http://127.0.0.1:${port}`);
  c.on('error', () => {});
  t.after(() => c.destroy());
  return new Promise((resolve, reject) => {
    const req = c.request(headers, { endStream: body === undefined });
    let h: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (x) => {
      h = x;
    });
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => resolve({ headers: h, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

test('a server that goes silent is dropped by PING liveness; its call fails with 14 / 502', async (t) => {
  // Speaks just enough HTTP/2 to be "ready" (SETTINGS both ways), then never answers.
  let streamsSeen = 0;
  const { address } = await rawH2Server(t, () => (f) => {
    if (f.type === FrameType.HEADERS) streamsSeen++;
  });
  const h = await startHarness(yamlFor([{ name: 'mute', address }]));
  t.after(() => h.stop());
  // Harness pool: PING after 1 s without an ack, dropped 1 s later.
  const r = await fetch(h.port, t, { ':path': '/hang' });
  assert.equal(r.headers[':status'], 502);
  assert.match(r.body.toString(), /server mute: connection lost before response/);
  assert.equal(streamsSeen, 1);
  await waitFor(() => h.upstream.sessionCount() === 0);
  assert.equal(h.records.at(-1)?.outcome, 'server_reset');
});

test('REFUSED_STREAM is replayed on another server with the buffered request body', async (t) => {
  let refusals = 0;
  const refuser = http2.createServer();
  refuser.on('stream', (s) => {
    refusals++;
    s.on('error', () => {});
    s.close(http2.constants.NGHTTP2_REFUSED_STREAM);
  });
  const echo = http2.createServer();
  echo.on('stream', (s) => {
    s.on('error', () => {});
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => {
      s.respond({ ':status': 200 });
      s.end(Buffer.concat(chunks));
    });
  });
  for (const srv of [refuser, echo]) await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => {
    refuser.close();
    echo.close();
  });
  const addr = (s: http2.Http2Server) => `127.0.0.1:${(s.address() as net.AddressInfo).port}`;
  const h = await startHarness(
    yamlFor(
      [
        { name: 'refuser', address: addr(refuser) },
        { name: 'echo', address: addr(echo) },
      ],
      {
        pool: '    health: { type: none }\n    balance: first\n    retries: { attempts: 1, on: [refused-stream] }',
      },
    ).replace('    balance: roundrobin\n', ''),
  );
  t.after(() => h.stop());
  const body = Buffer.alloc(40_000, 3);
  const r = await fetch(h.port, t, { ':method': 'POST', ':path': '/p' }, body);
  assert.equal(r.headers[':status'], 200);
  assert.equal(Buffer.compare(r.body, body), 0);
  assert.equal(refusals, 1);
  const rec = h.records.at(-1)!;
  assert.equal(rec.server, 'echo');
  assert.equal(rec.retries, 1);
  assert.equal(rec.bytes_in, 40_000);
});

test('a server lowering its stream window mid-call still gets the whole body, within its windows', async (t) => {
  const got: number[] = [];
  const srv = http2.createServer({ settings: { initialWindowSize: 65_535 } });
  srv.on('session', (sess) => {
    sess.on('error', () => {});
    // Shrink every stream window to 1,000 bytes once the session is up.
    setImmediate(() => sess.settings({ initialWindowSize: 1000 }));
  });
  srv.on('stream', (s) => {
    s.on('error', () => {});
    let n = 0;
    s.on('data', (d: Buffer) => {
      n += d.length;
    });
    s.on('end', () => {
      got.push(n);
      s.respond({ ':status': 200 });
      s.end(String(n));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => srv.close());
  const h = await startHarness(
    yamlFor([{ name: 's', address: `127.0.0.1:${(srv.address() as net.AddressInfo).port}` }]),
  );
  t.after(() => h.stop());
  const body = Buffer.alloc(300_000, 9);
  for (let i = 0; i < 2; i++) {
    const r = await fetch(h.port, t, { ':method': 'POST', ':path': `/w${i}` }, body);
    assert.equal(r.body.toString(), '300000');
  }
  assert.deepEqual(got, [300_000, 300_000]);
});
