// One client connection: splits its bytes into calls, starts each call on its own, and
// writes the replies back in the order the calls came (docs/thrift.md, "Reply order").
import type net from 'node:net';
import { CALL, ONEWAY, type ThriftProtocol, type ThriftTransport } from '../../codec/thrift/constants.js';
import { detectProtocol } from '../../codec/thrift/message.js';
import { MessageReader, type ThriftMessage } from '../../codec/thrift/reader.js';
import type { ClientConn } from '../../core/proxy.js';
import { Call } from './call.js';
import type { ThriftProxy } from './index.js';

export class ClientSession {
  readonly proxy: ThriftProxy;
  readonly conn: ClientConn;
  readonly socket: net.Socket;
  readonly transport: ThriftTransport;
  readonly reader: MessageReader;
  /** Two-way calls whose replies are owed, oldest first; `head` indexes the oldest. */
  private readonly queue: (Call | undefined)[] = [];
  private head = 0;
  /** Calls taken and not yet answered to the client (oneway: not yet forwarded). */
  outstanding = 0;
  closed = false;
  private clientEnded = false;
  private draining = false;
  private paused = true;
  private pumping = false;
  private ending = false;
  /** I/O since the last idle sweep; `idleSince` when the sweep found none. */
  private active = true;
  private idleSince = 0;
  /** Corked for a batch of replies (ThriftProxy.flushBatched uncorks). */
  batched = false;

  constructor(proxy: ThriftProxy, conn: ClientConn) {
    this.proxy = proxy;
    this.conn = conn;
    const socket = conn.socket;
    this.socket = socket;
    const head = conn.sniff.head;
    const t = conn.sniff.thrift;
    const transport: ThriftTransport =
      t?.transport ?? (head[0] === 0x80 || head[0] === 0x82 ? 'unframed' : 'framed');
    let protocol: ThriftProtocol | undefined =
      t?.protocol === 'binary' || t?.protocol === 'compact' ? t.protocol : undefined;
    if (protocol === undefined) {
      const off = transport === 'unframed' ? 0 : 4;
      protocol = detectProtocol(head[off], head[off + 1]) ?? 'binary';
    }
    this.transport = transport;
    this.reader = new MessageReader(transport, protocol, conn.listener.current.limits.thriftFrame);
    socket.setNoDelay(true);
    socket.on('error', noop);
    socket.on('data', (chunk: Buffer) => {
      this.active = true;
      this.reader.push(chunk);
      this.pump();
    });
    socket.on('end', () => {
      this.clientEnded = true;
      this.maybeEnd();
    });
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.pump());
    if (head.length > 0) this.reader.push(head);
    this.pump();
  }

  /** Starts every complete call the limits allow, then reads on or pauses. */
  pump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    const max = this.conn.listener.current.limits.pipelined;
    const reader = this.reader;
    const backends = this.proxy.backends;
    while (this.outstanding < max && !this.ending) {
      const msg = reader.next();
      if (msg === undefined) break;
      // Several calls in this read: batch what goes to each backend connection.
      if (reader.buffered > 0) backends.corking = true;
      this.dispatch(msg);
      if (this.closed) break;
    }
    // Corked backend connections are uncorked at the end of this event-loop turn.
    backends.corking = false;
    this.pumping = false;
    if (this.closed) return;
    if (reader.error !== undefined) {
      this.protocolError(reader.error, reader.tooLarge);
      return;
    }
    const stop = this.outstanding >= max || this.socket.writableNeedDrain || this.ending;
    if (stop !== this.paused) {
      this.paused = stop;
      if (stop) this.socket.pause();
      else this.socket.resume();
    }
    this.maybeEnd();
  }

  private dispatch(msg: ThriftMessage): void {
    const type = msg.header.type;
    if (type !== CALL && type !== ONEWAY) {
      this.protocolError(`client sent a message of type ${type}, not a call`, false);
      return;
    }
    const call = new Call(this, msg);
    this.outstanding++;
    if (!call.oneway) this.queue.push(call);
    call.begin();
  }

  /** A reply became ready: write every reply that is next in order. */
  replyReady(): void {
    const q = this.queue;
    let wrote = false;
    let corked = false;
    if (!this.batched && this.outstanding > 1 && !this.closed) {
      // More replies are owed (a pipelining client): gather what this turn of the event
      // loop produces into one write, flushed right after the I/O callbacks run.
      this.batched = true;
      this.socket.cork();
      this.proxy.batch(this);
    }
    while (this.head < q.length) {
      const call = q[this.head]!;
      const parts = call.reply;
      if (parts === undefined) break;
      q[this.head] = undefined;
      this.head++;
      this.outstanding--;
      if (!this.closed) {
        this.active = true;
        // Several buffers (a transport prefix, a batch of replies) go out in one writev.
        if (
          !wrote &&
          !this.batched &&
          (parts.length > 1 || (this.head < q.length && q[this.head]!.reply !== undefined))
        ) {
          this.socket.cork();
          corked = true;
        }
        wrote = true;
        for (let i = 0; i < parts.length; i++) this.socket.write(parts[i]);
      }
    }
    if (this.head === q.length) {
      q.length = 0;
      this.head = 0;
    } else if (this.head > 1024) {
      q.splice(0, this.head);
      this.head = 0;
    }
    if (corked) this.socket.uncork();
    if (!this.pumping) this.pump();
  }

  onewayDone(): void {
    this.outstanding--;
    if (!this.pumping) this.pump();
  }

  /** Idle sweep (ThriftProxy): `timeouts.client_idle` without I/O and nothing owed closes. */
  sweep(now: number): void {
    if (this.active) {
      this.active = false;
      this.idleSince = now;
      return;
    }
    if (this.outstanding === 0 && now - this.idleSince >= this.conn.listener.current.timeouts.clientIdle) {
      this.close('idle');
    }
  }

  /** Graceful stop: close between calls. */
  drain(): void {
    this.draining = true;
    this.maybeEnd();
  }

  private maybeEnd(): void {
    if (this.closed || this.ending || this.outstanding !== 0) return;
    // Between calls: nothing owed, no call half-read.
    if (this.clientEnded || (this.draining && !this.reader.partial)) this.close('end');
  }

  /** Ends the connection once what is written is flushed. */
  private close(_why: string): void {
    if (this.ending || this.closed) return;
    this.ending = true;
    const s = this.socket;
    s.end(() => s.destroy());
  }

  private protocolError(why: string, tooLarge: boolean): void {
    const c = this.conn;
    this.proxy.ctx.logger.warn(
      {
        type: 'event',
        event: tooLarge ? 'thrift_too_large' : 'thrift_protocol_error',
        listener: c.listener.name,
        client: c.clientAddr,
        detail: why,
      },
      tooLarge
        ? 'thrift message over the size limit: connection closed'
        : 'bad thrift input: connection closed',
    );
    this.socket.destroy();
    this.onClose();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.proxy.sessionClosed(this);
  }
}

function noop(): void {}
