// A raw HTTP/2 server for tests that need a peer node:http2 will not be (silent, malformed
// fields, hand-made frames): it takes the client preface, exchanges SETTINGS (acking the
// peer's) and hands every other frame to the handler made for its connection.
import net from 'node:net';
import {
  encodeFrame,
  Flag,
  FrameType,
  type ParsedFrame,
  PREFACE,
  parseFrames,
} from '../../src/codec/http2/index.js';

type After = { after(fn: () => Promise<void> | void): void };

/** `onConnection(sock)` returns the frame handler of that connection (its own HPACK state). */
export async function rawH2Server(
  t: After,
  onConnection: (sock: net.Socket) => (f: ParsedFrame) => void,
): Promise<{ address: string; port: number }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    socks.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => socks.delete(sock));
    const onFrame = onConnection(sock);
    let buf = Buffer.alloc(0);
    let started = false;
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!started) {
        if (buf.length < PREFACE.length) return;
        buf = buf.subarray(PREFACE.length);
        started = true;
        sock.write(encodeFrame(FrameType.SETTINGS, 0, 0));
      }
      const r = parseFrames(buf);
      buf = Buffer.from(r.rest);
      for (const f of r.frames) {
        if (f.type !== FrameType.SETTINGS) onFrame(f);
        else if ((f.flags & Flag.ACK) === 0) sock.write(encodeFrame(FrameType.SETTINGS, Flag.ACK, 0));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    for (const s of socks) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const port = (server.address() as net.AddressInfo).port;
  return { address: `127.0.0.1:${port}`, port };
}
