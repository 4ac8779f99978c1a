import { createRequire } from 'node:module';
import type net from 'node:net';
import thrift from 'thrift';
import { fromRoot } from '../root.js';
import { type ListeningBackend, listenBackend } from './listen.js';

type Cb<T> = (err: unknown, res?: T) => void;

/** The methods of protos/calculator.thrift's Calculator that the demo client calls. */
export interface CalculatorClient {
  ping(cb: Cb<void>): void;
  add(a: number, b: number, cb: Cb<number>): void;
  whoami(cb: Cb<string>): void;
  echo(msg: string, cb: Cb<string>): void;
}
interface CalculatorModule {
  Client: thrift.TClientConstructor<CalculatorClient>;
  Processor: new (handler: object) => object;
}

let calculator: CalculatorModule | undefined;

/**
 * The Node code generated from protos/calculator.thrift
 * (`thrift --gen js:node -out examples/gen-nodejs protos/calculator.thrift`), committed so
 * the demo needs no Thrift compiler. It is CommonJS and never compiled, hence require.
 */
export function calculatorModule(): CalculatorModule {
  calculator ??= createRequire(import.meta.url)(fromRoot('examples', 'gen-nodejs', 'Calculator.js'));
  return calculator as CalculatorModule;
}

export type ThriftCalculator = ListeningBackend;

/**
 * A Calculator server (npm `thrift`, framed transport, binary protocol). `whoami` returns
 * the server's name so the demo shows which server took each call; `ping` is what the
 * gateway's `health: { type: thrift, method: ping }` calls.
 */
export function startThriftCalculator(
  port: number,
  name: string,
  host = '127.0.0.1',
): Promise<ThriftCalculator> {
  const handler = {
    ping: (cb: Cb<void>) => cb(null),
    add: (a: number, b: number, cb: Cb<number>) => cb(null, (a + b) | 0),
    calculate: (_logid: number, w: { num1: number; num2: number; op: number }, cb: Cb<number>) => {
      // Operation: ADD 1, SUBTRACT 2, MULTIPLY 3, DIVIDE 4 (protos/calculator.thrift).
      const r = [0, w.num1 + w.num2, w.num1 - w.num2, w.num1 * w.num2][w.op];
      cb(null, r ?? (w.num2 === 0 ? 0 : Math.trunc(w.num1 / w.num2)));
    },
    whoami: (cb: Cb<string>) => cb(null, name),
    echo: (msg: string, cb: Cb<string>) => cb(null, msg),
    mirror: (e: object, cb: Cb<object>) => cb(null, e),
    slow: (ms: number, cb: Cb<string>) => setTimeout(() => cb(null, `${name}:${ms}`), Math.min(ms, 10_000)),
    zip: () => {},
  };
  const server = thrift.createServer(calculatorModule().Processor, handler, {
    transport: thrift.TFramedTransport,
    protocol: thrift.TBinaryProtocol,
  }) as unknown as net.Server;
  // A peer that goes away mid-call is routine; the library re-emits it on the server.
  server.on('error', () => {});
  return listenBackend(server, port, host, name);
}
