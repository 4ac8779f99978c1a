import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fromRoot } from '../root.js';

export interface HelloRequest {
  name: string;
}
export interface HelloReply {
  message: string;
}
type ServingStatus = 'SERVING' | 'NOT_SERVING';

/** What the health service answers for: the whole server ("") and the Greeter. */
const SERVICES = new Set(['', 'helloworld.Greeter']);

interface Loaded {
  greeter: grpc.ServiceDefinition;
  health: grpc.ServiceDefinition;
  GreeterClient: grpc.ServiceClientConstructor;
}
let loaded: Loaded | undefined;

/** helloworld.Greeter and grpc.health.v1.Health from protos/, loaded once per process. */
export function loadProtos(): Loaded {
  if (loaded !== undefined) return loaded;
  const opts: protoLoader.Options = { keepCase: true, enums: String, defaults: true };
  const def = protoLoader.loadSync(
    [fromRoot('protos', 'helloworld.proto'), fromRoot('protos', 'health.proto')],
    opts,
  );
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    helloworld: { Greeter: grpc.ServiceClientConstructor };
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  loaded = {
    greeter: pkg.helloworld.Greeter.service,
    health: pkg.grpc.health.v1.Health.service,
    GreeterClient: pkg.helloworld.Greeter,
  };
  return loaded;
}

export interface GrpcGreeter {
  readonly name: string;
  readonly port: number;
  /** What grpc.health.v1.Health/Check answers from now on (the gateway's check follows it). */
  setServing(serving: boolean): void;
  close(): Promise<void>;
}

/**
 * A grpc-js server with helloworld.Greeter/SayHello ("Hello NAME from gN") and the standard
 * health service, implemented here so the gateway's `health: { type: grpc }` has something
 * real to ask.
 */
export async function startGrpcGreeter(port: number, name: string, host = '127.0.0.1'): Promise<GrpcGreeter> {
  const { greeter, health } = loadProtos();
  let status: ServingStatus = 'SERVING';
  const watchers = new Set<grpc.ServerWritableStream<{ service: string }, { status: string }>>();
  const server = new grpc.Server();
  server.addService(greeter, {
    SayHello(call: grpc.ServerUnaryCall<HelloRequest, HelloReply>, cb: grpc.sendUnaryData<HelloReply>) {
      cb(null, { message: `Hello ${call.request.name || 'world'} from ${name}` });
    },
  });
  server.addService(health, {
    Check(
      call: grpc.ServerUnaryCall<{ service: string }, { status: string }>,
      cb: grpc.sendUnaryData<object>,
    ) {
      // grpc.health.v1: an unknown service is the NOT_FOUND status, not a reply.
      if (!SERVICES.has(call.request.service))
        cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
      else cb(null, { status });
    },
    Watch(call: grpc.ServerWritableStream<{ service: string }, { status: string }>) {
      call.write({ status: SERVICES.has(call.request.service) ? status : 'SERVICE_UNKNOWN' });
      watchers.add(call);
      call.on('cancelled', () => watchers.delete(call));
    },
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err) {
        server.forceShutdown();
        reject(err);
      } else resolve(p);
    }),
  );
  return {
    name,
    port: bound,
    setServing(serving) {
      status = serving ? 'SERVING' : 'NOT_SERVING';
      for (const w of watchers) if (SERVICES.has(w.request.service)) w.write({ status });
    },
    close() {
      for (const w of watchers) w.end();
      watchers.clear();
      return new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        // tryShutdown waits for clients to go away; the gateway's pooled sessions would hold it.
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 500).unref();
      });
    },
  };
}
