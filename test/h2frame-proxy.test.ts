// The frame-level HTTP/2 proxy (src/proxy/h2frame) on what the shared h2/grpc suites do not
// reach: request-direction flow control, peers that break flow control or flood control
// frames, the stream limit, graceful drain, and header blocks split over CONTINUATION both
// ways. Real node:http2 backends and clients, and a raw-socket client speaking our codec.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import {
  ErrorCode,
  encodeFrame,
  Flag,
  FrameType,
  HpackEncoder,
  type ParsedFrame,
  PREFACE,
  parseFrames,
} from '../src/codec/http2/index.js';
import { startHarness, yamlFor } from './h2-harness.js';
import { waitFor } from './helpers/wait.js';

type After = { after(fn: () => Promise<void> | void): void };

async function backend(
  t: After,
  onStream: (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders) => void,
): Promise<{ address: string; sessions: http2.Http2Session[] }> {
  const server = http2.createServer({ maxHeaderListSize: 1 << 20 } as http2.ServerOptions);
  const sessions: http2.Http2Session[] = [];
  server.on('session', (s) => {
    sessions.push(s);
    s.on('error', () => {});
  });
  server.on('stream', (s, h) => {
    s.on('error', () => {});
    onStream(s, h);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sessions) s.destroy();
    server.close();
  });
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, sessions };
}

async function gateway(
  t: After,
  address: string,
  listener = '',
  opts: Parameters<typeof startHarness>[1] = {},
) {
  const h = await startHarness(yamlFor([{ name: 'b1', address }], { listener }), opts);
  t.after(() => h.stop());
  return h;
}

/** A raw HTTP/2 client: writes frames, collects every frame the gateway sends. */
async function rawClient(t: After, port: number) {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => {});
  t.after(() => {
    sock.destroy();
  });
  await new Promise<void>((r) => sock.on('connect', () => r()));
  const frames: ParsedFrame[] = [];
  let rest = Buffer.alloc(0);
  let closed = false;
  sock.on('data', (d: Buffer) => {
    const r = parseFrames(Buffer.concat([rest, d]));
    rest = Buffer.from(r.rest);
    for (const f of r.frames) frames.push({ ...f, payload: Buffer.from(f.payload) });
  });
  sock.on('close', () => {
    closed = true;
  });
  sock.write(PREFACE);
  sock.write(encodeFrame(FrameType.SETTINGS, 0, 0));
  const enc = new HpackEncoder();
  return {
    sock,
    frames,
    isClosed: () => closed,
    headers(id: number, h: Record<string, string>, end: boolean) {
      const n = enc.encode(h);
      const flags = Flag.END_HEADERS | (end ? Flag.END_STREAM : 0);
      sock.write(encodeFrame(FrameType.HEADERS, flags, id, Buffer.from(enc.buf.subarray(0, n))));
    },
    goaway: () => frames.find((f) => f.type === FrameType.GOAWAY),
    rst: (id: number) => frames.find((f) => f.type === FrameType.RST_STREAM && f.streamId === id),
  };
}

const GET = { ':method': 'POST', ':scheme': 'http', ':authority': 'x', ':path': '/up' };

test('request flow control: a backend that reads nothing stops the client after about one window', async (t) => {
  let got = 0;
  let stream: http2.ServerHttp2Stream | undefined;
  const b = await backend(t, (s) => {
    stream = s;
    s.pause(); // never reads: its own 64 KiB window fills
    s.on('data', (c: Buffer) => {
      got += c.length;
    });
  });
  const h = await gateway(t, b.address);
  const c = http2.connect(`http://127.0.0.1:${h.port}`);
  c.on('error', () => {});
  t.after(() => c.destroy());
  const req = c.request({ ':method': 'POST', ':path': '/up' }, { endStream: false });
  req.on('error', () => {});
  const chunk = Buffer.alloc(64 * 1024, 1);
  for (let i = 0; i < 256; i++) req.write(chunk); // 16 MiB offered
  await waitFor(() => stream !== undefined);
  const socket = c.socket as net.Socket;
  let last = -1;
  // Wait until the client's socket stops moving bytes (bounded).
  for (let i = 0; i < 50 && socket.bytesWritten !== last; i++) {
    last = socket.bytesWritten;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(
    socket.bytesWritten < 3 << 20,
    `client sent ${socket.bytesWritten} bytes to a backend that reads nothing`,
  );
  // Once the backend reads, everything flows and arrives.
  const done = new Promise<void>((r) => stream!.on('end', () => r()));
  stream!.resume();
  req.end();
  await done;
  assert.equal(got, 16 << 20);
  stream!.respond({ ':status': 200 });
  stream!.end();
});

test('a client sending past its stream window gets RST_STREAM(FLOW_CONTROL_ERROR)', async (t) => {
  const b = await backend(t, (s) => s.pause());
  const h = await gateway(t, b.address);
  const c = await rawClient(t, h.port);
  c.headers(1, GET, false);
  const data = Buffer.alloc(16_384, 2);
  // 1 MiB stream window advertised: 80 frames of 16 KiB is 1.25 MiB, sent without waiting.
  for (let i = 0; i < 80; i++) c.sock.write(encodeFrame(FrameType.DATA, 0, 1, data));
  await waitFor(() => c.rst(1) !== undefined || c.goaway() !== undefined);
  const rst = c.rst(1);
  assert.ok(rst, 'stream reset');
  assert.equal(rst.payload.readUInt32BE(0), ErrorCode.FLOW_CONTROL_ERROR);
  await waitFor(() => h.records.length === 1);
  assert.equal(h.records[0].outcome, 'bad_request');
});

test('PING flood: GOAWAY(ENHANCE_YOUR_CALM) and the connection is closed; others are served', async (t) => {
  const b = await backend(t, (s) => {
    s.respond({ ':status': 200 });
    s.end('ok');
  });
  const h = await gateway(t, b.address);
  const c = await rawClient(t, h.port);
  const ping = encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8));
  for (let i = 0; i < 3000 && !c.isClosed(); i++) {
    c.sock.write(ping);
    if (i % 200 === 199) await new Promise((r) => setImmediate(r));
  }
  await waitFor(() => c.isClosed());
  assert.equal(c.goaway()?.payload.readUInt32BE(4), ErrorCode.ENHANCE_YOUR_CALM);
  const acks = c.frames.filter((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0).length;
  assert.ok(acks <= 1000, `${acks} PING acks`);
  const ok = http2.connect(`http://127.0.0.1:${h.port}`);
  t.after(() => ok.destroy());
  const status = await new Promise<number>((r) => {
    const req = ok.request({ ':path': '/' });
    req.on('response', (x) => r(Number(x[':status'])));
    req.resume();
  });
  assert.equal(status, 200);
});

test('streams over h2_streams are refused (REFUSED_STREAM) and never reach the backend', async (t) => {
  let calls = 0;
  const held: http2.ServerHttp2Stream[] = [];
  const b = await backend(t, (s) => {
    calls++;
    held.push(s);
  });
  const h = await gateway(t, b.address, '    limits: { h2_streams: 3 }');
  const c = await rawClient(t, h.port);
  for (let i = 0; i < 5; i++) c.headers(2 * i + 1, { ...GET, ':method': 'GET' }, true);
  await waitFor(() => c.rst(7) !== undefined && c.rst(9) !== undefined && calls === 3);
  assert.equal(c.rst(7)?.payload.readUInt32BE(0), ErrorCode.REFUSED_STREAM);
  assert.equal(c.rst(1), undefined);
  for (const s of held) {
    s.respond({ ':status': 200 });
    s.end();
  }
  await waitFor(() => h.records.length === 3);
  assert.equal(calls, 3);
});

test('malformed input: HPACK garbage is a COMPRESSION_ERROR; an even stream id a PROTOCOL_ERROR', async (t) => {
  const b = await backend(t, (s) => {
    s.respond({ ':status': 200 });
    s.end();
  });
  const h = await gateway(t, b.address);
  const c1 = await rawClient(t, h.port);
  c1.sock.write(
    encodeFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, Buffer.from([0xff, 0xff])),
  );
  await waitFor(() => c1.isClosed());
  assert.equal(c1.goaway()?.payload.readUInt32BE(4), ErrorCode.COMPRESSION_ERROR);
  const c2 = await rawClient(t, h.port);
  c2.headers(2, GET, true);
  await waitFor(() => c2.isClosed());
  assert.equal(c2.goaway()?.payload.readUInt32BE(4), ErrorCode.PROTOCOL_ERROR);
  const c3 = await rawClient(t, h.port);
  c3.headers(1, { ':method': 'GET' }, true); // no :path, no :scheme
  await waitFor(() => c3.rst(1) !== undefined);
  assert.equal(c3.rst(1)?.payload.readUInt32BE(0), ErrorCode.PROTOCOL_ERROR);
  assert.equal(h.records.at(-1)?.outcome, 'bad_request');
});

test('header blocks larger than one frame travel as HEADERS + CONTINUATION both ways', async (t) => {
  let seen = '';
  const b = await backend(t, (s, hd) => {
    seen = String(hd['x-big']);
    s.respond({ ':status': 200, 'x-big-reply': 'r'.repeat(40_000) });
    s.end('ok');
  });
  const h = await gateway(t, b.address);
  const c = http2.connect(`http://127.0.0.1:${h.port}`);
  c.on('error', () => {});
  t.after(() => c.destroy());
  const big = Array.from({ length: 30_000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
  const reply = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
    const req = c.request({ ':path': '/', 'x-big': big });
    req.on('response', resolve);
    req.on('error', reject);
    req.resume();
  });
  assert.equal(seen, big);
  assert.equal(reply['x-big-reply'], 'r'.repeat(40_000));
});

test('drain: GOAWAY to clients, new streams refused, the stream in flight finishes', async (t) => {
  let held: http2.ServerHttp2Stream | undefined;
  const b = await backend(t, (s) => {
    held = s;
  });
  const h = await startHarness(yamlFor([{ name: 'b1', address: b.address }]));
  const c = http2.connect(`http://127.0.0.1:${h.port}`);
  c.on('error', () => {});
  t.after(() => c.destroy());
  let goaway = -1;
  c.on('goaway', (code) => {
    goaway = code;
  });
  const body = new Promise<string>((resolve, reject) => {
    const req = c.request({ ':path': '/slow' });
    let s = '';
    req.on('data', (d: Buffer) => {
      s += d;
    });
    req.on('end', () => resolve(s));
    req.on('error', reject);
  });
  await waitFor(() => held !== undefined);
  const drained = h.proxy.drain(Date.now() + 3000);
  await waitFor(() => goaway === 0);
  assert.equal(h.proxy.activeConnections, 1, 'the connection stays while its stream runs');
  held!.respond({ ':status': 200 });
  held!.end('finished');
  assert.equal(await body, 'finished');
  await drained;
  assert.equal(h.proxy.activeConnections, 0);
  assert.equal(h.records.at(-1)?.outcome, 'ok');
  await h.stop();
});

test('request trailers reach the backend after the body', async (t) => {
  let trailer = '';
  let body = '';
  const b = await backend(t, (s) => {
    s.on('data', (d: Buffer) => {
      body += d;
    });
    s.on('trailers', (tr) => {
      trailer = String(tr['x-req-trailer']);
    });
    s.on('end', () => {
      s.respond({ ':status': 200 });
      s.end('ok');
    });
  });
  const h = await gateway(t, b.address);
  const c = http2.connect(`http://127.0.0.1:${h.port}`);
  c.on('error', () => {});
  t.after(() => c.destroy());
  const status = await new Promise<number>((resolve, reject) => {
    const req = c.request({ ':method': 'POST', ':path': '/t' }, { waitForTrailers: true });
    req.on('wantTrailers', () => req.sendTrailers({ 'x-req-trailer': 'v1' }));
    req.on('response', (x) => resolve(Number(x[':status'])));
    req.on('error', reject);
    req.resume();
    req.end('payload');
  });
  assert.equal(status, 200);
  assert.equal(body, 'payload');
  assert.equal(trailer, 'v1');
});

test('slow readers hold at most their stream windows; other clients on the same upstream connection keep flowing', async (t) => {
  let written = 0;
  const b = await backend(t, (s, hd) => {
    s.respond({ ':status': 200 });
    if (hd[':path'] === '/small') {
      s.end('small');
      return;
    }
    const chunk = Buffer.alloc(64 * 1024, 5);
    const pump = (): void => {
      while (written < 64 << 20 && !s.destroyed) {
        written += chunk.length;
        if (!s.write(chunk)) {
          s.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
  const h = await gateway(t, b.address);
  const slow = http2.connect(`http://127.0.0.1:${h.port}`);
  slow.on('error', () => {});
  t.after(() => slow.destroy());
  // 20 streams × (1 MiB gateway window + node's buffers) exceed the 16 MiB upstream
  // connection window: with the connection window credited only as clients read, the
  // upstream connection would stall for everyone.
  for (let i = 0; i < 20; i++) {
    const req = slow.request({ ':path': `/big${i}` });
    req.on('error', () => {});
    req.pause();
  }
  let last = -1;
  for (let i = 0; i < 50 && written !== last; i++) {
    last = written;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(written < 20 * (4 << 20), `backend wrote ${written} bytes for 20 stalled streams`);
  assert.ok(written > 16 << 20, `backend wrote ${written} bytes`);
  assert.equal(h.upstream.sessionCount(), 1, 'all on one upstream connection');
  const c = http2.connect(`http://127.0.0.1:${h.port}`);
  c.on('error', () => {});
  t.after(() => c.destroy());
  const body = await new Promise<string>((resolve, reject) => {
    const req = c.request({ ':path': '/small' });
    let s = '';
    req.on('data', (d: Buffer) => {
      s += d;
    });
    req.on('end', () => resolve(s));
    req.on('error', reject);
  });
  assert.equal(body, 'small');
});

test('a client that goes silent with a stream open is PINGed, then dropped; the backend stream is cancelled', async (t) => {
  let rst: number | undefined;
  let opened = 0;
  const b = await backend(t, (s) => {
    opened++;
    s.on('close', () => {
      rst = s.rstCode;
    });
    // never answers: the call stays open until someone gives up
  });
  const h = await gateway(t, b.address, '', { clientPing: { after: 300, timeout: 300 } });
  // A live client on the same gateway, quiet too, but its stack answers PINGs.
  const live = http2.connect(`http://127.0.0.1:${h.port}`);
  live.on('error', () => {});
  t.after(() => live.destroy());
  const liveReq = live.request({ ':method': 'POST', ':path': '/live' }, { endStream: false });
  liveReq.on('error', () => {});
  const c = await rawClient(t, h.port);
  c.sock.write(encodeFrame(FrameType.SETTINGS, Flag.ACK, 0));
  c.headers(1, GET, false); // request body never comes, nor anything else
  await waitFor(() => opened === 2);
  await waitFor(() => c.isClosed(), 10_000);
  const ping = c.frames.find((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) === 0);
  assert.ok(ping, 'the gateway sent a PING before giving up');
  await waitFor(() => rst !== undefined);
  assert.equal(rst, http2.constants.NGHTTP2_CANCEL);
  await waitFor(() => h.records.length === 1);
  assert.equal(h.records[0].outcome, 'timeout');
  assert.ok(h.logs.some((l) => l.event === 'h2_client_timeout'));
  // The client that answers PINGs keeps its connection and its stream.
  assert.equal(live.closed || live.destroyed, false);
  assert.equal(liveReq.closed, false);
});
