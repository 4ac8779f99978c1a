// HPACK against RFC 7541 Appendix C (byte-exact), Huffman round trips, table eviction,
// bounds, and interop with node:http2 (nghttp2) over a real loopback connection.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import {
  ErrorCode,
  encodeFrame,
  Flag,
  FrameType,
  HpackDecoder,
  HpackEncoder,
  HpackError,
  huffmanDecode,
  huffmanEncode,
  huffmanLength,
  PREFACE,
  parseFrames,
  Setting,
  settingsPayload,
} from '../src/codec/http2/index.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function decodeAll(d: HpackDecoder, block: Buffer): [string, string][] {
  assert.equal(d.decode(block, 0, block.length), HpackError.OK);
  const out: [string, string][] = [];
  for (let i = 0; i < d.count; i++) out.push([d.names[i], d.values[i]]);
  return out;
}

test('C.2: literal representations (indexed, without indexing, never indexed, indexed)', () => {
  const d = new HpackDecoder();
  assert.deepEqual(decodeAll(d, hex('400a637573746f6d2d6b65790d637573746f6d2d686561646572')), [
    ['custom-key', 'custom-header'],
  ]);
  assert.equal(d.table.size, 55);
  const d2 = new HpackDecoder();
  assert.deepEqual(decodeAll(d2, hex('040c2f73616d706c652f70617468')), [[':path', '/sample/path']]);
  assert.equal(d2.table.count, 0);
  const d3 = new HpackDecoder();
  assert.deepEqual(decodeAll(d3, hex('100870617373776f726406736563726574')), [['password', 'secret']]);
  assert.deepEqual(d3.neverIndexed, ['password']);
  assert.equal(d3.table.count, 0);
  assert.deepEqual(decodeAll(new HpackDecoder(), hex('82')), [[':method', 'GET']]);
});

const C3 = [
  '828684410f7777772e6578616d706c652e636f6d',
  '828684be58086e6f2d6361636865',
  '828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565',
];
const C4 = [
  '828684418cf1e3c2e5f23a6ba0ab90f4ff',
  '828684be5886a8eb10649cbf',
  '828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf',
];
const REQS: [string, string][][] = [
  [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
  ],
  [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
    ['cache-control', 'no-cache'],
  ],
  [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':path', '/index.html'],
    [':authority', 'www.example.com'],
    ['custom-key', 'custom-value'],
  ],
];

test('C.3 / C.4: request sequences decode on one connection context (plain and Huffman)', () => {
  for (const blocks of [C3, C4]) {
    const d = new HpackDecoder();
    const sizes = [57, 110, 164];
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(decodeAll(d, hex(blocks[i])), REQS[i]);
      assert.equal(d.table.size, sizes[i]);
    }
  }
});

test('C.4: the encoder produces the RFC bytes (static index, dynamic index, Huffman literals)', () => {
  const e = new HpackEncoder();
  for (let i = 0; i < 3; i++) {
    const n = e.encodePairs(REQS[i]);
    assert.equal(e.buf.subarray(0, n).toString('hex'), C4[i], `request ${i + 1}`);
  }
});

const RESP: [string, string][][] = [
  [
    [':status', '302'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['location', 'https://www.example.com'],
  ],
  [
    [':status', '307'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['location', 'https://www.example.com'],
  ],
  [
    [':status', '200'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
    ['location', 'https://www.example.com'],
    ['content-encoding', 'gzip'],
    ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
  ],
];

test('C.5 / C.6: responses with a 256-octet table evict the oldest entries', () => {
  const c5 = [
    '4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d54' +
      '6e1768747470733a2f2f7777772e6578616d706c652e636f6d',
    '4803333037c1c0bf',
    '88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f' +
      '3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076' +
      '657273696f6e3d31',
  ];
  const c6 = [
    '488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f' +
      '0b97c8e9ae82ae43d3',
    '4883640effc1c0bf',
    '88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335df' +
      'dfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007',
  ];
  for (const blocks of [c5, c6]) {
    const d = new HpackDecoder(65_536, 256, 256);
    const sizes = [222, 222, 215];
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(decodeAll(d, hex(blocks[i])), RESP[i]);
      assert.equal(d.table.size, sizes[i]);
    }
    // After C.x.3 the table holds exactly these three, newest first.
    assert.equal(d.table.count, 3);
    const e = d.table;
    assert.equal(e.names[e.at(1)], 'set-cookie');
    assert.equal(e.names[e.at(2)], 'content-encoding');
    assert.equal(e.values[e.at(3)], 'Mon, 21 Oct 2013 20:13:22 GMT');
  }
});

test('encoder ↔ decoder round trip with evictions, arrays, sensitive fields and table size updates', () => {
  const enc = new HpackEncoder();
  const dec = new HpackDecoder();
  for (let i = 0; i < 500; i++) {
    const h: Record<string, string | string[]> = {
      ':status': '200',
      'content-type': 'application/grpc',
      'x-seq': `v${i % 37}-${'z'.repeat(i % 50)}`,
      'x-multi': ['a', `b${i % 3}`],
      authorization: `Bearer ${i}`,
      'grpc-timeout': `${i}m`,
      'x-bin-bin': Buffer.from([i & 0xff, 0, 255]).toString('latin1'),
    };
    if (i === 250) enc.setPeerTableSize(256);
    const n = enc.encode(h);
    const got = decodeAll(dec, Buffer.from(enc.buf.subarray(0, n)));
    const want: [string, string][] = [];
    for (const k of Object.keys(h)) {
      const v = h[k];
      for (const x of Array.isArray(v) ? v : [v]) want.push([k, x]);
    }
    assert.deepEqual(got, want);
    assert.ok(dec.table.size <= (i >= 250 ? 256 : 4096));
    assert.ok(dec.neverIndexed?.includes('authorization'));
  }
  // Repeated fields shrink to one-byte indexes.
  const n1 = enc.encode({ 'content-type': 'application/grpc', 'x-a': 'hello world' });
  const n2 = enc.encode({ 'content-type': 'application/grpc', 'x-a': 'hello world' });
  assert.ok(n2 <= 2 && n2 < n1, `${n1} then ${n2}`);
});

test('Huffman: every octet round-trips; EOS and bad padding are rejected', () => {
  const all = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) all[i] = i;
  const s = all.toString('latin1');
  const out = Buffer.alloc(1024);
  const n = huffmanEncode(s, out, 0);
  assert.equal(n, huffmanLength(s));
  assert.equal(huffmanDecode(out, 0, n), s);
  // EOS (30 ones) inside a string.
  assert.equal(huffmanDecode(hex('ffffffff'), 0, 4), undefined);
  // 'a' is 00011 (5 bits): padding with zeros is invalid, with ones valid.
  assert.equal(huffmanDecode(hex('1f'), 0, 1), 'a');
  assert.equal(huffmanDecode(hex('18'), 0, 1), undefined);
  // More than 7 bits of padding.
  assert.equal(huffmanDecode(hex('1fff'), 0, 2), undefined);
});

test('decoder bounds: list size and field count set oversize, table stays in step; malformed blocks fail', () => {
  const enc = new HpackEncoder();
  const d = new HpackDecoder(200, 4);
  const big = { ':path': '/', 'x-a': 'a'.repeat(150), 'x-b': 'b'.repeat(100) };
  let n = enc.encode(big);
  assert.equal(d.decode(enc.buf, 0, n), HpackError.OK);
  assert.equal(d.oversize, true);
  assert.ok(d.count < 3);
  // The next block refers to entries the oversize block inserted: still decodes.
  n = enc.encode({ 'x-b': 'b'.repeat(100) });
  assert.equal(n, 1);
  assert.equal(d.decode(enc.buf, 0, n), HpackError.OK);
  assert.deepEqual([d.names[0], d.values[0]], ['x-b', 'b'.repeat(100)]);
  const many: Record<string, string> = {};
  for (let i = 0; i < 10; i++) many[`k${i}`] = 'v';
  n = enc.encode(many);
  assert.equal(d.decode(enc.buf, 0, n), HpackError.OK);
  assert.equal(d.oversize, true);
  assert.equal(d.count, 4);
  const bad = new HpackDecoder();
  assert.equal(bad.decode(hex('80'), 0, 1), HpackError.COMPRESSION, 'index 0');
  assert.equal(bad.decode(hex('ff00'), 0, 2), HpackError.COMPRESSION, 'index past the tables');
  assert.equal(bad.decode(hex('410f77'), 0, 3), HpackError.COMPRESSION, 'truncated string');
  assert.equal(bad.decode(hex('3fe21f'), 0, 3), HpackError.COMPRESSION, 'size update above the maximum');
  assert.equal(bad.decode(hex('ffffffffffffff'), 0, 7), HpackError.COMPRESSION, 'integer overflow');
  assert.equal(bad.decode(hex('8220'), 0, 2), HpackError.COMPRESSION, 'size update after a field');
});

test('interop: node:http2 (nghttp2) decodes our HEADERS and we decode its responses on one connection', async (t) => {
  const server = http2.createServer();
  const seen: http2.IncomingHttpHeaders[] = [];
  server.on('stream', (s, h) => {
    seen.push(h);
    s.respond({ ':status': 200, 'x-n': String(h['x-n']), 'content-type': 'text/plain', 'x-same': 'same' });
    s.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.after(() => {
    sock.destroy();
    server.close();
  });
  sock.on('error', () => {});
  await new Promise<void>((r) => sock.on('connect', () => r()));
  const enc = new HpackEncoder();
  const dec = new HpackDecoder();
  sock.write(PREFACE);
  sock.write(encodeFrame(FrameType.SETTINGS, 0, 0, settingsPayload([[Setting.ENABLE_PUSH, 0]])));
  for (let i = 0; i < 20; i++) {
    const n = enc.encode({
      ':method': 'GET',
      ':scheme': 'http',
      ':authority': 'example.test',
      ':path': `/p/${i}`,
      'x-n': String(i),
      'user-agent': 'switchyard-codec-test/1.0',
      cookie: 'secret=1',
    });
    sock.write(
      encodeFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 2 * i + 1, enc.buf.subarray(0, n)),
    );
  }
  let buf = Buffer.alloc(0);
  const got = new Map<number, Record<string, string>>();
  const until = Date.now() + 5000;
  while (got.size < 20 && Date.now() < until) {
    const chunk = await new Promise<Buffer | null>((r) => {
      sock.once('data', r);
      sock.once('close', () => r(null));
    });
    if (chunk === null) break;
    buf = Buffer.concat([buf, chunk]);
    const { frames, rest } = parseFrames(buf);
    buf = Buffer.from(rest);
    for (const f of frames) {
      if (f.type === FrameType.GOAWAY) assert.fail(`GOAWAY ${f.payload.readUInt32BE(4)}`);
      if (f.type === FrameType.RST_STREAM)
        assert.notEqual(f.payload.readUInt32BE(0), ErrorCode.PROTOCOL_ERROR);
      if (f.type !== FrameType.HEADERS) continue;
      assert.equal(dec.decode(f.payload, 0, f.payload.length), HpackError.OK);
      const h: Record<string, string> = {};
      for (let i = 0; i < dec.count; i++) h[dec.names[i]] = dec.values[i];
      got.set(f.streamId, h);
    }
  }
  assert.equal(got.size, 20);
  for (let i = 0; i < 20; i++) {
    assert.equal(got.get(2 * i + 1)?.['x-n'], String(i));
    assert.equal(got.get(2 * i + 1)?.['x-same'], 'same');
    assert.equal(seen[i][':path'], `/p/${i}`);
    assert.equal(seen[i].cookie, 'secret=1');
    assert.equal(seen[i]['user-agent'], 'switchyard-codec-test/1.0');
  }
});
