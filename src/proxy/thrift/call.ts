// One Thrift call: routed, balanced and sent on its own (docs/thrift.md).
import { performance } from 'node:perf_hooks';
import type { Member, Pick, PoolLike } from '../../balancer/types.js';
import { EXCEPTION, ONEWAY, TAppErr } from '../../codec/thrift/constants.js';
import { writeApplicationException } from '../../codec/thrift/exception.js';
import { convert, withHeader, wrap } from '../../codec/thrift/frame.js';
import { nameOf, rewriteSeqid } from '../../codec/thrift/message.js';
import type { ThriftMessage } from '../../codec/thrift/reader.js';
import { transcode } from '../../codec/thrift/transcode.js';
import type { PoolConfig } from '../../config/runtime.js';
import { msSince } from '../../core/duration.js';
import type { Outcome } from '../../core/types.js';
import type { CompiledRoute } from '../../router/types.js';
import type {
  BackendCall,
  BackendConn,
  BackendFailure,
  BackendOptions,
  BackendWaiter,
  ConnGroup,
} from '../../upstream/thrift-pool.js';
import type { DeadlineList, Timed } from './deadlines.js';
import type { ClientSession } from './session.js';

type Lease = Extract<Pick, { ok: true }>;

export class Call implements BackendCall, BackendWaiter, Timed {
  readonly session: ClientSession;
  readonly msg: ThriftMessage;
  readonly service: string | undefined;
  readonly method: string;
  /** The client's seqid, restored on the reply. */
  readonly seqid: number;
  readonly oneway: boolean;
  readonly start = performance.now();
  route: CompiledRoute | undefined;
  pool: PoolLike | undefined;
  pc: PoolConfig | undefined;
  opts: BackendOptions | undefined;
  lease: Lease | undefined;
  member: Member | undefined;
  /** Set while waiting for a backend connection. */
  waitingOn: ConnGroup | undefined;
  backend: BackendConn | undefined;
  backendSeqid = 0;
  // Request timeout (deadlines.ts).
  deadline = 0;
  tPrev: Timed | undefined;
  tNext: Timed | undefined;
  tList: DeadlineList | undefined;
  avoid: Member[] | undefined;
  retries = 0;
  /** The reply in the client's transport, once known. */
  reply: Buffer[] | undefined;
  replyBytes = 0;
  finished = false;
  outcome: Outcome = 'ok';
  detail: string | undefined;
  thriftType: string;

  constructor(session: ClientSession, msg: ThriftMessage) {
    this.session = session;
    this.msg = msg;
    const h = msg.header;
    // TMultiplexedProtocol: "Service:method", split at the first ':'.
    const i = h.name.indexOf(':');
    this.service = i < 0 ? undefined : h.name.slice(0, i);
    this.method = i < 0 ? h.name : h.name.slice(i + 1);
    this.seqid = h.seqid;
    this.oneway = h.type === ONEWAY;
    this.thriftType = this.oneway ? 'oneway' : 'reply';
  }

  begin(): void {
    const s = this.session;
    const snap = s.conn.listener.current;
    const key = s.proxy.routeKey;
    key.source = s.conn.clientIp;
    key.method = this.method;
    key.service = this.service;
    const route = snap.router.route(key);
    this.route = route;
    if (route === undefined) {
      this.fail(TAppErr.UNKNOWN_METHOD, `no route for ${this.msg.header.name}`, 'no_route');
      return;
    }
    if (route.deny) {
      this.fail(
        TAppErr.INTERNAL_ERROR,
        `call ${this.msg.header.name} denied by route ${route.name}`,
        'denied',
      );
      return;
    }
    const pc = route.poolConfig;
    if (route.pool === undefined || pc === undefined || pc.protocol !== 'thrift') {
      this.fail(TAppErr.INTERNAL_ERROR, `route ${route.name} has no thrift pool`, 'no_route');
      return;
    }
    this.pool = route.pool;
    this.pc = pc;
    const state = s.proxy.poolState(pc, snap.limits.thriftFrame);
    this.opts = state.opts;
    state.deadlines.add(this, this.start);
    this.pick();
  }

  private pick(): void {
    const pc = this.pc!;
    const req = this.session.proxy.pickReq;
    const hash = pc.hash;
    req.hashKey =
      hash === undefined
        ? undefined
        : hash.kind === 'thrift-method'
          ? this.msg.header.name
          : hash.kind === 'source'
            ? this.session.conn.clientIp
            : undefined;
    req.avoid = this.avoid;
    const p = this.pool!.pick(req);
    req.avoid = undefined;
    if (!p.ok) {
      this.fail(
        TAppErr.INTERNAL_ERROR,
        p.reason === 'full'
          ? `every server of pool ${pc.name} is at maxconn`
          : `no server available in pool ${pc.name}`,
        'no_server',
      );
      return;
    }
    this.lease = p;
    this.member = p.member;
    const group = this.session.proxy.backends.group(p.member, this.opts!);
    const conn = group.acquire(this);
    if (conn !== undefined) this.send(conn);
    else this.waitingOn = group;
  }

  onConnected(conn: BackendConn): void {
    this.waitingOn = undefined;
    if (this.finished) {
      conn.group.release(conn);
      return;
    }
    if (this.session.closed && !this.oneway) {
      // Nobody would read the reply: the call is not sent (a oneway call still is).
      conn.group.release(conn);
      this.lease?.release({ ok: true });
      this.lease = undefined;
      this.outcome = 'client_reset';
      this.detail = 'client closed before the call was sent';
      this.finish();
      return;
    }
    this.send(conn);
  }

  onConnectFailed(detail: string): void {
    this.waitingOn = undefined;
    if (this.finished) return;
    const member = this.member!;
    this.lease!.release({ ok: false, failure: 'connect' });
    this.lease = undefined;
    const r = this.pc!.retries;
    // Nothing was sent: trying another server is safe.
    if (this.retries < r.attempts && r.on.includes('connect-failure')) {
      this.retries++;
      this.avoid ??= [];
      this.avoid.push(member);
      this.pick();
      return;
    }
    this.fail(TAppErr.INTERNAL_ERROR, `server ${member.name}: connect failed (${detail})`, 'connect_failure');
  }

  /** Puts the call on `conn`: backend seqid in, transport (and protocol) converted. */
  private send(conn: BackendConn): void {
    const msg = this.msg;
    const h = msg.header;
    const opts = this.opts!;
    const seq = conn.allocSeqid(h.seqidLength);
    let parts: Buffer[];
    const strip = this.pc!.thrift.stripService && this.service !== undefined;
    if (h.protocol !== opts.protocol) {
      const t = transcode(msg, opts.protocol, strip ? this.method : h.name, seq, opts.maxMessage);
      if (typeof t === 'string') {
        conn.group.release(conn);
        this.lease!.release({ ok: true });
        this.lease = undefined;
        this.fail(TAppErr.PROTOCOL_ERROR, `cannot convert the call to ${opts.protocol}: ${t}`, 'bad_request');
        return;
      }
      parts = wrap(t, opts.transport);
    } else if (strip) {
      parts = wrap(withHeader(msg, this.method, seq), opts.transport);
    } else if (rewriteSeqid(msg.parts[0], h, seq)) {
      parts = convert(msg, opts.transport);
    } else {
      parts = wrap(withHeader(msg, h.name, seq), opts.transport);
    }
    this.backend = conn;
    this.backendSeqid = seq;
    if (this.oneway) conn.send(undefined, seq, parts, onOnewayWritten.bind(this));
    else conn.send(this, seq, parts);
  }

  onReply(reply: ThriftMessage): void {
    if (this.finished) return;
    const s = this.session;
    const h = reply.header;
    let parts: Buffer[];
    let size: number;
    if (h.protocol !== this.msg.header.protocol) {
      const t = transcode(
        reply,
        this.msg.header.protocol,
        nameOf(reply.parts[0], h),
        this.seqid,
        this.opts!.maxMessage,
      );
      if (typeof t === 'string') {
        this.lease!.release({ ok: true, bytesIn: this.msg.size, bytesOut: reply.size });
        this.lease = undefined;
        this.fail(TAppErr.PROTOCOL_ERROR, `cannot convert the reply: ${t}`, 'bad_reply');
        return;
      }
      parts = wrap(t, s.transport, this.msg.theader);
      size = t.length;
    } else {
      if (rewriteSeqid(reply.parts[0], h, this.seqid)) parts = convert(reply, s.transport, this.msg.theader);
      else
        parts = wrap(withHeader(reply, nameOf(reply.parts[0], h), this.seqid), s.transport, this.msg.theader);
      size = reply.size - reply.prefix;
    }
    if (s.transport === 'framed') size += 4;
    else if (s.transport === 'header') size += 18;
    if (h.type === EXCEPTION) this.thriftType = 'exception';
    this.lease!.release({ ok: true, bytesIn: this.msg.size, bytesOut: reply.size });
    this.lease = undefined;
    this.complete(parts, size);
  }

  onBackendError(kind: BackendFailure, detail: string): void {
    if (this.finished) return;
    if (this.session.proxy.cutting) {
      this.lease?.release({ ok: true, bytesIn: this.msg.size });
      this.lease = undefined;
      this.outcome = 'cut';
      this.detail = 'gateway stopping: grace ran out';
      this.finish();
      return;
    }
    this.lease?.release({ ok: false, failure: 'reset', bytesIn: this.msg.size });
    this.lease = undefined;
    const server = this.member?.name ?? '?';
    if (this.oneway) {
      this.outcome = 'server_reset';
      this.detail = `server ${server}: ${detail}`;
      this.finish();
      return;
    }
    this.fail(
      TAppErr.INTERNAL_ERROR,
      `server ${server}: ${detail} before replying`,
      kind === 'too_large' ? 'too_large' : 'server_reset',
    );
  }

  onTimeout(): void {
    if (this.finished) return;
    if (this.waitingOn !== undefined) {
      this.waitingOn.cancel(this);
      this.waitingOn = undefined;
    }
    if (this.backend !== undefined && !this.oneway) this.backend.abandon(this, this.backendSeqid);
    this.lease?.release({ ok: false, failure: 'timeout', bytesIn: this.msg.size });
    this.lease = undefined;
    this.fail(TAppErr.INTERNAL_ERROR, `no reply within ${this.pc!.timeouts.request} ms`, 'timeout');
  }

  /**
   * Ends the call with a gateway-made TApplicationException (a oneway call just ends: its
   * client reads no reply). The reply carries the bare method name, as a multiplexed
   * server's would: clients look up the reply handler by it.
   */
  fail(type: number, why: string, outcome: Outcome): void {
    this.outcome = outcome;
    this.detail = why;
    if (this.lease !== undefined) {
      this.lease.release({ ok: true, bytesIn: this.msg.size });
      this.lease = undefined;
    }
    if (this.oneway) {
      this.finish();
      return;
    }
    this.thriftType = 'exception';
    const s = this.session;
    const buf = writeApplicationException({
      transport: s.transport,
      protocol: this.msg.header.protocol,
      name: this.method,
      seqid: this.seqid,
      type,
      message: `switchyard: ${why}`,
      theader: this.msg.theader,
    });
    this.complete([buf], buf.length);
  }

  private complete(parts: Buffer[], size: number): void {
    this.reply = parts;
    this.replyBytes = size;
    this.finish();
    this.session.replyReady();
  }

  /** Logs the call and frees its slot. Once. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.tList?.remove(this);
    const s = this.session;
    if (s.closed && this.outcome === 'ok' && !this.oneway) this.outcome = 'client_reset';
    s.proxy.ctx.finish({
      proto: 'thrift',
      listener: s.conn.listener.name,
      route: this.route?.name,
      pool: this.pc?.name,
      server: this.member?.name,
      client: s.conn.clientAddr,
      method: this.method,
      service: this.service,
      thrift_type: this.thriftType,
      seqid: this.seqid,
      bytes_in: this.msg.size,
      bytes_out: this.replyBytes,
      duration_ms: msSince(this.start),
      outcome: this.outcome,
      detail: this.detail,
      retries: this.retries === 0 ? undefined : this.retries,
    });
    if (this.oneway) s.onewayDone();
  }
}

function onOnewayWritten(this: Call, err?: Error | null): void {
  if (this.finished) return;
  if (err) {
    this.onBackendError('error', `write failed: ${err.message}`);
    return;
  }
  this.lease?.release({ ok: true, bytesIn: this.msg.size });
  this.lease = undefined;
  this.finish();
}
