// health.type grpc: grpc.health.v1.Health/Check with the configured `service` through
// @grpc/grpc-js (protos/health.proto). SERVING = up; NOT_SERVING, SERVICE_UNKNOWN,
// UNIMPLEMENTED, any other error and the timeout = down.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Member } from '../../balancer/types.js';
import { type CheckContext, type CheckOutcome, registerCheck } from './registry.js';

interface HealthClient extends grpc.Client {
  Check(
    req: { service: string },
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: { status: string }) => void,
  ): grpc.ClientUnaryCall;
}
type HealthCtor = new (
  address: string,
  creds: grpc.ChannelCredentials,
  opts?: grpc.ChannelOptions,
) => HealthClient;

let ctor: HealthCtor | undefined;

/** protos/ sits at the package root: 3 levels up from src/health/checks, 4 from dist/src/…. */
function protoPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const up of ['../../..', '../../../..']) {
    const p = path.resolve(here, up, 'protos', 'health.proto');
    if (fs.existsSync(p)) return p;
  }
  throw new Error('protos/health.proto not found');
}

function healthCtor(): HealthCtor {
  if (ctor === undefined) {
    const def = protoLoader.loadSync(protoPath(), { keepCase: true, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      grpc: { health: { v1: { Health: HealthCtor } } };
    };
    ctor = pkg.grpc.health.v1.Health;
  }
  return ctor;
}

/**
 * One call on a fresh channel per check: a kept channel would sit in grpc-js's reconnect
 * backoff after a restart and report a server down for longer than it is.
 */
export function grpcCheck(member: Member, ctx: CheckContext): Promise<CheckOutcome> {
  return new Promise((resolve) => {
    if (ctx.signal.aborted) {
      resolve({ ok: false, detail: 'timeout' });
      return;
    }
    const host = member.host || '127.0.0.1';
    const target = host.includes(':') ? `ipv6:[${host}]:${member.port}` : `${host}:${member.port}`;
    const Client = healthCtor();
    const client = new Client(target, grpc.credentials.createInsecure(), {
      'grpc.enable_retries': 0,
      'grpc.initial_reconnect_backoff_ms': 100,
    });
    let done = false;
    const finish = (o: CheckOutcome): void => {
      if (done) return;
      done = true;
      ctx.signal.removeEventListener('abort', onAbort);
      client.close();
      resolve(o);
    };
    const onAbort = (): void => {
      call.cancel();
      finish({ ok: false, detail: 'timeout' });
    };
    const call = client.Check(
      { service: ctx.config.service },
      new grpc.Metadata(),
      { deadline: Date.now() + ctx.timeout },
      (err, res) => {
        if (err) {
          const name = grpc.status[err.code] ?? String(err.code);
          finish({ ok: false, detail: err.code === grpc.status.DEADLINE_EXCEEDED ? 'timeout' : name });
          return;
        }
        const status = res?.status ?? 'UNKNOWN';
        finish({ ok: status === 'SERVING', detail: status });
      },
    );
    ctx.signal.addEventListener('abort', onAbort, { once: true });
  });
}

registerCheck('grpc', grpcCheck);
