// gRPC through the HTTP/2 proxy: the four call kinds, metadata and -bin trailers, 4 MiB
// messages, per-call balancing over three servers, access records.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type Backend, client, type Msg, startBackend, startHarness, unary, yamlFor } from './h2-harness.js';

async function setup(t: { after(fn: () => Promise<void> | void): void }, n = 3) {
  const backends: Backend[] = [];
  for (let i = 0; i < n; i++) backends.push(await startBackend(`g${i + 1}`));
  const h = await startHarness(yamlFor(backends));
  const c = client(h.port, {
    'grpc.max_receive_message_length': 64 << 20,
    'grpc.max_send_message_length': 64 << 20,
  });
  t.after(async () => {
    c.close();
    await h.stop();
    for (const b of backends) await b.stop();
  });
  return { backends, h, c };
}

test('unary calls spread per call over three servers; metadata, -bin trailers and xff pass', async (t) => {
  const { backends, h, c } = await setup(t);
  const counts = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const md = new grpc.Metadata();
    md.set('x-echo-bin', Buffer.from([1, 2, 3, 0, 200]));
    const { res, status, headers } = await unary(
      c,
      { text: 'hi', n: i, payload: Buffer.from('abc') },
      { metadata: md },
    );
    assert.equal(status.code, grpc.status.OK);
    assert.equal(res.n, i);
    assert.deepEqual(Buffer.from(res.payload), Buffer.from('abc'));
    counts.set(res.text, (counts.get(res.text) ?? 0) + 1);
    if (i === 0) {
      assert.deepEqual(headers?.get('x-echo-bin')[0], Buffer.from([1, 2, 3, 0, 200]));
      assert.deepEqual(status.metadata.get('x-trailer-bin')[0], Buffer.from([9, 8, 7, 0, 255]));
    }
  }
  for (const b of backends) assert.ok((counts.get(b.name) ?? 0) >= 60, `${b.name} got ${counts.get(b.name)}`);
  const xff = backends.map((b) => b.lastMetadata?.get('x-forwarded-for')[0]).filter(Boolean);
  assert.ok(xff.length > 0 && xff.every((v) => v === '127.0.0.1'), `xff ${xff}`);
  assert.equal(h.records.length, 300);
  const r = h.records[0];
  assert.equal(r.proto, 'grpc');
  assert.equal(r.service, 'switchyard.test.TestService');
  assert.equal(r.method, '/switchyard.test.TestService/Unary');
  assert.equal(r.grpc_status, 0);
  assert.equal(r.outcome, 'ok');
  assert.ok(r.bytes_in > 0 && r.bytes_out > 0);
  assert.ok(backends.some((b) => b.name === r.server));
});

test('error statuses and their trailers pass untouched', async (t) => {
  const { h, c } = await setup(t, 1);
  const { status } = await unary(c, { text: 'status:5' });
  assert.equal(status.code, grpc.status.NOT_FOUND);
  assert.equal(status.details, 'asked for status:5');
  assert.deepEqual(status.metadata.get('x-trailer-bin')[0], Buffer.from([0, 1, 2, 255]));
  assert.equal(status.metadata.get('x-trailer')[0], 'yes');
  assert.equal(h.records.at(-1)?.grpc_status, 5);
});

test('server streaming: 1,000 messages in order', async (t) => {
  const { c } = await setup(t, 1);
  const got: number[] = [];
  await new Promise<void>((resolve, reject) => {
    const call = c.ServerStream({ count: 1000, size: 100 });
    call.on('data', (m: Msg) => got.push(m.n));
    call.on('error', reject);
    call.on('end', resolve);
  });
  assert.equal(got.length, 1000);
  assert.ok(got.every((n, i) => n === i));
});

test('client streaming and bidi', async (t) => {
  const { c } = await setup(t, 1);
  const res = await new Promise<Msg>((resolve, reject) => {
    const call = c.ClientStream((e: Error | null, r: Msg) => (e ? reject(e) : resolve(r)));
    for (let i = 0; i < 100; i++) call.write({ payload: Buffer.alloc(1000, 1), n: i });
    call.end();
  });
  assert.equal(res.n, 100);
  assert.equal(res.text, 'g1:100000');
  const echoed: number[] = [];
  await new Promise<void>((resolve, reject) => {
    const call = c.Bidi();
    let i = 0;
    call.on('data', (m: Msg) => {
      echoed.push(m.n);
      if (++i < 50) call.write({ payload: Buffer.from('x'), n: i });
      else call.end();
    });
    call.on('error', reject);
    call.on('end', resolve);
    call.write({ payload: Buffer.from('x'), n: 0 });
  });
  assert.deepEqual(
    echoed,
    Array.from({ length: 50 }, (_, i) => i),
  );
});

test('4 MiB messages both ways', async (t) => {
  const { c } = await setup(t, 1);
  const big = Buffer.alloc(4 << 20);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
  const { res, status } = await unary(c, { payload: big, text: 'big' });
  assert.equal(status.code, grpc.status.OK);
  assert.equal(Buffer.compare(Buffer.from(res.payload), big), 0);
  let total = 0;
  await new Promise<void>((resolve, reject) => {
    const call = c.ServerStream({ count: 3, size: 4 << 20 });
    call.on('data', (m: Msg) => {
      total += m.payload.length;
    });
    call.on('error', reject);
    call.on('end', resolve);
  });
  assert.equal(total, 3 * (4 << 20));
});
