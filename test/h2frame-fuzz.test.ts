// Bad input never crashes the frame-level proxy: mutated and truncated HTTP/2 byte streams
// (frame headers, HPACK blocks, windows, settings) are sent by raw clients; afterwards the
// same gateway still answers a normal request. Seeded, bounded in count and time.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import {
  encodeFrame,
  Flag,
  FrameType,
  HpackEncoder,
  PREFACE,
  Setting,
  settingsPayload,
} from '../src/codec/http2/index.js';
import { startHarness, yamlFor } from './h2-harness.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1_103_515_245 + 12_345) >>> 0;
    return s / 0x1_0000_0000;
  };
}

function validSequence(): Buffer {
  const enc = new HpackEncoder();
  const parts: Buffer[] = [
    PREFACE,
    encodeFrame(FrameType.SETTINGS, 0, 0, settingsPayload([[Setting.INITIAL_WINDOW_SIZE, 100_000]])),
  ];
  for (let id = 1; id <= 7; id += 2) {
    const n = enc.encode({
      ':method': 'POST',
      ':scheme': 'http',
      ':authority': 'fuzz',
      ':path': `/switchyard.test.TestService/Unary${id}`,
      'content-type': 'application/grpc',
      'grpc-timeout': '500m',
      'x-meta': 'v'.repeat(id * 10),
    });
    parts.push(encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, id, Buffer.from(enc.buf.subarray(0, n))));
    parts.push(encodeFrame(FrameType.DATA, 0, id, Buffer.from([0, 0, 0, 0, 2, 8, 1])));
    parts.push(encodeFrame(FrameType.WINDOW_UPDATE, 0, id, Buffer.from([0, 0, 1, 0])));
    parts.push(encodeFrame(FrameType.DATA, Flag.END_STREAM, id, Buffer.alloc(0)));
  }
  parts.push(encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8)));
  parts.push(encodeFrame(FrameType.RST_STREAM, 0, 3, Buffer.from([0, 0, 0, 8])));
  return Buffer.concat(parts);
}

test('fuzz: 300 mutated HTTP/2 connections, then a normal request is still served', async (t) => {
  const backend = http2.createServer();
  backend.on('stream', (s) => {
    s.on('error', () => {});
    s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
    s.end(Buffer.from([0, 0, 0, 0, 0]));
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  t.after(() => backend.close());
  const h = await startHarness(
    yamlFor([{ name: 'b', address: `127.0.0.1:${(backend.address() as net.AddressInfo).port}` }]),
  );
  t.after(() => h.stop());
  const base = validSequence();
  const rand = rng(0x5eed);
  const until = Date.now() + 20_000;
  for (let i = 0; i < 300 && Date.now() < until; i++) {
    const b = Buffer.from(base);
    const mutations = 1 + Math.floor(rand() * 8);
    // Keep the preface intact half of the time so the frame parser is reached.
    const from = i % 2 === 0 ? PREFACE.length : 0;
    for (let m = 0; m < mutations; m++) {
      const at = from + Math.floor(rand() * (b.length - from));
      b[at] = Math.floor(rand() * 256);
    }
    const cut = rand() < 0.3 ? Math.floor(rand() * b.length) : b.length;
    const sock = net.connect(h.port, '127.0.0.1');
    sock.on('error', () => {});
    sock.on('data', () => {});
    await new Promise<void>((r) => sock.on('connect', () => r()));
    sock.write(b.subarray(0, cut));
    await new Promise((r) => setTimeout(r, 2));
    sock.destroy();
  }
  const c = http2.connect(`http://127.0.0.1:${h.port}`);
  c.on('error', () => {});
  t.after(() => c.destroy());
  const status = await new Promise<string>((resolve, reject) => {
    const req = c.request({
      ':method': 'POST',
      ':path': '/x.Y/Z',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    req.on('trailers', (tr) => resolve(String(tr['grpc-status'])));
    req.on('error', reject);
    req.resume();
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
  assert.equal(status, '0');
});
