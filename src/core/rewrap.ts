// Moving an accepted socket's handle into a socket of ours that reads with `onread`.
// node offers `onread` (read into a caller's buffer: no buffer allocated per read, no
// Readable machinery, no 'data' event) only for sockets it creates, not for the sockets a
// net.Server accepts. A socket constructed around the accepted one's handle gets it. This
// leans on undocumented internals (`_handle`, `readStart`/`readStop`/`useUserBuffer`),
// so every use is guarded: when they are not where this node keeps them, or the socket
// is not in a state to hand over, callers stay on 'data'.
import net from 'node:net';

/** The parts of an accepted socket's libuv handle a re-wrap relies on (node internals). */
interface StreamHandle {
  reading?: boolean;
  readStart(): number;
  readStop(): number;
  useUserBuffer(b: Uint8Array): void;
}
type Internals = { _handle: StreamHandle | null; _readableState?: { ended?: boolean } };

/**
 * Whether `s`, an accepted plain TCP socket, can hand its handle over: nothing buffered
 * either way, no FIN read, and the internals where this node keeps them.
 */
export function rewrappable(s: net.Socket): boolean {
  if (s.constructor !== net.Socket || s.destroyed || s.readableLength !== 0) return false;
  if (s.writableLength !== 0 || s.writableEnded) return false;
  const i = s as unknown as Internals;
  const h = i._handle;
  return (
    i._readableState?.ended === false &&
    h !== null &&
    typeof h === 'object' &&
    typeof h.readStart === 'function' &&
    typeof h.readStop === 'function' &&
    typeof h.useUserBuffer === 'function'
  );
}

/**
 * Moves `old`'s handle (check `rewrappable` first) into a new socket reading with
 * `onread`. `old` is left open without a handle for whoever tracks it (the gateway's
 * maxconn and drain bookkeeping); the two are linked to close together (each 'close'
 * destroys the other). No listener moves: the caller removes its own from `old` first.
 */
export function rewrap(
  old: net.Socket,
  onread: { buffer: () => Uint8Array; callback: (n: number, buf: Uint8Array) => boolean },
  paused: boolean,
  allowHalfOpen: boolean,
): net.Socket {
  const h = (old as unknown as Internals)._handle!;
  if (h.reading) {
    h.reading = false;
    h.readStop();
  }
  (old as unknown as Internals)._handle = null;
  const s = new net.Socket({
    handle: h,
    allowHalfOpen,
    pauseOnCreate: paused,
    onread,
  } as net.SocketConstructorOpts);
  s.once('close', () => old.destroy());
  old.once('close', () => s.destroy());
  return s;
}
