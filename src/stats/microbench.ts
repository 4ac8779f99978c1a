// Cost of StatsRegistry.record per unit of work:
//   node --import tsx src/stats/microbench.ts [N]
// Records are built up front (as the gateway builds them anyway for the access log), so
// the loop measures counting alone. Figures go to docs/admin.md.
import type { AccessRecord } from '../core/types.js';
import { StatsRegistry } from './registry.js';

const N = Number(process.argv[2] ?? 1e6);
const listeners = ['edge', 'internal'];
const routes = ['edge/routes[0]', 'edge/routes[1]', 'edge/routes[2]'];
const servers = ['g1', 'g2', 'g3', 'g4'];
const recs: AccessRecord[] = [];
for (let i = 0; i < 1024; i++) {
  const kind = i % 3;
  recs.push({
    proto: kind === 0 ? 'grpc' : kind === 1 ? 'http1' : 'thrift',
    listener: listeners[i % 2],
    route: routes[i % 3],
    pool: kind === 0 ? 'greeters' : kind === 1 ? 'web' : 'calc',
    server: servers[i % 4],
    client: '127.0.0.1:40000',
    grpc_status: kind === 0 ? (i % 50 === 0 ? 14 : 0) : undefined,
    status: kind === 1 ? (i % 40 === 0 ? 503 : 200) : kind === 0 ? 200 : undefined,
    thrift_type: kind === 2 ? 'reply' : undefined,
    bytes_in: 100 + i,
    bytes_out: 200 + i,
    duration_ms: (i % 97) / 7,
    outcome: i % 64 === 0 ? 'timeout' : 'ok',
  });
}

function run(reg: StatsRegistry, n: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) reg.record(recs[i & 1023]);
  return Number(process.hrtime.bigint() - t0) / n;
}

const reg = new StatsRegistry(() => ({ listeners: [], pools: new Map() }), { timer: false });
run(reg, 200_000); // warm up: JIT, and create every series
const results: number[] = [];
for (let r = 0; r < 5; r++) results.push(run(reg, N));
results.sort((a, b) => a - b);
const off = new StatsRegistry(() => ({ listeners: [], pools: new Map() }), { timer: false });
off.enabled = false;
run(off, 200_000);
const offNs = run(off, N);
console.log(
  `record: median ${results[2].toFixed(1)} ns, best ${results[0].toFixed(1)} ns per record over ${N} ` +
    `(${reg.seriesList.length} series); disabled: ${offNs.toFixed(1)} ns`,
);

// Scrape cost with many series (no process metrics): 1000 series × a few cells each.
const big = new StatsRegistry(() => ({ listeners: [], pools: new Map() }), { timer: false });
for (let i = 0; i < 20_000; i++) {
  const r = recs[i & 1023];
  big.record({ ...r, route: `r${i % 25}`, server: `s${i % 40}` });
}
const { renderPrometheus } = await import('./render/prometheus.js');
const { buildStats } = await import('./render/json.js');
await renderPrometheus(big, { process: false });
let t0 = performance.now();
const text = await renderPrometheus(big, { process: false });
const promMs = performance.now() - t0;
t0 = performance.now();
buildStats(big);
const jsonMs = performance.now() - t0;
console.log(
  `scrape: ${big.seriesList.length} series → /metrics ${promMs.toFixed(1)} ms (${(text.length / 1024).toFixed(0)} KiB), ` +
    `stats.json model ${jsonMs.toFixed(1)} ms`,
);
