// RFC 9113 §8.1.1, §8.2, §8.3 request validation in the frame-level proxy: malformed
// requests are a stream error PROTOCOL_ERROR on their stream only, with one `bad_request`
// access record, and never reach a backend; the connection keeps serving. Raw frames from
// a loopback client (our codec), a real node:http2 backend counting what reaches it, and
// raw backends answering malformed responses to real node:http2 and grpc-js clients.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  ErrorCode,
  encodeFrame,
  Flag,
  FrameType,
  HpackDecoder,
  HpackEncoder,
  PREFACE,
  parseFrames,
} from '../src/codec/http2/index.js';
import type { AccessRecord } from '../src/core/types.js';
import { client, type Harness, startHarness, unary, yamlFor } from './h2-harness.js';
import { rawH2Server } from './helpers/raw-h2-server.js';

type After = { after(fn: () => Promise<void> | void): void };
type Pairs = [string, string][];

async function waitFor(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Seen {
  path: string;
  completed: boolean;
  rstCode: number | undefined;
}

/** A node:http2 backend: records every stream that reaches it, answers 200 "ok" at request end. */
async function backend(t: After): Promise<{ address: string; seen: Seen[] }> {
  const server = http2.createServer();
  const seen: Seen[] = [];
  const sessions = new Set<http2.Http2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('error', () => {});
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (s, h) => {
    const rec: Seen = { path: String(h[':path']), completed: false, rstCode: undefined };
    seen.push(rec);
    s.on('error', () => {});
    s.on('close', () => {
      rec.rstCode = s.rstCode;
    });
    s.resume();
    s.on('end', () => {
      // node ends the readable side of a reset stream too: that is not a complete request.
      if (s.aborted || s.closed || s.destroyed) return;
      rec.completed = true;
      s.respond({ ':status': 200, 'content-type': 'text/plain' });
      s.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    for (const s of sessions) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, seen };
}

interface StreamView {
  headers: Pairs[];
  data: Buffer[];
  ended: boolean;
  rst: number | undefined;
}

/** A raw HTTP/2 client: sends exactly the header fields it is given, in order. */
async function rawClient(t: After, port: number) {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => {});
  t.after(() => {
    sock.destroy();
  });
  await new Promise<void>((r) => sock.on('connect', () => r()));
  const streams = new Map<number, StreamView>();
  const view = (id: number): StreamView => {
    let v = streams.get(id);
    if (v === undefined) {
      v = { headers: [], data: [], ended: false, rst: undefined };
      streams.set(id, v);
    }
    return v;
  };
  const dec = new HpackDecoder();
  let goaway: number | undefined;
  let rest = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => {
    const r = parseFrames(Buffer.concat([rest, d]));
    rest = Buffer.from(r.rest);
    for (const f of r.frames) {
      if (f.type === FrameType.HEADERS) {
        assert.equal(dec.decode(f.payload, 0, f.payload.length), 0);
        const fields: Pairs = [];
        for (let i = 0; i < dec.count; i++) fields.push([dec.names[i], dec.values[i]]);
        const v = view(f.streamId);
        v.headers.push(fields);
        if (f.flags & Flag.END_STREAM) v.ended = true;
      } else if (f.type === FrameType.DATA) {
        const v = view(f.streamId);
        v.data.push(Buffer.from(f.payload));
        if (f.flags & Flag.END_STREAM) v.ended = true;
      } else if (f.type === FrameType.RST_STREAM) {
        view(f.streamId).rst = f.payload.readUInt32BE(0);
      } else if (f.type === FrameType.GOAWAY) {
        goaway = f.payload.readUInt32BE(4);
      } else if (f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0) {
        sock.write(encodeFrame(FrameType.SETTINGS, Flag.ACK, 0));
      }
    }
  });
  sock.write(PREFACE);
  sock.write(encodeFrame(FrameType.SETTINGS, 0, 0));
  const enc = new HpackEncoder();
  let nextId = 1;
  const c = {
    sock,
    streams,
    view,
    goaway: () => goaway,
    /** HEADERS with these fields (in this order, as given); returns the stream id. */
    send(fields: Pairs, end = true, id = 0): number {
      const sid = id === 0 ? nextId : id;
      if (id === 0) nextId += 2;
      const n = enc.encodePairs(fields);
      const flags = Flag.END_HEADERS | (end ? Flag.END_STREAM : 0);
      sock.write(encodeFrame(FrameType.HEADERS, flags, sid, Buffer.from(enc.buf.subarray(0, n))));
      return sid;
    },
    data(id: number, b: Buffer, end: boolean): void {
      sock.write(encodeFrame(FrameType.DATA, end ? Flag.END_STREAM : 0, id, b));
    },
    /** Waits for RST_STREAM on `id` and returns its code. */
    async reset(id: number): Promise<number> {
      await waitFor(() => view(id).rst !== undefined || goaway !== undefined, `RST_STREAM on ${id}`);
      assert.equal(goaway, undefined, 'the connection must stay up');
      return view(id).rst!;
    },
    /** Waits for the whole response on `id`. */
    async response(id: number, resetAfter = false): Promise<{ status: string; fields: Pairs; body: string }> {
      const v = view(id);
      await waitFor(() => v.ended || v.rst !== undefined, `response on ${id}`);
      if (!resetAfter) assert.equal(v.rst, undefined, `stream ${id} was reset (${v.rst})`);
      assert.ok(v.ended, `stream ${id} ended`);
      const fields = v.headers[0];
      const status = fields.find(([n]) => n === ':status')?.[1] ?? '';
      return { status, fields, body: Buffer.concat(v.data).toString() };
    },
    /** A valid request on this connection, right now, is proxied and answered. */
    async ok(path: string): Promise<void> {
      const id = c.send(req(path, [['te', 'trailers']]));
      const r = await c.response(id);
      assert.equal(r.status, '200');
      assert.equal(r.body, 'ok');
    },
  };
  return c;
}

function req(path: string, extra: Pairs = []): Pairs {
  return [[':method', 'POST'], [':scheme', 'http'], [':authority', 'gw.test'], [':path', path], ...extra];
}

async function setup(
  t: After,
  listener = '',
): Promise<{ h: Harness; seen: Seen[]; c: Awaited<ReturnType<typeof rawClient>> }> {
  const b = await backend(t);
  const h = await startHarness(yamlFor([{ name: 'b1', address: b.address }], { listener }));
  t.after(() => h.stop());
  const c = await rawClient(t, h.port);
  await c.ok('/warm'); // the upstream connection is open: later HEADERS would go out at once
  return { h, seen: b.seen, c };
}

/**
 * Sends `fields` as a request expected to be malformed: RST_STREAM(PROTOCOL_ERROR) on its
 * stream, one bad_request record whose detail matches `detail`, nothing at the backend,
 * and a valid request right after on the same connection succeeds.
 */
async function rejected(
  s: Awaited<ReturnType<typeof setup>>,
  fields: Pairs,
  detail: RegExp,
  opts: { end?: boolean } = {},
): Promise<void> {
  const { h, seen, c } = s;
  const before = seen.length;
  const recs = h.records.length;
  const id = c.send(fields, opts.end ?? true);
  assert.equal(await c.reset(id), ErrorCode.PROTOCOL_ERROR, `stream ${id}: ${JSON.stringify(fields)}`);
  await c.ok(`/after-${id}`);
  // The backend saw the follow-up request only.
  assert.deepEqual(
    seen.slice(before).map((x) => x.path),
    [`/after-${id}`],
  );
  const mine = h.records.slice(recs).filter((r) => r.outcome === 'bad_request');
  assert.equal(mine.length, 1, `one bad_request record for ${JSON.stringify(fields)}`);
  assert.match(mine[0].detail ?? '', detail);
  assert.equal(mine[0].server, undefined);
}

test('field names: upper case, characters outside tchar, empty → PROTOCOL_ERROR on the stream', async (t) => {
  const s = await setup(t);
  await rejected(s, req('/n1', [['X-Upper', '1']]), /upper-case character in field name "X-Upper"/);
  // The same name again is now an index into the dynamic table: still rejected.
  await rejected(s, req('/n2', [['X-Upper', '1']]), /upper-case character in field name "X-Upper"/);
  await rejected(s, req('/n3', [['x-a b', '1']]), /outside RFC 9110 tchar in field name "x-a b"/);
  await rejected(s, req('/n4', [['x:y', '1']]), /outside RFC 9110 tchar/);
  await rejected(s, req('/n5', [['x-\u00e9', '1']]), /outside RFC 9110 tchar/);
  await rejected(s, req('/n6', [['', 'v']]), /empty field name/);
  // Every lower-case tchar is a valid name.
  await s.c.ok('/fine');
  const id = s.c.send(req('/tchar', [["x-!#$%&'*+-.^_`|~09az", 'v']]));
  assert.equal((await s.c.response(id)).status, '200');
});

test('field values: NUL, CR, LF, leading or trailing SP/HTAB → PROTOCOL_ERROR', async (t) => {
  const s = await setup(t);
  await rejected(s, req('/v1', [['x-v', 'a\nb']]), /NUL, CR or LF in field value "x-v"/);
  await rejected(s, req('/v2', [['x-v', 'a\rb']]), /NUL, CR or LF/);
  await rejected(s, req('/v3', [['x-v', 'a\0b']]), /NUL, CR or LF/);
  // Long enough to be Huffman-coded: the control octet is found while decoding.
  await rejected(s, req('/v4', [['x-v', `${'a'.repeat(40)}\n`]]), /NUL, CR or LF/);
  await rejected(s, req('/v5', [['x-v', ' lead']]), /leading or trailing whitespace/);
  await rejected(s, req('/v6', [['x-v', 'trail\t']]), /leading or trailing whitespace/);
  await rejected(s, req('/v7', [['user-agent', `${'b'.repeat(30)} `]]), /leading or trailing whitespace/);
  // Inner whitespace and an empty value are fine.
  const id = s.c.send(
    req('/vok', [
      ['x-v', 'a b\tc'],
      ['x-empty', ''],
    ]),
  );
  assert.equal((await s.c.response(id)).status, '200');
});

test('pseudo-header fields: unknown, :status, duplicate, after a regular field, missing, empty :path', async (t) => {
  const s = await setup(t);
  await rejected(s, req('/p1', [[':foo', 'x']]), /unknown pseudo-header field ":foo"/);
  await rejected(s, req('/p2', [[':protocol', 'websocket']]), /unknown pseudo-header field ":protocol"/);
  await rejected(s, req('/p3', [[':status', '200']]), /":status" in a request/);
  await rejected(s, req('/p4', [[':path', '/p4-again']]), /duplicate pseudo-header field ":path"/);
  await rejected(
    s,
    [
      [':method', 'GET'],
      [':scheme', 'http'],
      ['x-a', '1'],
      [':path', '/p5'],
    ],
    /pseudo-header field after a regular field ":path"/,
  );
  await rejected(
    s,
    [
      [':scheme', 'http'],
      [':path', '/p6'],
    ],
    /missing ":method", ":scheme" or ":path"/,
  );
  await rejected(
    s,
    [
      [':method', 'GET'],
      [':path', '/p7'],
    ],
    /missing/,
  );
  await rejected(
    s,
    [
      [':method', 'GET'],
      [':scheme', 'http'],
    ],
    /missing/,
  );
  await rejected(
    s,
    [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', ''],
    ],
    /empty ":path"/,
  );
});

test('pseudo-header fields in request trailers → PROTOCOL_ERROR, the backend stream is cancelled', async (t) => {
  const s = await setup(t);
  const { h, seen, c } = s;
  const recs = h.records.length;
  const id = c.send(req('/tr1'), false);
  await waitFor(() => seen.some((x) => x.path === '/tr1'), 'the request at the backend');
  c.data(id, Buffer.from('body'), false);
  c.send([[':path', '/x']], true, id);
  assert.equal(await c.reset(id), ErrorCode.PROTOCOL_ERROR);
  const at = seen.find((x) => x.path === '/tr1')!;
  await waitFor(() => at.rstCode !== undefined, 'the backend stream closed');
  assert.equal(at.completed, false, 'the backend never got a complete request');
  assert.equal(at.rstCode, ErrorCode.CANCEL);
  const mine = h.records.slice(recs).filter((r) => r.outcome === 'bad_request');
  assert.equal(mine.length, 1);
  assert.match(mine[0].detail ?? '', /pseudo-header field in trailers/);
  // Malformed trailer fields too; valid trailers still pass.
  const id2 = c.send(req('/tr2'), false);
  c.send([['X-Trailer', '1']], true, id2);
  assert.equal(await c.reset(id2), ErrorCode.PROTOCOL_ERROR);
  const id3 = c.send(req('/tr3'), false);
  c.data(id3, Buffer.from('body'), false);
  c.send([['x-trailer', '1']], true, id3);
  assert.equal((await c.response(id3)).status, '200');
  await c.ok('/after');
});

test('connection-specific fields and te other than "trailers" → PROTOCOL_ERROR', async (t) => {
  const s = await setup(t);
  await rejected(s, req('/c1', [['connection', 'close']]), /connection-specific field "connection"/);
  await rejected(s, req('/c2', [['keep-alive', 'timeout=5']]), /connection-specific field "keep-alive"/);
  await rejected(s, req('/c3', [['proxy-connection', 'x']]), /"proxy-connection"/);
  await rejected(s, req('/c4', [['transfer-encoding', 'chunked']]), /"transfer-encoding"/);
  await rejected(s, req('/c5', [['upgrade', 'h2c']]), /"upgrade"/);
  await rejected(s, req('/c6', [['te', 'gzip']]), /"te" field with a value other than "trailers"/);
  await rejected(s, req('/c7', [['te', 'trailers, deflate']]), /"te" field/);
  // te: trailers is fine (every `ok` request carries it).
  await s.c.ok('/c8');
});

test('content-length that the DATA contradicts → PROTOCOL_ERROR, the backend stream reset', async (t) => {
  const s = await setup(t);
  const { h, seen, c } = s;
  // Announced but no DATA at all: rejected before anything reaches a backend.
  await rejected(s, req('/l1', [['content-length', '5']]), /"content-length: 5" on a request without DATA/);
  await rejected(s, req('/l2', [['content-length', '12x']]), /invalid "content-length"/);
  await rejected(
    s,
    req('/l3', [
      ['content-length', '1'],
      ['content-length', '1'],
    ]),
    /invalid "content-length"/,
  );
  // Fewer bytes than announced at END_STREAM, and more than announced before it: the
  // request already reached the backend, whose stream is cancelled, never completed.
  for (const [path, body, end, why] of [
    ['/l4', 'abc', true, /DATA \(3 bytes\) does not match "content-length: 5"/],
    ['/l5', 'abcdefg', false, /DATA \(7\+ bytes\) does not match "content-length: 5"/],
  ] as const) {
    const recs = h.records.length;
    const id = c.send(req(path, [['content-length', '5']]), false);
    await waitFor(() => seen.some((x) => x.path === path), `${path} at the backend`);
    c.data(id, Buffer.from(body), end);
    assert.equal(await c.reset(id), ErrorCode.PROTOCOL_ERROR);
    const at = seen.find((x) => x.path === path)!;
    await waitFor(() => at.rstCode !== undefined, 'the backend stream closed');
    assert.equal(at.completed, false);
    assert.equal(at.rstCode, ErrorCode.CANCEL);
    const mine = h.records.slice(recs).filter((r) => r.outcome === 'bad_request');
    assert.equal(mine.length, 1);
    assert.match(mine[0].detail ?? '', why);
    await c.ok(`/after${path}`);
  }
  // A body that matches, in two frames, passes.
  const id = c.send(req('/l6', [['content-length', '5']]), false);
  c.data(id, Buffer.from('ab'), false);
  c.data(id, Buffer.from('cde'), true);
  assert.equal((await c.response(id)).status, '200');
  assert.equal(seen.find((x) => x.path === '/l6')?.completed, true);
});

test('CONNECT: a well-formed one gets 405, a malformed one PROTOCOL_ERROR; neither reaches a backend', async (t) => {
  const s = await setup(t);
  const { h, seen, c } = s;
  const before = seen.length;
  const recs = h.records.length;
  const id = c.send(
    [
      [':method', 'CONNECT'],
      [':authority', 'example.com:443'],
    ],
    false,
  );
  const r = await c.response(id, true);
  assert.equal(r.status, '405');
  assert.equal(r.body, 'CONNECT not supported\n');
  // The client was still sending: the complete reply is followed by RST_STREAM(NO_ERROR).
  await waitFor(() => c.view(id).rst !== undefined, 'RST_STREAM after the reply');
  assert.equal(c.view(id).rst, ErrorCode.NO_ERROR);
  const rec = h.records.slice(recs).find((x) => x.method === 'CONNECT') as AccessRecord;
  assert.equal(rec.outcome, 'bad_request');
  assert.equal(rec.status, 405);
  assert.equal(seen.length, before);
  await c.ok('/after-connect');
  await rejected(
    s,
    [
      [':method', 'CONNECT'],
      [':authority', 'example.com:443'],
      [':path', '/'],
    ],
    /CONNECT with ":scheme" or ":path"/,
  );
  await rejected(
    s,
    [
      [':method', 'CONNECT'],
      [':scheme', 'https'],
      [':authority', 'example.com:443'],
    ],
    /CONNECT with ":scheme" or ":path"/,
  );
  await rejected(s, [[':method', 'CONNECT']], /CONNECT without ":authority"/);
});

test('many malformed streams on one connection: each reset alone, the connection and the backend untouched', async (t) => {
  const s = await setup(t);
  const { seen, c } = s;
  const before = seen.length;
  const ids: number[] = [];
  for (let i = 0; i < 50; i++) ids.push(c.send(req(`/m${i}`, [['X-Bad', String(i)]])));
  const good = c.send(req('/m-good'));
  for (const id of ids) assert.equal(await c.reset(id), ErrorCode.PROTOCOL_ERROR);
  assert.equal((await c.response(good)).status, '200');
  assert.deepEqual(
    seen.slice(before).map((x) => x.path),
    ['/m-good'],
  );
});

test('malformed streams count against h2_resets_per_second (MadeYouReset): the abuser is cut', async (t) => {
  const s = await setup(t, '    limits: { h2_resets_per_second: 20 }');
  const { h, seen, c } = s;
  const before = seen.length;
  // Each stream reaches the backend (its HEADERS go out at once), then its DATA overruns
  // its content-length and the gateway resets it: a reset the client provoked.
  // Sent in one go: well inside one second whatever the machine's load.
  for (let i = 0; i < 60; i++) {
    const id = c.send(req(`/r${i}`, [['content-length', '1']]), false);
    c.data(id, Buffer.from('xx'), false);
  }
  await waitFor(() => c.goaway() !== undefined, 'GOAWAY');
  assert.equal(c.goaway(), ErrorCode.ENHANCE_YOUR_CALM);
  assert.ok(seen.length - before <= 30, `the backend saw ${seen.length - before} streams`);
  // Other clients are served.
  const other = await rawClient(t, h.port);
  await other.ok('/other');
});

test('HPACK decoder: a literal value remembered per name is reused only for identical octets, verdict included', () => {
  // Literal without indexing, static name :path (index 4), raw or Huffman-coded value.
  const lit = (v: string, huff: boolean): Buffer => {
    if (!huff) return Buffer.concat([Buffer.from([0x04, v.length]), Buffer.from(v, 'latin1')]);
    const e = new HpackEncoder();
    // A one-field block from our encoder is a literal with incremental indexing: take its
    // value string (Huffman-coded when shorter) and put it behind a 0x04 prefix.
    const n = e.encodePairs([['x-v', v]]);
    const block = e.buf.subarray(0, n);
    return Buffer.concat([Buffer.from([0x04]), block.subarray(1 + 1 + 3)]);
  };
  const d = new HpackDecoder();
  const one = (b: Buffer): [string, number] => {
    assert.equal(d.decode(b, 0, b.length), 0);
    return [d.values[0], d.fieldError];
  };
  const long = '/switchyard.test.TestService/Unary';
  assert.deepEqual(one(lit(long, true)), [long, 0]);
  assert.deepEqual(one(lit(long, true)), [long, 0]);
  assert.deepEqual(one(lit(long, false)), [long, 0]);
  assert.deepEqual(one(lit('/b', false)), ['/b', 0]);
  assert.deepEqual(one(lit('/c', false)), ['/c', 0]);
  assert.deepEqual(one(lit('/bad\n', false)), ['/bad\n', 5]);
  assert.deepEqual(one(lit('/bad\n', false)), ['/bad\n', 5]);
  assert.deepEqual(one(lit('/good', false)), ['/good', 0]);
  assert.deepEqual(one(lit(`${long}\r`, true)), [`${long}\r`, 5]);
  assert.deepEqual(one(lit(`${long}\r`, true)), [`${long}\r`, 5]);
  assert.deepEqual(one(lit(`${long}`, true)), [long, 0]);
});

// ---- the backend side

/**
 * A raw HTTP/2 backend: answers each request with the fields `answer(path)` gives (headers,
 * a DATA payload, trailers), and counts the RST_STREAM codes it receives.
 */
async function rawBackend(
  t: After,
  answer: (path: string) => { headers: Pairs; data?: Buffer; trailers?: Pairs },
): Promise<{ address: string; resets: number[]; requests: number }> {
  const st = { address: '', resets: [] as number[], requests: 0 };
  const server = await rawH2Server(t, (sock) => {
    const dec = new HpackDecoder();
    const enc = new HpackEncoder();
    return (f) => {
      if (f.type === FrameType.RST_STREAM) st.resets.push(f.payload.readUInt32BE(0));
      if (f.type !== FrameType.HEADERS) return;
      dec.decode(f.payload, 0, f.payload.length);
      let path = '';
      for (let i = 0; i < dec.count; i++) if (dec.names[i] === ':path') path = dec.values[i];
      st.requests++;
      const a = answer(path);
      const block = (fields: Pairs, end: boolean): Buffer => {
        const n = enc.encodePairs(fields);
        const flags = Flag.END_HEADERS | (end ? Flag.END_STREAM : 0);
        return encodeFrame(FrameType.HEADERS, flags, f.streamId, Buffer.from(enc.buf.subarray(0, n)));
      };
      const last = a.data === undefined && a.trailers === undefined;
      sock.write(block(a.headers, last));
      if (a.data !== undefined)
        sock.write(encodeFrame(FrameType.DATA, a.trailers ? 0 : Flag.END_STREAM, f.streamId, a.data));
      if (a.trailers !== undefined) sock.write(block(a.trailers, true));
    };
  });
  st.address = server.address;
  return st;
}

/** One gRPC message frame (uncompressed) holding a switchyard.test.Msg with text = `s`. */
function grpcMsg(s: string): Buffer {
  const text = Buffer.from(s);
  const body = Buffer.concat([Buffer.from([0x12, text.length]), text]); // field 2 (text), length-delimited
  const frame = Buffer.alloc(5);
  frame.writeUInt32BE(body.length, 1);
  return Buffer.concat([frame, body]);
}

function h2get(t: After, port: number, path: string): Promise<{ status: number; body: string }> {
  const c = http2.connect(`http://127.0.0.1:${port}`);
  c.on('error', () => {});
  t.after(() => c.destroy());
  return new Promise((resolve, reject) => {
    const r = c.request({ ':path': path });
    let status = 0;
    const chunks: Buffer[] = [];
    r.on('response', (h) => {
      status = Number(h[':status']);
    });
    r.on('data', (d: Buffer) => chunks.push(d));
    r.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString() }));
    r.on('error', reject);
  });
}

test('a backend answering malformed response fields: 502 (h2) / 14 (gRPC), its stream reset', async (t) => {
  const grpcOk: Pairs = [
    [':status', '200'],
    ['content-type', 'application/grpc'],
  ];
  const b = await rawBackend(t, (path) => {
    switch (path) {
      case '/upper':
        return {
          headers: [
            [':status', '200'],
            ['X-Upper', '1'],
          ],
          data: Buffer.from('no'),
        };
      case '/value':
        return {
          headers: [
            [':status', '200'],
            ['x-v', 'a\r\nb'],
          ],
          data: Buffer.from('no'),
        };
      case '/nostatus':
        return { headers: [['x-v', '1']], data: Buffer.from('no') };
      case '/fine':
        return { headers: [[':status', '200']], data: Buffer.from('fine') };
      case '/switchyard.test.TestService/Unary':
        return {
          headers: [...grpcOk, ['X-Meta', '1']],
          data: grpcMsg('x'),
          trailers: [['grpc-status', '0']],
        };
      default:
        // gRPC with good headers and a malformed trailer: the response had started.
        return {
          headers: grpcOk,
          data: grpcMsg('x'),
          trailers: [
            ['grpc-status', '0'],
            ['Grpc-Message', 'x'],
          ],
        };
    }
  });
  const h = await startHarness(yamlFor([{ name: 'raw', address: b.address }]));
  t.after(() => h.stop());
  for (const [path, why] of [
    ['/upper', /server raw sent a malformed response: upper-case character in field name "X-Upper"/],
    ['/value', /NUL, CR or LF in field value "x-v"/],
    ['/nostatus', /response without ":status"/],
  ] as const) {
    const resets = b.resets.length;
    const r = await h2get(t, h.port, path);
    assert.equal(r.status, 502, path);
    const rec = h.records.find((x) => x.path === path)!;
    assert.equal(rec.outcome, 'server_reset');
    assert.match(rec.detail ?? '', why);
    await waitFor(
      () => b.resets.slice(resets).includes(ErrorCode.PROTOCOL_ERROR),
      `${path}: the backend stream reset (PROTOCOL_ERROR)`,
    );
  }
  assert.deepEqual(await h2get(t, h.port, '/fine'), { status: 200, body: 'fine' });

  const c = client(h.port);
  t.after(() => c.close());
  const res = await unary(c, { text: 'x' });
  assert.equal(res.status.code, grpc.status.UNAVAILABLE);
  assert.match(res.status.details, /malformed response: upper-case character in field name "X-Meta"/);
  const rec = h.records.find((x) => x.path === '/switchyard.test.TestService/Unary')!;
  assert.equal(rec.grpc_status, 14);
  assert.equal(rec.outcome, 'server_reset');
  // Headers and a message went through, then a malformed trailer: trailers with 14.
  const got: string[] = [];
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    const call = c.ServerStream({ count: 1, size: 0, delayMs: 0 });
    call.on('data', (m: { text: string }) => got.push(m.text));
    call.on('error', () => {});
    call.on('status', resolve);
  });
  assert.deepEqual(got, ['x']);
  assert.equal(status.code, grpc.status.UNAVAILABLE);
  assert.match(status.details, /upper-case character in field name "Grpc-Message"/);
  const rec2 = h.records.find((x) => x.path === '/switchyard.test.TestService/ServerStream')!;
  assert.equal(rec2.outcome, 'server_reset');
});

test('PRIORITY: validated then ignored; a bad length or a self-dependency resets that stream only', async (t) => {
  const s = await setup(t);
  const { c, seen } = s;
  const prio = (id: number, dep: number, len = 5): Buffer => {
    const p = Buffer.alloc(len);
    if (len >= 4) p.writeUInt32BE(dep, 0);
    return encodeFrame(FrameType.PRIORITY, 0, id, p);
  };
  // A well-formed PRIORITY on an open stream changes nothing: the request completes.
  const id = c.send(req('/prio'), false);
  c.sock.write(prio(id, 0));
  c.data(id, Buffer.from('x'), true);
  assert.equal((await c.response(id)).status, '200');
  // Wrong length → FRAME_SIZE_ERROR; depending on itself → PROTOCOL_ERROR (RFC 9113 §6.3, §5.3.1).
  const a = c.send(req('/a'), false);
  c.sock.write(prio(a, 0, 4));
  assert.equal(await c.reset(a), ErrorCode.FRAME_SIZE_ERROR);
  const b = c.send(req('/b'), false);
  c.sock.write(prio(b, b));
  assert.equal(await c.reset(b), ErrorCode.PROTOCOL_ERROR);
  await c.ok('/after');
  assert.equal(c.goaway(), undefined);
  const done = seen.filter((x) => x.completed).map((x) => x.path);
  assert.deepEqual(done, ['/warm', '/prio', '/after']);
});
