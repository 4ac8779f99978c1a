import assert from 'node:assert/strict';
import { test } from 'node:test';
import thrift from 'thrift';
import {
  CALL,
  convert,
  EXCEPTION,
  flatten,
  HDR_BAD_NAME,
  HDR_BAD_TYPE,
  HDR_BAD_VERSION,
  HDR_NEED_MORE,
  MessageReader,
  newMessageHeader,
  ONEWAY,
  payloadOf,
  REPLY,
  readMessageHeader,
  readVarint32,
  rewriteSeqid,
  SCAN_ERROR,
  SCAN_NEED_MORE,
  StructScanner,
  splitServiceName,
  TAppErr,
  type ThriftMessage,
  transcode,
  varint32Size,
  varintBytes,
  withHeader,
  writeApplicationException,
  writeTHeaderPrefix,
  writeVarint32,
  writeVarint32Fixed,
} from '../src/codec/thrift/index.js';
import {
  emptyStruct,
  encodeMessage,
  everything,
  type Protocol,
  protocolClass,
  structField,
  type Transport,
  types,
} from './fixtures/thrift/helpers.js';

const PROTOCOLS: Protocol[] = ['binary', 'compact'];
const TRANSPORTS: Transport[] = ['framed', 'unframed'];

/** A protocol reading `bytes` with the real library. */
function decoder(protocol: Protocol, bytes: Buffer): thrift.TProtocol {
  const t = new thrift.TBufferedTransport() as unknown as { inBuf: Buffer; writeCursor: number };
  t.inBuf = bytes;
  t.writeCursor = bytes.length;
  const P = protocolClass(protocol) as unknown as new (t: unknown) => thrift.TProtocol;
  return new P(t);
}

function mirrorCall(transport: Transport, protocol: Protocol, seqid: number, seed = 1): Buffer {
  return encodeMessage(
    transport,
    protocol,
    'Calculator:mirror',
    CALL,
    seqid,
    structField(1, everything(seed)),
  );
}

test('binary header: byte fixture and library-written message', () => {
  // 80 01 00 01 | name length 3 | "add" | seqid 7 | STOP
  const fixture = Buffer.from('800100010000000361646400000007' + '00', 'hex');
  const h = newMessageHeader();
  assert.equal(readMessageHeader(fixture, 0, fixture.length, 'binary', 100, h), 15);
  assert.deepEqual(
    { name: h.name, type: h.type, seqid: h.seqid, off: h.seqidOffset, len: h.seqidLength },
    { name: 'add', type: CALL, seqid: 7, off: 11, len: 4 },
  );
  const lib = encodeMessage('unframed', 'binary', 'Calculator:add', ONEWAY, -5, emptyStruct);
  assert.equal(readMessageHeader(lib, 0, lib.length, 'binary', 100, h), 12 + 14);
  assert.equal(h.name, 'Calculator:add');
  assert.equal(h.type, ONEWAY);
  assert.equal(h.seqid, -5);
  // Every proper prefix needs more; nothing is misread.
  for (let n = 0; n < 15; n++)
    assert.equal(readMessageHeader(fixture, 0, n, 'binary', 100, h), HDR_NEED_MORE);
});

test('compact header: byte fixture with a two-byte seqid varint', () => {
  // 82 | CALL<<5|1 | seqid 300 = ac 02 | name length 3 | "add" | STOP
  const fixture = Buffer.from('8221ac020361646400', 'hex');
  const h = newMessageHeader();
  assert.equal(readMessageHeader(fixture, 0, fixture.length, 'compact', 100, h), 8);
  assert.deepEqual(
    { name: h.name, type: h.type, seqid: h.seqid, off: h.seqidOffset, len: h.seqidLength },
    { name: 'add', type: CALL, seqid: 300, off: 2, len: 2 },
  );
  for (let n = 0; n < 8; n++)
    assert.equal(readMessageHeader(fixture, 0, n, 'compact', 100, h), HDR_NEED_MORE);
  const lib = encodeMessage('unframed', 'compact', 'ping', REPLY, -1, emptyStruct);
  assert.equal(readMessageHeader(lib, 0, lib.length, 'compact', 100, h), 2 + 5 + 1 + 4);
  assert.equal(h.seqid, -1);
  assert.equal(h.type, REPLY);
});

test('header errors: lax binary, bad type, name length out of range', () => {
  const h = newMessageHeader();
  const lax = Buffer.from('0000000361646401000000070000', 'hex');
  assert.equal(readMessageHeader(lax, 0, lax.length, 'binary', 100, h), HDR_BAD_VERSION);
  const badType = Buffer.from('800100050000000361646400000007', 'hex');
  assert.equal(readMessageHeader(badType, 0, badType.length, 'binary', 100, h), HDR_BAD_TYPE);
  const zeroType = Buffer.from('8201070361646400', 'hex');
  assert.equal(readMessageHeader(zeroType, 0, zeroType.length, 'compact', 100, h), HDR_BAD_TYPE);
  // A 1 GB name is refused from the first 8 bytes (envoyproxy/envoy#3509).
  const huge = Buffer.from('800100013fffffff', 'hex');
  assert.equal(readMessageHeader(huge, 0, huge.length, 'binary', 65536, h), HDR_BAD_NAME);
  const negative = Buffer.from('80010001ffffffff', 'hex');
  assert.equal(readMessageHeader(negative, 0, negative.length, 'binary', 65536, h), HDR_BAD_NAME);
  const compactHuge = Buffer.from('822101ffffffff07', 'hex');
  assert.equal(readMessageHeader(compactHuge, 0, compactHuge.length, 'compact', 65536, h), HDR_BAD_NAME);
  const threeBytes = Buffer.from('800100', 'hex');
  assert.equal(readMessageHeader(threeBytes, 0, 3, 'compact', 100, h), HDR_BAD_VERSION);
});

test('varints: canonical, fixed-length padding, malformed', () => {
  const b = Buffer.alloc(8);
  for (const v of [0, 1, 127, 128, 300, 16383, 16384, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 2 ** 32 - 1]) {
    const end = writeVarint32(b, 0, v);
    assert.equal(end, varint32Size(v));
    assert.equal(readVarint32(b, 0, end), v);
    assert.equal(varintBytes, end);
    assert.equal(readVarint32(b, 0, end - 1), 0);
    assert.equal(varintBytes, 0, 'cut short');
  }
  assert.ok(writeVarint32Fixed(b, 0, 5, 3));
  assert.deepEqual([...b.subarray(0, 3)], [0x85, 0x80, 0x00]);
  assert.equal(readVarint32(b, 0, 3), 5);
  assert.equal(varintBytes, 3);
  assert.equal(writeVarint32Fixed(b, 0, 128, 1), false);
  const bad = Buffer.from('ffffffffff01', 'hex');
  readVarint32(bad, 0, bad.length);
  assert.equal(varintBytes, -1);
});

test('seqid rewrite in place keeps the message valid for the library', () => {
  for (const protocol of PROTOCOLS) {
    const msg = encodeMessage('unframed', protocol, 'add', CALL, 3, emptyStruct);
    const h = newMessageHeader();
    readMessageHeader(msg, 0, msg.length, protocol, 100, h);
    // Compact: 3 is one byte, so 100 fits and 1000 does not.
    assert.ok(rewriteSeqid(msg, h, 100));
    assert.equal(rewriteSeqid(msg, h, protocol === 'binary' ? 1000 : 1000), protocol === 'binary');
    if (protocol === 'binary') rewriteSeqid(msg, h, 100);
    const r = decoder(protocol, msg).readMessageBegin();
    assert.equal(r.rseqid, 100);
    assert.equal(r.fname, 'add');
  }
});

test('scanner finds the end of every library-written struct, at any split', () => {
  for (const protocol of PROTOCOLS) {
    const msg = mirrorCall('unframed', protocol, 42);
    const h = newMessageHeader();
    const hl = readMessageHeader(msg, 0, msg.length, protocol, 100, h);
    assert.ok(hl > 0);
    const s = new StructScanner(protocol);
    assert.equal(s.feed(msg, hl, msg.length), msg.length, `${protocol}: whole`);
    // One byte at a time (every token split at every place).
    s.reset();
    let end = SCAN_NEED_MORE;
    for (let i = hl; i < msg.length; i++) {
      end = s.feed(msg.subarray(i, i + 1), 0, 1);
      if (i < msg.length - 1) assert.equal(end, SCAN_NEED_MORE, `${protocol}: byte ${i}`);
    }
    assert.equal(end, 1, `${protocol}: ends on the last byte`);
    // Every two-way split, with the next message's bytes after it.
    const next = mirrorCall('unframed', protocol, 43, 2);
    const both = Buffer.concat([msg, next]);
    for (let cut = hl; cut < msg.length; cut += 3) {
      s.reset();
      assert.equal(s.feed(both.subarray(0, cut), hl, cut), SCAN_NEED_MORE);
      const rest = both.subarray(cut);
      assert.equal(s.feed(rest, 0, rest.length), msg.length - cut, `${protocol}: cut at ${cut}`);
    }
  }
});

test('scanner rejects bad types, runaway nesting and malformed varints', () => {
  const s = new StructScanner('binary', 4);
  // field type 1 (VOID) is not a value type
  assert.equal(s.feed(Buffer.from('01000100', 'hex'), 0, 4), SCAN_ERROR);
  s.reset();
  // struct in struct in struct ... past the depth limit
  const deep = Buffer.from('0c00010c00010c00010c00010c0001', 'hex');
  assert.equal(s.feed(deep, 0, deep.length), SCAN_ERROR);
  assert.match(s.error, /nesting/);
  s.reset();
  // negative string length
  assert.equal(s.feed(Buffer.from('0b0001ffffffff', 'hex'), 0, 7), SCAN_ERROR);
  const c = new StructScanner('compact');
  // i32 field (delta 1, type 5) whose varint runs on for 6 bytes
  const runaway = Buffer.from('15ffffffffffff', 'hex');
  assert.equal(c.feed(runaway, 0, runaway.length), SCAN_ERROR);
  c.reset();
  // compact list of 3 bools then STOP: 19 (delta 1, list) 31 (3 x bool) 01 02 01 00
  const bools = Buffer.from('1931010201' + '00', 'hex');
  assert.equal(c.feed(bools, 0, bools.length), bools.length);
  c.reset();
  // compact bool fields carry the value in the type: 11 (true) 12 (false) 00
  assert.equal(c.feed(Buffer.from('111200', 'hex'), 0, 3), 3);
  c.reset();
  // A list claiming 2^31-1 elements just waits for bytes (the reader's limit ends it).
  const big = Buffer.from('19f1ffffffff07', 'hex');
  assert.equal(c.feed(big, 0, big.length), SCAN_NEED_MORE);
});

/** Feeds `bytes` in pieces of `step` and collects the messages. */
function readAll(reader: MessageReader, bytes: Buffer, step: number): ThriftMessage[] {
  const out: ThriftMessage[] = [];
  for (let i = 0; i < bytes.length; i += step) {
    reader.push(bytes.subarray(i, Math.min(bytes.length, i + step)));
    for (let m = reader.next(); m; m = reader.next()) out.push(m);
  }
  return out;
}

test('reader splits framed and unframed streams at any read size, zero-copy when whole', () => {
  for (const transport of TRANSPORTS) {
    for (const protocol of PROTOCOLS) {
      const msgs = [
        mirrorCall(transport, protocol, 1),
        encodeMessage(transport, protocol, 'ping', CALL, 2, emptyStruct),
        encodeMessage(transport, protocol, 'zip', ONEWAY, 300, emptyStruct),
        mirrorCall(transport, protocol, 2 ** 31 - 1, 7),
      ];
      const stream = Buffer.concat(msgs);
      for (const step of [1, 2, 7, 64, stream.length]) {
        const reader = new MessageReader(transport, protocol, 1 << 20);
        const got = readAll(reader, stream, step);
        assert.equal(reader.error, undefined, `${transport}/${protocol}/${step}: ${reader.error}`);
        assert.equal(got.length, msgs.length, `${transport}/${protocol} step ${step}`);
        got.forEach((m, i) => {
          assert.deepEqual(flatten(m.parts), msgs[i], `${transport}/${protocol} step ${step} msg ${i}`);
          assert.equal(m.size, msgs[i].length);
          assert.equal(m.prefix, transport === 'framed' ? 4 : 0);
        });
        assert.deepEqual(
          got.map((m) => [m.header.name, m.header.seqid, m.header.type]),
          [
            ['Calculator:mirror', 1, CALL],
            ['ping', 2, CALL],
            ['zip', 300, ONEWAY],
            ['Calculator:mirror', 2 ** 31 - 1, CALL],
          ],
        );
        if (step === stream.length)
          assert.ok(got.every((m) => m.parts.length === 1 && m.parts[0].buffer === stream.buffer));
        assert.equal(reader.partial, false);
      }
    }
  }
});

test('reader: a frame over the limit stops it from the length word alone', () => {
  const reader = new MessageReader('framed', 'binary', 1024);
  reader.push(Buffer.from('00000401800100', 'hex'));
  assert.equal(reader.next(), undefined);
  assert.equal(reader.tooLarge, true);
  assert.match(reader.error ?? '', /1025 bytes over the 1024-byte limit/);
  assert.equal(reader.buffered, 0, 'nothing kept');
});

test('reader: an unframed message over the limit stops it after at most one more read', () => {
  const reader = new MessageReader('unframed', 'binary', 4096);
  // echo("xxxx…") with a 1 MB string, fed in 1000-byte reads
  const body = Buffer.alloc(1 << 20, 0x78);
  const msg = encodeMessage('unframed', 'binary', 'echo', CALL, 1, (p) => {
    p.writeStructBegin('a');
    p.writeFieldBegin('msg', thrift.Thrift.Type.STRING, 1);
    p.writeBinary(body);
    p.writeFieldEnd();
    p.writeFieldStop();
    p.writeStructEnd();
  });
  let fed = 0;
  for (let i = 0; i < msg.length && reader.error === undefined; i += 1000) {
    reader.push(msg.subarray(i, i + 1000));
    fed += 1000;
    assert.equal(reader.next(), undefined);
  }
  assert.equal(reader.tooLarge, true);
  assert.ok(fed <= 4096 + 1000, `stopped after ${fed} bytes`);
});

test('reader: malformed and non-Thrift bytes are errors, not waits', () => {
  const r1 = new MessageReader('framed', 'binary', 1 << 20);
  r1.push(Buffer.from('0000000a7f00000000000000000000', 'hex')); // ThriftMux-like
  assert.equal(r1.next(), undefined);
  assert.match(r1.error ?? '', /not a strict binary or compact/);
  const r2 = new MessageReader('framed', 'binary', 1 << 20);
  r2.push(Buffer.from('00000008800100010000ffff', 'hex')); // name runs past the frame
  assert.equal(r2.next(), undefined);
  assert.match(r2.error ?? '', /method name length out of range|past the frame end/);
  const r3 = new MessageReader('unframed', 'compact', 1 << 20);
  r3.push(Buffer.from('822101036164641f', 'hex')); // field type 15 is not a compact type
  assert.equal(r3.next(), undefined);
  assert.match(r3.error ?? '', /malformed message/);
});

test('THeader frames: read, payload unwrapped, reply wrapped with flags and sequence', () => {
  for (const protocol of PROTOCOLS) {
    const payload = mirrorCall('unframed', protocol, 9);
    // Headers: protocol id, 0 transforms, an info block (key-value: 1 header), padding.
    const info = Buffer.from([protocol === 'binary' ? 0 : 2, 0, 1, 1, 1, 0x6b, 1, 0x76]);
    const hsize = Math.ceil(info.length / 4);
    const headers = Buffer.alloc(hsize * 4);
    info.copy(headers);
    const fixed = Buffer.alloc(14);
    fixed.writeInt32BE(10 + headers.length + payload.length, 0);
    fixed.writeUInt16BE(0x0fff, 4);
    fixed.writeUInt16BE(0x0001, 6);
    fixed.writeInt32BE(77, 8);
    fixed.writeUInt16BE(hsize, 12);
    const frame = Buffer.concat([fixed, headers, payload]);
    for (const step of [1, 5, frame.length]) {
      const reader = new MessageReader('header', 'binary', 1 << 20);
      const [m] = readAll(reader, frame, step);
      assert.equal(reader.error, undefined);
      assert.ok(m, `${protocol} step ${step}`);
      assert.equal(m.header.protocol, protocol);
      assert.equal(m.header.seqid, 9);
      assert.deepEqual(m.theader, { flags: 1, sequence: 77, protocol, payloadOffset: 14 + headers.length });
      const p = payloadOf(m);
      assert.deepEqual(flatten(p.parts), payload);
      // To a framed backend and back into THeader.
      const framed = flatten(convert(m, 'framed'));
      assert.equal(framed.readInt32BE(0), payload.length);
      assert.deepEqual(framed.subarray(4), payload);
      const back = flatten(convert(m, 'header', { flags: 1, sequence: 77 }));
      assert.deepEqual(back.subarray(0, 18), writeTHeaderPrefix(protocol, 1, 77, payload.length));
      const again = readAll(new MessageReader('header', 'binary', 1 << 20), back, back.length);
      assert.equal(again[0].header.name, 'Calculator:mirror');
    }
  }
  const refused = new MessageReader('header', 'binary', 1 << 20);
  refused.push(Buffer.from('0000000e0fff0000000000010001000101000000', 'hex')); // 1 transform (zlib)
  assert.equal(refused.next(), undefined);
  assert.match(refused.error ?? '', /transforms/);
});

test('TApplicationException replies decode with the library in every transport/protocol', () => {
  for (const protocol of PROTOCOLS) {
    for (const transport of [...TRANSPORTS, 'header'] as const) {
      const wire = writeApplicationException({
        transport,
        protocol,
        name: 'add',
        seqid: -300,
        type: TAppErr.INTERNAL_ERROR,
        message: 'switchyard: no server available — pool calc',
        theader: { flags: 0, sequence: 5 },
      });
      const reader = new MessageReader(transport, protocol, 1 << 20);
      reader.push(wire);
      const m = reader.next();
      assert.ok(m, `${transport}/${protocol}: ${reader.error}`);
      assert.equal(m.size, wire.length);
      const p = decoder(protocol, flatten(payloadOf(m).parts));
      const begin = p.readMessageBegin();
      assert.deepEqual([begin.fname, begin.mtype, begin.rseqid | 0], ['add', EXCEPTION, -300]);
      const x = new thrift.Thrift.TApplicationException(0, '') as unknown as {
        read(p: thrift.TProtocol): void;
        type: number;
        message: string;
      };
      x.read(p);
      assert.equal(x.type, TAppErr.INTERNAL_ERROR);
      assert.equal(x.message, 'switchyard: no server available — pool calc');
    }
  }
});

test('withHeader renames (strip_service) and keeps the body', () => {
  for (const protocol of PROTOCOLS) {
    const wire = mirrorCall('framed', protocol, 5);
    const reader = new MessageReader('framed', protocol, 1 << 20);
    reader.push(wire);
    const m = reader.next()!;
    const { method } = splitServiceName(m.header.name);
    assert.equal(method, 'mirror');
    const renamed = withHeader(m, method, 1234567);
    const bytes = flatten(renamed.parts);
    assert.equal(bytes.length, renamed.length);
    const p = decoder(protocol, bytes);
    const begin = p.readMessageBegin();
    assert.deepEqual([begin.fname, begin.rseqid], ['mirror', 1234567]);
    const plain = mirrorCall('unframed', protocol, 5);
    const h = newMessageHeader();
    const hl = readMessageHeader(plain, 0, plain.length, protocol, 100, h);
    assert.deepEqual(bytes.subarray(bytes.length - (plain.length - hl)), plain.subarray(hl));
  }
  assert.deepEqual(splitServiceName('a:b:c'), { service: 'a', method: 'b:c' });
  assert.deepEqual(splitServiceName('plain'), { service: undefined, method: 'plain' });
});

test('transcode binary <-> compact: byte-identical to what the library writes', () => {
  for (const seed of [1, 2, 3]) {
    // binary -> compact: exactly the library's own compact encoding of the same value.
    const bin = mirrorCall('framed', 'binary', 11, seed);
    const rb = new MessageReader('framed', 'binary', 1 << 20);
    rb.push(bin);
    const toCompact = transcode(rb.next()!, 'compact', 'Calculator:mirror', 11, 1 << 20);
    assert.ok(typeof toCompact !== 'string', toCompact as string);
    assert.deepEqual(flatten(toCompact.parts), mirrorCall('unframed', 'compact', 11, seed), `seed ${seed}`);
    // compact -> binary: the library decodes it, and its re-encoding in compact is the
    // original. (Not a byte compare: compact does not carry the types of an empty map.)
    const comp = mirrorCall('framed', 'compact', 12, seed);
    const rc = new MessageReader('framed', 'compact', 1 << 20);
    rc.push(comp);
    const toBinary = transcode(rc.next()!, 'binary', 'mirror', 300, 1 << 20);
    assert.ok(typeof toBinary !== 'string', toBinary as string);
    const p = decoder('binary', flatten(toBinary.parts));
    const begin = p.readMessageBegin();
    assert.deepEqual([begin.fname, begin.mtype, begin.rseqid], ['mirror', CALL, 300]);
    p.readStructBegin();
    assert.equal(p.readFieldBegin().fid, 1);
    const e = new types.Everything();
    (e as unknown as { read(p: thrift.TProtocol): void }).read(p);
    p.readFieldEnd();
    assert.equal(p.readFieldBegin().ftype, thrift.Thrift.Type.STOP);
    assert.deepEqual((e as unknown as { flags_by_id: Record<string, boolean[]> }).flags_by_id['1'], [
      true,
      false,
      true,
    ]);
    const again = encodeMessage('framed', 'compact', 'Calculator:mirror', CALL, 12, structField(1, e));
    assert.deepEqual(again, comp, `seed ${seed}`);
  }
});

test('transcode refuses malformed and oversized input', () => {
  const bad = Buffer.from('8221010361646419f1ffffff7f', 'hex'); // list of 2^28 bools in 0 bytes
  const r = new MessageReader('unframed', 'compact', 1 << 20);
  // The reader would wait for the rest; build the message by hand.
  const h = newMessageHeader();
  readMessageHeader(bad, 0, bad.length, 'compact', 100, h);
  const msg: ThriftMessage = { header: h, transport: 'unframed', parts: [bad], size: bad.length, prefix: 0 };
  assert.match(transcode(msg, 'binary', 'add', 1, 1 << 20) as string, /container size/);
  assert.equal(r.error, undefined);
  const big = mirrorCall('framed', 'compact', 1);
  const rr = new MessageReader('framed', 'compact', 1 << 20);
  rr.push(big);
  assert.match(transcode(rr.next()!, 'binary', 'mirror', 1, 64) as string, /over the 64-byte limit/);
});

test('seeded mutation fuzz: reader, scanner and transcoder never throw on bad bytes', () => {
  let seed = 0x5eed;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const samples: [Transport, Protocol, Buffer][] = [];
  for (const transport of TRANSPORTS) {
    for (const protocol of PROTOCOLS)
      samples.push([transport, protocol, mirrorCall(transport, protocol, 3, 1)]);
  }
  let messages = 0;
  let errors = 0;
  for (let i = 0; i < 1500; i++) {
    const [transport, protocol, base] = samples[i % samples.length];
    const b = Buffer.from(base);
    // Flip a few bytes, keep the first two (so the protocol is still recognised) most of the time.
    const flips = 1 + rand(4);
    for (let f = 0; f < flips; f++) b[(transport === 'framed' ? 6 : 2) + rand(b.length - 6)] = rand(256);
    const cut = rand(4) === 0 ? rand(b.length) : b.length;
    const reader = new MessageReader(transport, protocol, 4096);
    for (let off = 0, len = 1; off < cut; off += len) {
      len = 1 + rand(64);
      reader.push(b.subarray(off, Math.min(cut, off + len)));
      for (let m = reader.next(); m; m = reader.next()) {
        messages++;
        const out = transcode(m, protocol === 'binary' ? 'compact' : 'binary', 'x', 1, 1 << 16);
        if (typeof out === 'string') errors++;
      }
      if (reader.error !== undefined) break;
    }
    if (reader.error !== undefined) errors++;
  }
  // Both outcomes happen; nothing threw.
  assert.ok(messages > 100 && errors > 100, `${messages} messages, ${errors} errors`);
});
