import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  BODY_CHUNKED,
  BODY_LENGTH,
  BODY_NONE,
  CHUNK_ERROR,
  CHUNK_MORE,
  ChunkedDecoder,
  HeadError,
  parseRequest,
  parseResponse,
} from '../src/codec/http1/parser.js';

const b = (s: string) => Buffer.from(s, 'latin1');

test('parses a request head, framing and connection semantics', () => {
  const r = parseRequest(
    b(
      '\r\nPOST /x?y=1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nConnection: close, X-Hop\r\n\r\nhello',
    ),
    0,
    4096,
  );
  assert.ok(r !== null && !(r instanceof HeadError));
  assert.equal(r.method, 'POST');
  assert.equal(r.target, '/x?y=1');
  assert.equal(r.host, 'a.test');
  assert.equal(r.bodyKind, BODY_LENGTH);
  assert.equal(r.contentLength, 5);
  assert.equal(r.keepAlive, false);
  assert.deepEqual(r.connTokens, ['x-hop']);
  assert.equal(
    r.headBytes,
    b('\r\nPOST /x?y=1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nConnection: close, X-Hop\r\n\r\n')
      .length,
  );
  const c = parseRequest(b('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'), 0, 4096);
  assert.ok(c !== null && !(c instanceof HeadError));
  assert.equal(c.keepAlive, true);
  assert.equal(c.bodyKind, BODY_NONE);
  const u = parseRequest(
    b('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'),
    0,
    4096,
  );
  assert.ok(u !== null && !(u instanceof HeadError));
  assert.equal(u.upgrade, 'websocket');
  const ch = parseRequest(b('PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n'), 0, 4096);
  assert.ok(ch !== null && !(ch instanceof HeadError));
  assert.equal(ch.bodyKind, BODY_CHUNKED);
  assert.equal(parseRequest(b('GET / HTTP/1.1\r\nHost: x\r\n'), 0, 4096), null, 'incomplete');
});

test('rejects malformed request heads with the right status', () => {
  const cases: [string, number][] = [
    ['GET  / HTTP/1.1\r\nHost: x\r\n\r\n', 400],
    ['GET / HTTP/2.0\r\nHost: x\r\n\r\n', 400],
    ['GET / HTTP/1.2\r\nHost: x\r\n\r\n', 505],
    ['G(T / HTTP/1.1\r\nHost: x\r\n\r\n', 400],
    ['GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890123456\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 501],
  ];
  for (const [raw, status] of cases) {
    const r = parseRequest(b(raw), 0, 4096);
    assert.ok(r instanceof HeadError, JSON.stringify(raw));
    assert.equal(r.status, status, JSON.stringify(raw));
  }
});

test('parses response heads', () => {
  const r = parseResponse(b('HTTP/1.1 204 No Content\r\nX: 1\r\n\r\n'), 0, 4096);
  assert.ok(r !== null && !(r instanceof HeadError));
  assert.equal(r.status, 204);
  assert.equal(r.reason, 'No Content');
  assert.ok(parseResponse(b('HTTP/1.1 20 OK\r\n\r\n'), 0, 4096) instanceof HeadError);
  assert.ok(
    parseResponse(b('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'), 0, 4096) instanceof
      HeadError,
  );
  const noReason = parseResponse(b('HTTP/1.1 200\r\n\r\n'), 0, 4096);
  assert.ok(noReason !== null && !(noReason instanceof HeadError));
});

test('chunked decoder finds the end across every split and reports data', () => {
  const body = b('4;a=b\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n');
  const next = b('GET /next');
  const all = Buffer.concat([body, next]);
  for (let split = 1; split < all.length; split++) {
    const data: string[] = [];
    const d = new ChunkedDecoder(1024, (buf, s, e) => data.push(buf.toString('latin1', s, e)));
    const a = all.subarray(0, split);
    const r1 = d.feed(a, 0, a.length);
    let end: number;
    if (r1 === CHUNK_MORE) {
      const rest = all.subarray(split);
      const r2 = d.feed(rest, 0, rest.length);
      assert.ok(r2 >= 0, `split ${split}`);
      end = split + r2;
    } else {
      assert.ok(r1 >= 0);
      end = r1;
    }
    assert.equal(end, body.length, `split ${split}`);
    assert.equal(data.join(''), 'Wikipedia in\r\n\r\nchunks.');
    assert.deepEqual(d.trailerPairs(), [['x-t', '1']]);
  }
  for (const bad of [
    'g\r\n',
    '\r\n',
    '5\nhello',
    '3\r\nabcX\r\n',
    '1 \r\na\r\n0\r\n\r\n',
    '12345678901234\r\n',
  ]) {
    const d = new ChunkedDecoder(1024);
    assert.equal(d.feed(b(bad), 0, bad.length), CHUNK_ERROR, JSON.stringify(bad));
  }
});

/** Deterministic PRNG (mulberry32) so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEEDS = [
  'POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc',
  'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  'GET /x HTTP/1.0\r\nConnection: keep-alive\r\nX-Y: z\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n',
];
const INTERESTING = [
  '\r',
  '\n',
  '\r\n',
  ' ',
  '\t',
  ':',
  ',',
  '\x00',
  '\x7f',
  '\xff',
  '0',
  'chunked',
  'Content-Length: 1\r\n',
  'Transfer-Encoding: chunked\r\n',
  '\r\n ',
];

test('fuzz: mutated heads never throw, stay bounded, and never yield ambiguous framing', () => {
  const rand = rng(0x5eed);
  const deadline = Date.now() + 3000;
  let n = 0;
  for (; n < 20_000 && Date.now() < deadline; n++) {
    let s = SEEDS[Math.floor(rand() * SEEDS.length)];
    const edits = 1 + Math.floor(rand() * 4);
    for (let e = 0; e < edits; e++) {
      const pos = Math.floor(rand() * (s.length + 1));
      const op = rand();
      if (op < 0.35) s = s.slice(0, pos) + s.slice(pos + 1);
      else if (op < 0.7)
        s = s.slice(0, pos) + INTERESTING[Math.floor(rand() * INTERESTING.length)] + s.slice(pos);
      else s = s.slice(0, pos) + String.fromCharCode(Math.floor(rand() * 256)) + s.slice(pos + 1);
    }
    const buf = b(s);
    const r = parseRequest(buf, 0, 256);
    if (r === null) {
      assert.ok(buf.length <= 256, 'incomplete only within the bound');
      continue;
    }
    if (r instanceof HeadError) {
      assert.ok([400, 431, 501, 505].includes(r.status));
      continue;
    }
    // Accepted: framing must be unambiguous.
    assert.ok(r.headBytes <= 256);
    assert.ok(!(r.te && r.contentLength !== -1), `CL+TE accepted: ${JSON.stringify(s)}`);
    for (let i = 0; i < r.values.length; i++) {
      assert.ok(!/[\r\n\0]/.test(r.values[i]), `CR/LF/NUL in a value: ${JSON.stringify(s)}`);
      assert.ok(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(r.names[i]), `bad name: ${JSON.stringify(s)}`);
    }
    if (r.bodyKind === BODY_CHUNKED) {
      const d = new ChunkedDecoder(256);
      const rest = buf.subarray(r.headBytes);
      const end = d.feed(rest, 0, rest.length);
      assert.ok(end === CHUNK_MORE || end === CHUNK_ERROR || (end > 0 && end <= rest.length));
    }
  }
  assert.ok(n > 1000, `ran ${n} cases`);
});

test('fuzz: random bytes into the chunked decoder never throw and never overrun', () => {
  const rand = rng(42);
  const alphabet = '0123456789abcdefXYZ;=\r\n \t:';
  for (let n = 0; n < 5000; n++) {
    let s = '';
    const len = Math.floor(rand() * 64);
    for (let i = 0; i < len; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
    const buf = b(s);
    const d = new ChunkedDecoder(32, () => {});
    const end = d.feed(buf, 0, buf.length);
    assert.ok(end === CHUNK_MORE || end === CHUNK_ERROR || (end > 0 && end <= buf.length));
  }
});
