import type net from 'node:net';
import type { SniffClass, SniffResult } from '../core/types.js';
import type { Matcher } from './matcher.js';
import { http1Matcher } from './matchers/http1.js';
import { http2Matcher } from './matchers/http2.js';
import { thriftDetail, thriftMatcher } from './matchers/thrift.js';
import { tlsDetail, tlsMatcher } from './matchers/tls.js';

export interface ClassifyOptions {
  /** Time from the call to a decision; silence past it is `tcp` (server-speaks-first). */
  timeoutMs: number;
  /** Bytes buffered before deciding; at the cap the connection is settled or `tcp`. */
  maxBytes: number;
  /** Classes the listener accepts; a tcp-only listener skips sniffing altogether. */
  accept?: ReadonlySet<SniffClass>;
}

/**
 * Order matters only where prefixes overlap: HTTP/2 before HTTP/1 ("PRI" vs "P..."
 * methods). The first bytes of the others are disjoint (TLS 0x16, framed Thrift 0x00-0x04,
 * unframed Thrift 0x80/0x82, HTTP methods 'A'-'Z').
 */
const MATCHERS: readonly Matcher[] = [tlsMatcher, http2Matcher, http1Matcher, thriftMatcher];
const ALL = (1 << MATCHERS.length) - 1;
const EMPTY = Buffer.alloc(0);
/** Keeps a socket error during sniffing from being uncaught; the 'close' after it decides. */
function noop(): void {}

/**
 * Reads the first bytes of `socket` until one matcher claims the connection, all rule it
 * out, the cap is reached, the client goes silent for `timeoutMs`, or it closes. Never
 * rejects. On return the socket is paused, none of these listeners remain, nothing was
 * unshifted: `head` holds every byte read, for the protocol handler to process first.
 * The caller must attach its own 'error' listener before the next I/O turn.
 */
export function classify(socket: net.Socket, opts: ClassifyOptions): Promise<SniffResult> {
  const accept = opts.accept;
  if (accept !== undefined && accept.size === 1 && accept.has('tcp')) {
    // Everything is tcp here: waiting for bytes would only delay server-speaks-first protocols.
    socket.pause();
    return Promise.resolve({ cls: 'tcp', head: EMPTY, reason: 'unrecognised' });
  }
  return new Promise((resolve) => {
    new Sniffer(socket, opts, resolve).start();
  });
}

class Sniffer {
  private buf: Buffer = EMPTY;
  /** Bytes of `buf` in use (its tail is spare capacity once chunks were joined). */
  private len = 0;
  /** Bit i set while MATCHERS[i] may still say yes. */
  private alive = ALL;
  /** Per matcher: bytes it already answered 'more' for. */
  private readonly seen = new Uint32Array(MATCHERS.length);
  private timer: NodeJS.Timeout | undefined;
  private done = false;
  /** `buf` is our own growable buffer (not the first chunk node handed us). */
  private joined = false;
  private readonly onData = (chunk: Buffer): void => this.data(chunk);
  private readonly onEnd = (): void => this.fin();
  private readonly onClose = (): void => this.finish('tcp', 'closed');
  private readonly onTimeout = (): void => this.timeout();

  constructor(
    private readonly socket: net.Socket,
    private readonly opts: ClassifyOptions,
    private readonly resolve: (r: SniffResult) => void,
  ) {}

  start(): void {
    const s = this.socket;
    if (s.destroyed) {
      this.finish('tcp', 'closed');
      return;
    }
    if (s.readableEnded) {
      this.finish('tcp', 'unrecognised');
      return;
    }
    this.timer = setTimeout(this.onTimeout, this.opts.timeoutMs);
    s.on('data', this.onData);
    s.on('end', this.onEnd);
    // 'error' is followed by 'close'; a destroy() by someone else only gives 'close'.
    s.on('close', this.onClose);
    s.on('error', noop);
    s.resume();
  }

  private data(chunk: Buffer): void {
    if (this.done) return;
    this.append(chunk);
    const view = this.len === this.buf.length ? this.buf : this.buf.subarray(0, this.len);
    const cls = this.evaluate(view);
    if (cls !== undefined) {
      this.finish(cls, cls === 'tcp' ? 'unrecognised' : 'match');
    } else if (this.len >= this.opts.maxBytes) {
      const settled = this.settle(view);
      this.finish(settled ?? 'tcp', settled === undefined ? 'unrecognised' : 'match');
    }
  }

  /** The first chunk is kept as is (the common case: one read decides); later ones are joined. */
  private append(chunk: Buffer): void {
    const need = this.len + chunk.length;
    if (this.len === 0) {
      this.buf = chunk;
    } else if (this.joined && need <= this.buf.length) {
      chunk.copy(this.buf, this.len);
    } else {
      // Doubling keeps a one-byte-at-a-time client linear; the cap bounds the size (one
      // chunk may overshoot it: those bytes were read and must not be lost).
      const grown = Buffer.allocUnsafe(Math.max(need, Math.min(this.opts.maxBytes, need * 2)));
      this.buf.copy(grown, 0, 0, this.len);
      chunk.copy(grown, this.len);
      this.buf = grown;
      this.joined = true;
    }
    this.len = need;
  }

  /** The class decided by the bytes so far, or undefined to wait for more. */
  private evaluate(view: Buffer): SniffClass | undefined {
    let earlierPending = false;
    for (let i = 0; i < MATCHERS.length; i++) {
      const bit = 1 << i;
      if ((this.alive & bit) === 0) continue;
      const v = MATCHERS[i].match(view, this.seen[i]);
      if (v === 'no') {
        this.alive &= ~bit;
      } else if (v === 'yes') {
        // A higher-priority matcher still waiting could claim these bytes too.
        if (!earlierPending) return MATCHERS[i].cls;
        this.seen[i] = view.length;
      } else {
        earlierPending = true;
        this.seen[i] = view.length;
      }
    }
    return this.alive === 0 ? 'tcp' : undefined;
  }

  /** No more bytes before a decision: the first live matcher that claims what is there. */
  private settle(view: Buffer): SniffClass | undefined {
    for (let i = 0; i < MATCHERS.length; i++) {
      if ((this.alive & (1 << i)) !== 0 && MATCHERS[i].settle(view)) return MATCHERS[i].cls;
    }
    return undefined;
  }

  /**
   * The client half-closed (FIN) before a decision. It may still be reading (a client
   * that sends a request, shuts down its write side and waits for the reply; or sends
   * nothing at all and only reads), so this is not 'closed': what it sent is settled or
   * is tcp, and the proxy finds `readableEnded` set and forwards the FIN after `head`.
   */
  private fin(): void {
    if (this.done) return;
    const settled = this.len === 0 ? undefined : this.settle(this.buf.subarray(0, this.len));
    this.finish(settled ?? 'tcp', settled === undefined ? 'unrecognised' : 'match');
  }

  private timeout(): void {
    this.timer = undefined;
    if (this.done) return;
    if (this.len === 0) {
      this.finish('tcp', 'timeout');
      return;
    }
    // Bytes that started a protocol and then paused are not misrouted to tcp: the protocol's
    // proxy applies its own timeouts to the rest.
    const cls = this.settle(this.buf.subarray(0, this.len));
    if (cls !== undefined) this.finish(cls, 'match');
    else this.finish('tcp', 'timeout');
  }

  private finish(cls: SniffClass, reason: SniffResult['reason']): void {
    if (this.done) return;
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const s = this.socket;
    s.removeListener('data', this.onData);
    s.removeListener('end', this.onEnd);
    s.removeListener('close', this.onClose);
    s.removeListener('error', noop);
    s.pause();
    const head =
      this.len === 0 ? EMPTY : this.len === this.buf.length ? this.buf : this.buf.subarray(0, this.len);
    const result: SniffResult = { cls, head, reason };
    if (cls === 'tls') {
      const tls = tlsDetail(head);
      if (tls !== undefined) result.tls = tls;
    } else if (cls === 'thrift') {
      result.thrift = thriftDetail(head);
    }
    this.resolve(result);
  }
}
