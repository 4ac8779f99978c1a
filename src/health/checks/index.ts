// Every check module registers itself on import. A new check type = one file calling
// registerCheck('type', fn) + one import line here.
import './tcp.js';
import './http.js';
import './thrift.js';
import './grpc.js';

export {
  type CheckContext,
  type CheckOutcome,
  getCheck,
  type HealthCheck,
  registerCheck,
} from './registry.js';
