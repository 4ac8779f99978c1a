// PoolConfig objects for tests that drive a Pool, the stats or the admin API directly (no
// YAML): every field a config load would fill, with the test's choices on top.
import type { MemberSpec } from '../../src/balancer/types.js';
import { DEFAULT_TIMEOUTS } from '../../src/config/defaults.js';
import type { PoolConfig } from '../../src/config/runtime.js';
import type { HealthCheckType } from '../../src/core/types.js';

export function testPoolConfig(
  name: string,
  servers: MemberSpec[],
  opts: Partial<PoolConfig> & { healthType?: HealthCheckType; healthPath?: string } = {},
): PoolConfig {
  const { healthType = 'none', healthPath = '/', ...rest } = opts;
  return {
    name,
    protocol: 'tcp',
    balance: 'roundrobin',
    health: {
      type: healthType,
      interval: 2000,
      timeout: 1000,
      rise: 2,
      fall: 3,
      service: '',
      path: healthPath,
      expect: [200, 399],
      method: 'ping',
    },
    retries: { attempts: 0, on: [] },
    thrift: { transport: 'framed', protocol: 'binary', stripService: false, pipelining: false },
    timeouts: { ...DEFAULT_TIMEOUTS },
    servers,
    ...rest,
  };
}

/** Servers named `names` on 127.0.0.1, ports from `basePort` up (nothing listens there). */
export function testServers(names: string[], basePort: number): MemberSpec[] {
  return names.map((name, i) => ({
    name,
    address: `127.0.0.1:${basePort + i}`,
    host: '127.0.0.1',
    port: basePort + i,
    weight: 1,
    backup: false,
    maxconn: 0,
  }));
}
