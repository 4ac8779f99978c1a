// What the proxy harnesses stand in front of: the first listener of a YAML config as the
// gateway builds it (real loader, balancer Pools, compiled router), without binding it.
import { Pool } from '../../src/balancer/pool.js';
import type { PoolLike } from '../../src/balancer/types.js';
import { loadConfigText } from '../../src/config/load.js';
import type { PoolConfig } from '../../src/config/runtime.js';
import type { ListenerState } from '../../src/core/proxy.js';
import { compileRouter } from '../../src/router/compile.js';

export function listenerFromYaml(
  yaml: string,
  file: string,
): { pools: Map<string, Pool>; state: ListenerState } {
  const loaded = loadConfigText(yaml, file);
  if (!loaded.ok) throw new Error(`bad test config: ${loaded.errors.join('; ')}`);
  const cfg = loaded.config;
  const pools = new Map<string, Pool>();
  const livePools = new Map<string, { pool: PoolLike; config: PoolConfig }>();
  for (const [name, pc] of cfg.pools) {
    const pool = new Pool(pc);
    pools.set(name, pool);
    livePools.set(name, { pool, config: pc });
  }
  const lc = cfg.listeners[0];
  const state: ListenerState = {
    name: lc.name,
    current: {
      config: lc,
      router: compileRouter(lc.routes, livePools),
      timeouts: lc.timeouts,
      limits: lc.limits,
      pools: livePools,
    },
    connections: { active: 0, total: 0, refused: 0, sniffTimeouts: 0 },
  };
  return { pools, state };
}
