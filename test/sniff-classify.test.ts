import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import { createRequire } from 'node:module';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import type { SniffResult } from '../src/core/types.js';
import { classify } from '../src/sniff/classify.js';

// ---------------------------------------------------------------------------------------
// Harness: a real loopback server that classifies each accepted socket, then reads the rest
// of what the client sends, so a test can check that head + rest is every byte sent.

interface Sniffed {
  result: SniffResult;
  /** Bytes read after classification until the client ended (or `settleMs` passed). */
  rest: Buffer;
}

interface SniffServer {
  port: number;
  next(): Promise<Sniffed>;
  close(): Promise<void>;
}

async function sniffServer(opts: {
  timeoutMs: number;
  maxBytes: number;
  restMs?: number;
}): Promise<SniffServer> {
  const waiting: ((s: Sniffed) => void)[] = [];
  const ready: Sniffed[] = [];
  const sockets = new Set<net.Socket>();
  const deliver = (s: Sniffed) => {
    const w = waiting.shift();
    if (w) w(s);
    else ready.push(s);
  };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    void classify(socket, { timeoutMs: opts.timeoutMs, maxBytes: opts.maxBytes }).then((result) => {
      assert.equal(socket.listenerCount('data'), 0, 'classify left a data listener');
      assert.equal(socket.isPaused(), true, 'socket not paused after classify');
      const rest: Buffer[] = [];
      let delivered = false;
      const done = () => {
        if (delivered) return;
        delivered = true;
        clearTimeout(timer);
        deliver({ result, rest: Buffer.concat(rest) });
        socket.destroy();
      };
      const timer = setTimeout(done, opts.restMs ?? 2000);
      if (socket.readableEnded || socket.destroyed) {
        done();
        return;
      }
      socket.on('data', (c: Buffer) => rest.push(c));
      socket.on('end', done);
      socket.on('close', done);
      socket.resume();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    next: () => {
      const r = ready.shift();
      return r ? Promise.resolve(r) : new Promise((resolve) => waiting.push(resolve));
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends `bytes` (all at once, or one byte per write with a pause between), then ends. */
async function send(port: number, bytes: Buffer, oneByOne: boolean, end = true): Promise<net.Socket> {
  const c = net.connect({ port, host: '127.0.0.1', noDelay: true });
  c.on('error', () => {});
  c.on('data', () => {});
  await once(c, 'connect');
  if (!oneByOne) c.write(bytes);
  else {
    // Keep long inputs quick: a real pause for the first bytes, then macrotask turns.
    for (let i = 0; i < bytes.length && !c.destroyed; i++) {
      c.write(bytes.subarray(i, i + 1));
      await (i < 40 ? sleep(1) : new Promise((r) => setImmediate(r)));
    }
  }
  if (end) c.end();
  return c;
}

/** What a real client writes first: captured by a server that records its bytes. */
async function capture(run: (port: number) => void, quietMs = 150): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (c: Buffer) => chunks.push(c));
    // Silence: the client is waiting for an answer; what it sent so far is its first flight.
    let t = setTimeout(() => s.destroy(), quietMs);
    s.on('data', () => {
      clearTimeout(t);
      t = setTimeout(() => s.destroy(), quietMs);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const closed = once(server, 'connection').then(([s]) => once(s as net.Socket, 'close'));
  run((server.address() as net.AddressInfo).port);
  await closed;
  server.close();
  return Buffer.concat(chunks);
}

// ---------------------------------------------------------------------------------------
// Byte fixtures from real clients and libraries.

interface ThriftLib {
  TBufferedTransport: new (b: Buffer | undefined, cb: (msg: Buffer) => void) => object;
  TFramedTransport: new (b: Buffer | undefined, cb: (msg: Buffer) => void) => object;
  TBinaryProtocol: new (t: object) => ThriftProto;
  TCompactProtocol: new (t: object) => ThriftProto;
  THeaderProtocol: new (t: object) => ThriftProto;
  Thrift: { MessageType: { CALL: number } };
}
interface ThriftProto {
  writeMessageBegin(name: string, type: number, seqid: number): void;
  writeStructBegin(name: string): void;
  writeFieldStop(): void;
  writeStructEnd(): void;
  writeMessageEnd(): void;
  flush(): void;
}
const thrift = createRequire(import.meta.url)('thrift') as ThriftLib;

/** A `ping()` call as the thrift library writes it in the given transport and protocol. */
function thriftCall(transport: 'framed' | 'buffered', protocol: 'binary' | 'compact' | 'header'): Buffer {
  let out: Buffer | undefined;
  const T = transport === 'framed' ? thrift.TFramedTransport : thrift.TBufferedTransport;
  const trans = new T(undefined, (msg) => {
    out = msg;
  });
  const P =
    protocol === 'binary'
      ? thrift.TBinaryProtocol
      : protocol === 'compact'
        ? thrift.TCompactProtocol
        : thrift.THeaderProtocol;
  const p = new P(trans);
  p.writeMessageBegin('ping', thrift.Thrift.MessageType.CALL, 7);
  p.writeStructBegin('ping_args');
  p.writeFieldStop();
  p.writeStructEnd();
  p.writeMessageEnd();
  p.flush();
  assert.ok(out);
  return out;
}

interface Fixture {
  name: string;
  bytes: () => Buffer;
  cls: SniffResult['cls'];
  reason?: SniffResult['reason'];
  check?: (r: SniffResult) => void;
}

let httpBytes: Buffer;
let h2Bytes: Buffer;
let tlsBytes: Buffer;

const fixtures: Fixture[] = [
  { name: 'HTTP/1.1 request (node http client)', bytes: () => httpBytes, cls: 'http1' },
  {
    name: 'HTTP/2 preface + SETTINGS (node http2 client)',
    bytes: () => h2Bytes,
    cls: 'h2',
    check: (r) => assert.equal(r.head.subarray(0, 24).toString('latin1'), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  },
  {
    name: 'TLS ClientHello (tls.connect with servername and ALPN)',
    bytes: () => tlsBytes,
    cls: 'tls',
    check: (r) => assert.deepEqual(r.tls, { sni: 'db.internal', alpn: ['h2', 'http/1.1'] }),
  },
  {
    name: 'Thrift framed binary',
    bytes: () => thriftCall('framed', 'binary'),
    cls: 'thrift',
    check: (r) => assert.deepEqual(r.thrift, { transport: 'framed', protocol: 'binary' }),
  },
  {
    name: 'Thrift framed compact',
    bytes: () => thriftCall('framed', 'compact'),
    cls: 'thrift',
    check: (r) => assert.deepEqual(r.thrift, { transport: 'framed', protocol: 'compact' }),
  },
  {
    name: 'Thrift unframed binary',
    bytes: () => thriftCall('buffered', 'binary'),
    cls: 'thrift',
    check: (r) => assert.deepEqual(r.thrift, { transport: 'unframed', protocol: 'binary' }),
  },
  {
    name: 'Thrift unframed compact',
    bytes: () => thriftCall('buffered', 'compact'),
    cls: 'thrift',
    check: (r) => assert.deepEqual(r.thrift, { transport: 'unframed', protocol: 'compact' }),
  },
  {
    name: 'Thrift THeader',
    bytes: () => thriftCall('buffered', 'header'),
    cls: 'thrift',
    check: (r) => assert.deepEqual(r.thrift, { transport: 'header', protocol: 'binary' }),
  },
  {
    name: 'ThriftMux-like frame (length then 0x7f)',
    bytes: () => Buffer.from([0, 0, 0, 12, 0x7f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
    cls: 'tcp',
    reason: 'unrecognised',
  },
  {
    name: 'Redis inline command that looks like a method',
    bytes: () => Buffer.from('GET key\r\n'),
    cls: 'tcp',
    reason: 'unrecognised',
  },
  {
    name: 'garbage',
    bytes: () => Buffer.from('\x00\x00\x00\x00hello there, this is not a protocol\n', 'latin1'),
    cls: 'tcp',
    reason: 'unrecognised',
  },
  {
    name: 'absurd framed length with a binary version after it',
    bytes: () => Buffer.from([0x7f, 0xff, 0xff, 0xff, 0x80, 0x01, 0x00, 0x01]),
    cls: 'tcp',
    reason: 'unrecognised',
  },
];

describe('classify over real sockets', () => {
  let srv: SniffServer;
  before(async () => {
    srv = await sniffServer({ timeoutMs: 2000, maxBytes: 16384 });
    httpBytes = await capture((port) => {
      const req = http.request({ port, host: '127.0.0.1', path: '/hello?x=1', method: 'POST' });
      req.on('error', () => {});
      req.end('body');
    });
    h2Bytes = await capture((port) => {
      const s = http2.connect(`http://127.0.0.1:${port}`);
      s.on('error', () => {});
      s.request({ ':path': '/' }).on('error', () => {});
    });
    tlsBytes = await capture((port) => {
      const s = tls.connect({
        port,
        host: '127.0.0.1',
        servername: 'DB.internal',
        ALPNProtocols: ['h2', 'http/1.1'],
      });
      s.on('error', () => {});
    });
    assert.ok(httpBytes.length > 20 && h2Bytes.length > 24 && tlsBytes.length > 100);
  });
  after(() => srv.close());

  for (const oneByOne of [false, true]) {
    for (const f of fixtures) {
      test(`${f.name}${oneByOne ? ', one byte at a time' : ''}`, async () => {
        const bytes = f.bytes();
        const c = await send(srv.port, bytes, oneByOne);
        try {
          const { result, rest } = await srv.next();
          assert.equal(result.cls, f.cls);
          assert.equal(result.reason, f.reason ?? 'match');
          f.check?.(result);
          // Not one byte lost, none duplicated.
          assert.deepEqual(Buffer.concat([result.head, rest]), bytes);
        } finally {
          c.destroy();
        }
      });
    }
  }

  test('live clients: http, http2 and tls are classified on their first flight', async (t) => {
    // These clients wait for an answer instead of ending: collect briefly.
    const srv = await sniffServer({ timeoutMs: 2000, maxBytes: 16384, restMs: 30 });
    t.after(() => srv.close());
    const req = http.request({ port: srv.port, host: '127.0.0.1', path: '/' });
    req.on('error', () => {});
    req.end();
    const a = await srv.next();
    assert.equal(a.result.cls, 'http1');
    assert.match(a.result.head.toString('latin1'), /^GET \/ HTTP\/1\.1\r\n/);
    req.destroy();

    const session = http2.connect(`http://127.0.0.1:${srv.port}`);
    session.on('error', () => {});
    const b = await srv.next();
    assert.equal(b.result.cls, 'h2');
    session.destroy();

    const ts = tls.connect({
      port: srv.port,
      host: '127.0.0.1',
      servername: 'api.example.com',
      ALPNProtocols: ['h2'],
    });
    ts.on('error', () => {});
    const c = await srv.next();
    assert.equal(c.result.cls, 'tls');
    assert.deepEqual(c.result.tls, { sni: 'api.example.com', alpn: ['h2'] });
    ts.destroy();
  });
});

describe('classify edge cases', () => {
  test('a silent client is tcp after the timeout, and later bytes are not lost', async (t) => {
    const srv = await sniffServer({ timeoutMs: 100, maxBytes: 4096 });
    t.after(() => srv.close());
    const c = net.connect({ port: srv.port, host: '127.0.0.1' });
    c.on('error', () => {});
    t.after(() => c.destroy());
    await once(c, 'connect');
    const got = srv.next();
    // Server-speaks-first client: writes only after it would have had a banner.
    await sleep(250);
    c.end('EHLO late\r\n');
    const { result, rest } = await got;
    assert.equal(result.cls, 'tcp');
    assert.equal(result.reason, 'timeout');
    assert.equal(result.head.length, 0);
    assert.equal(rest.toString(), 'EHLO late\r\n');
  });

  test('a partial HTTP/2 preface then silence is tcp (timeout)', async (t) => {
    const srv = await sniffServer({ timeoutMs: 100, maxBytes: 4096, restMs: 30 });
    t.after(() => srv.close());
    const c = await send(srv.port, Buffer.from('PRI * HTTP/2.0\r\n'), false, false);
    t.after(() => c.destroy());
    const { result } = await srv.next();
    assert.equal(result.cls, 'tcp');
    assert.equal(result.reason, 'timeout');
    assert.equal(result.head.toString(), 'PRI * HTTP/2.0\r\n');
  });

  test('a request line that stalls after the target is still http1', async (t) => {
    const srv = await sniffServer({ timeoutMs: 100, maxBytes: 4096, restMs: 50 });
    t.after(() => srv.close());
    const c = await send(srv.port, Buffer.from('GET /slow'), false, false);
    t.after(() => c.destroy());
    const { result } = await srv.next();
    assert.equal(result.cls, 'http1');
    assert.equal(result.reason, 'match');
  });

  test('a FIN before a decision: tcp (the client may still read), bytes kept', async (t) => {
    const srv = await sniffServer({ timeoutMs: 2000, maxBytes: 4096 });
    t.after(() => srv.close());
    const c = await send(srv.port, Buffer.from([0x00, 0x00]), false, true);
    t.after(() => c.destroy());
    const { result } = await srv.next();
    assert.equal(result.cls, 'tcp');
    assert.equal(result.reason, 'unrecognised');
    assert.deepEqual(result.head, Buffer.from([0, 0]));
  });

  test('a FIN after a stalled request line settles it as http1', async (t) => {
    const srv = await sniffServer({ timeoutMs: 2000, maxBytes: 4096 });
    t.after(() => srv.close());
    const c = await send(srv.port, Buffer.from('GET /x'), false, true);
    t.after(() => c.destroy());
    const { result } = await srv.next();
    assert.equal(result.cls, 'http1');
    assert.equal(result.reason, 'match');
  });

  test('a client reset before a decision: tcp, reason closed', async (t) => {
    const srv = await sniffServer({ timeoutMs: 2000, maxBytes: 4096 });
    t.after(() => srv.close());
    const c = await send(srv.port, Buffer.from([0x00, 0x00]), false, false);
    await new Promise((r) => setTimeout(r, 50));
    c.resetAndDestroy();
    const { result } = await srv.next();
    assert.equal(result.cls, 'tcp');
    assert.equal(result.reason, 'closed');
    assert.deepEqual(result.head, Buffer.from([0, 0]));
  });

  test('a request line longer than the cap is settled as http1', async (t) => {
    const srv = await sniffServer({ timeoutMs: 2000, maxBytes: 64 });
    t.after(() => srv.close());
    const bytes = Buffer.from(`GET /${'a'.repeat(200)} HTTP/1.1\r\nhost: x\r\n\r\n`);
    const c = await send(srv.port, bytes, false);
    t.after(() => c.destroy());
    const { result, rest } = await srv.next();
    assert.equal(result.cls, 'http1');
    assert.deepEqual(Buffer.concat([result.head, rest]), bytes);
  });

  test('a ClientHello longer than the cap is tls without SNI', async (t) => {
    const srv = await sniffServer({ timeoutMs: 2000, maxBytes: 64 });
    t.after(() => srv.close());
    const c = await send(srv.port, tlsBytes, true);
    t.after(() => c.destroy());
    const { result, rest } = await srv.next();
    assert.equal(result.cls, 'tls');
    assert.equal(result.tls, undefined);
    assert.ok(result.head.length >= 64);
    assert.deepEqual(Buffer.concat([result.head, rest]), tlsBytes);
  });

  test('undecided bytes reaching the cap are tcp', async (t) => {
    const srv = await sniffServer({ timeoutMs: 2000, maxBytes: 16, restMs: 30 });
    t.after(() => srv.close());
    // Still a consistent HTTP/2 preface prefix when the cap is hit: nothing claims it.
    const bytes = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    const c = await send(srv.port, bytes.subarray(0, 20), false, false);
    t.after(() => c.destroy());
    const { result } = await srv.next();
    assert.equal(result.cls, 'tcp');
    assert.equal(result.reason, 'unrecognised');
    assert.ok(result.head.length >= 16);
  });

  test('a tcp-only listener skips sniffing', async (t) => {
    const server = net.createServer((s) => {
      s.on('error', () => {});
      void classify(s, { timeoutMs: 5000, maxBytes: 4096, accept: new Set(['tcp'] as const) }).then((r) => {
        s.end(`${r.cls}:${r.head.length}`);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    c.on('error', () => {});
    t.after(() => c.destroy());
    const [data] = await once(c, 'data');
    assert.equal(String(data), 'tcp:0');
  });
});
