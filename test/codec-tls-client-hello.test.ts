import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { before, describe, test } from 'node:test';
import tls from 'node:tls';
import { parseClientHello } from '../src/codec/tls-client-hello.js';

// ---------------------------------------------------------------------------------------
// Builders: a ClientHello laid out field by field, so each test can break exactly one part.

const u8 = (n: number) => Buffer.from([n & 0xff]);
const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const u24 = (n: number) => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);

function ext(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(body.length), body]);
}

function sniExt(...names: string[]): Buffer {
  const entries = Buffer.concat(
    names.map((n) => Buffer.concat([u8(0), u16(n.length), Buffer.from(n, 'latin1')])),
  );
  return ext(0, Buffer.concat([u16(entries.length), entries]));
}

function alpnExt(...protos: string[]): Buffer {
  const list = Buffer.concat(protos.map((p) => Buffer.concat([u8(p.length), Buffer.from(p, 'latin1')])));
  return ext(16, Buffer.concat([u16(list.length), list]));
}

interface HelloParts {
  sessionId?: Buffer;
  ciphers?: Buffer;
  compression?: Buffer;
  /** undefined = no extensions block at all. */
  extensions?: Buffer[];
  /** Override the extensions block length. */
  extLen?: number;
}

function helloBody(p: HelloParts = {}): Buffer {
  const sid = p.sessionId ?? Buffer.alloc(32, 7);
  const ciphers = p.ciphers ?? Buffer.from([0x13, 0x01, 0x13, 0x02]);
  const comp = p.compression ?? Buffer.from([0]);
  const parts = [
    u16(0x0303),
    Buffer.alloc(32, 1),
    u8(sid.length),
    sid,
    u16(ciphers.length),
    ciphers,
    u8(comp.length),
    comp,
  ];
  if (p.extensions) {
    const exts = Buffer.concat(p.extensions);
    parts.push(u16(p.extLen ?? exts.length), exts);
  }
  return Buffer.concat(parts);
}

function handshake(body: Buffer, type = 1): Buffer {
  return Buffer.concat([u8(type), u24(body.length), body]);
}

function record(fragment: Buffer, opts: { type?: number; version?: number } = {}): Buffer {
  return Buffer.concat([u8(opts.type ?? 0x16), u16(opts.version ?? 0x0301), u16(fragment.length), fragment]);
}

const hello = (p: HelloParts = {}) => record(handshake(helloBody(p)));

/** The same handshake message cut into records of `size` bytes. */
function fragmented(msg: Buffer, size: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < msg.length; i += size) out.push(record(msg.subarray(i, i + size)));
  return Buffer.concat(out);
}

// ---------------------------------------------------------------------------------------

let real: Buffer;

before(async () => {
  // What node's TLS client actually sends.
  const chunks: Buffer[] = [];
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      const all = Buffer.concat(chunks);
      if (all.length >= 5 && all.length >= 5 + all.readUInt16BE(3)) s.destroy();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const c = tls.connect({
    port: (server.address() as net.AddressInfo).port,
    host: '127.0.0.1',
    servername: 'Svc.Example.COM',
    ALPNProtocols: ['h2', 'http/1.1'],
  });
  c.on('error', () => {});
  await new Promise((resolve) => c.on('close', resolve));
  server.close();
  real = Buffer.concat(chunks);
});

describe('parseClientHello', () => {
  test('reads SNI (lower-cased) and ALPN from a real ClientHello', () => {
    assert.deepEqual(parseClientHello(real), { sni: 'svc.example.com', alpn: ['h2', 'http/1.1'] });
  });

  test('every truncation of a real ClientHello asks for more', () => {
    for (let n = 0; n < real.length; n++) {
      assert.equal(parseClientHello(real.subarray(0, n)), 'more', `at ${n} bytes`);
    }
  });

  test('bytes after the ClientHello do not matter', () => {
    const r = parseClientHello(Buffer.concat([real, Buffer.from([0x14, 0x03, 0x03, 0, 1, 1])]));
    assert.deepEqual(r, { sni: 'svc.example.com', alpn: ['h2', 'http/1.1'] });
  });

  test('a hello without extensions, and one with neither SNI nor ALPN', () => {
    assert.deepEqual(parseClientHello(hello()), {});
    assert.deepEqual(parseClientHello(hello({ extensions: [ext(0x000a, u16(0))] })), {});
    assert.deepEqual(parseClientHello(hello({ extensions: [] })), {});
  });

  test('first host_name wins, trailing dot dropped, other name types skipped', () => {
    const other = Buffer.concat([u8(9), u16(3), Buffer.from('abc')]);
    const names = Buffer.concat([
      other,
      u8(0),
      u16(9),
      Buffer.from('A.b.Test.'),
      u8(0),
      u16(1),
      Buffer.from('z'),
    ]);
    const e = ext(0, Buffer.concat([u16(names.length), names]));
    assert.deepEqual(parseClientHello(hello({ extensions: [e] })), { sni: 'a.b.test' });
  });

  test('an empty server_name extension means no SNI', () => {
    assert.deepEqual(parseClientHello(hello({ extensions: [ext(0, Buffer.alloc(0))] })), {});
  });

  test('a handshake fragmented over several records is reassembled', () => {
    const msg = real.subarray(5, 5 + real.readUInt16BE(3));
    for (const size of [4, 5, 17, 100, msg.length - 1]) {
      const buf = fragmented(msg, size);
      assert.deepEqual(
        parseClientHello(buf),
        { sni: 'svc.example.com', alpn: ['h2', 'http/1.1'] },
        `size ${size}`,
      );
      for (let n = 0; n < buf.length; n += 7) assert.equal(parseClientHello(buf.subarray(0, n)), 'more');
    }
  });

  test('a record of another content type inside the fragments is invalid', () => {
    const msg = handshake(helloBody({ extensions: [sniExt('x.test')] }));
    const buf = Buffer.concat([record(msg.subarray(0, 10)), record(msg.subarray(10), { type: 0x17 })]);
    assert.equal(parseClientHello(buf), 'invalid');
  });

  const invalid: [string, () => Buffer][] = [
    ['not a handshake record', () => record(handshake(helloBody()), { type: 0x17 })],
    ['record version 0x02xx', () => record(handshake(helloBody()), { version: 0x0201 })],
    ['record version 0x0305', () => record(handshake(helloBody()), { version: 0x0305 })],
    ['zero-length record', () => record(Buffer.alloc(0))],
    ['record longer than 2^14+256', () => Buffer.concat([u8(0x16), u16(0x0301), u16(0x4101)])],
    ['a ServerHello', () => record(handshake(helloBody(), 2))],
    ['handshake header cut by its record', () => fragmented(handshake(helloBody()), 3)],
    ['handshake length 16 MiB', () => record(Buffer.concat([u8(1), u24(0xffffff), helloBody()]))],
    ['session id longer than 32', () => hello({ sessionId: Buffer.alloc(33) })],
    ['odd cipher suites length', () => hello({ ciphers: Buffer.from([0x13, 0x01, 0x13]) })],
    ['no cipher suites', () => hello({ ciphers: Buffer.alloc(0) })],
    ['no compression methods', () => hello({ compression: Buffer.alloc(0) })],
    ['extensions length beyond the message', () => hello({ extensions: [sniExt('a.test')], extLen: 500 })],
    ['extensions length short of the message', () => hello({ extensions: [sniExt('a.test')], extLen: 3 })],
    [
      'one extension overruns the block',
      () => hello({ extensions: [Buffer.concat([u16(0x000a), u16(40), Buffer.alloc(4)])], extLen: 8 }),
    ],
    ['duplicate server_name', () => hello({ extensions: [sniExt('a.test'), sniExt('b.test')] })],
    ['duplicate ALPN', () => hello({ extensions: [alpnExt('h2'), alpnExt('h2')] })],
    [
      'server_name list length mismatch',
      () => hello({ extensions: [ext(0, Buffer.concat([u16(50), u8(0), u16(1), Buffer.from('a')]))] }),
    ],
    [
      'host name overruns the list',
      () => hello({ extensions: [ext(0, Buffer.concat([u16(4), u8(0), u16(60), Buffer.from('a')]))] }),
    ],
    ['host name with a control byte', () => hello({ extensions: [sniExt('a\x01b.test')] })],
    ['host name with a space', () => hello({ extensions: [sniExt('a b')] })],
    ['host name with a high byte', () => hello({ extensions: [sniExt('caf\xe9.test')] })],
    ['empty host name', () => hello({ extensions: [sniExt('')] })],
    ['host name of only a dot', () => hello({ extensions: [sniExt('.')] })],
    ['host name of 256 bytes', () => hello({ extensions: [sniExt('a'.repeat(256))] })],
    ['empty ALPN protocol name', () => hello({ extensions: [alpnExt('h2', '')] })],
    ['empty ALPN list', () => hello({ extensions: [ext(16, u16(0))] })],
    [
      'ALPN name overruns the list',
      () => hello({ extensions: [ext(16, Buffer.concat([u16(3), u8(9), Buffer.from('h2')]))] }),
    ],
    ['ALPN extension shorter than its list length', () => hello({ extensions: [ext(16, u8(0))] })],
    ['body ends inside the random', () => record(handshake(helloBody().subarray(0, 20)))],
    ['body ends inside the cipher suites', () => record(handshake(helloBody().subarray(0, 70)))],
  ];
  for (const [name, make] of invalid) {
    test(`invalid: ${name}`, () => assert.equal(parseClientHello(make()), 'invalid'));
  }

  test('a 255-byte host name is accepted', () => {
    const name = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}`;
    assert.equal(name.length, 255);
    assert.deepEqual(parseClientHello(hello({ extensions: [sniExt(name)] })), { sni: name });
  });

  test('mutated and random inputs never throw (bounded fuzz)', () => {
    // Deterministic xorshift so a failure reproduces.
    let x = 0x9e3779b9;
    const rnd = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) / 0x100000000;
    };
    const seeds = [real, hello({ extensions: [sniExt('a.test'), alpnExt('h2')] })];
    for (let i = 0; i < 3000; i++) {
      const base = Buffer.from(seeds[i % seeds.length]);
      const flips = 1 + Math.floor(rnd() * 4);
      for (let f = 0; f < flips; f++) base[Math.floor(rnd() * base.length)] = Math.floor(rnd() * 256);
      const cut = base.subarray(0, Math.floor(rnd() * (base.length + 1)));
      const r = parseClientHello(cut);
      assert.ok(r === 'more' || r === 'invalid' || typeof r === 'object');
      if (typeof r === 'object' && r.sni !== undefined) assert.match(r.sni, /^[\x21-\x7e]{1,255}$/);
    }
    for (let i = 0; i < 500; i++) {
      const len = Math.floor(rnd() * 300);
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = Math.floor(rnd() * 256);
      if (len > 0) b[0] = 0x16;
      if (len > 1) b[1] = 0x03;
      const r = parseClientHello(b);
      assert.ok(r === 'more' || r === 'invalid' || typeof r === 'object');
    }
  });
});
