// Where the demo's parts listen; examples/demo.yaml names the same addresses. All below
// 32768: the greeters are not on gRPC's usual 50051+ because that lies in the ephemeral
// port range of Linux (32768-60999) and macOS (49152-65535), where a busy machine's
// outgoing connections (and their TIME_WAIT) often hold the port and the bind fails.
import { startGrpcGreeter } from './backends/grpc-greeter.js';
import { startHttpHello } from './backends/http-hello.js';
import { startTcpEcho } from './backends/tcp-echo.js';
import { startThriftCalculator } from './backends/thrift-calculator.js';

/** Must match the servers of examples/demo.yaml. */
export const DEMO_BACKENDS = [
  { kind: 'gRPC greeter', start: startGrpcGreeter, servers: { g1: 5051, g2: 5052, g3: 5053 } },
  { kind: 'HTTP hello', start: startHttpHello, servers: { web1: 8081, web2: 8082 } },
  { kind: 'Thrift calculator', start: startThriftCalculator, servers: { calc1: 9090, calc2: 9091 } },
  { kind: 'TCP echo', start: startTcpEcho, servers: { echo1: 7001, echo2: 7002 } },
] as const;
export const DEMO_GATEWAY_PORT = 8080;
export const DEMO_ADMIN_PORT = 9901;
