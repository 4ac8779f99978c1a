'use strict';
// Compares two targets of one bench run, scenario by scenario: medians, the ratio of the
// medians, the median of per-round ratios (each round runs the two back to back, so a
// per-round ratio cancels most of the machine's drift), and the same for throughput per
// proxy CPU second. With --reloads, also counts the SIGHUP reloads the gateway applied
// (and rejected) during each measured run of the second target, from its proxy.log.
// Usage: node compare.js RUN_DIR BASE_TARGET OTHER_TARGET [--reloads] [--json]
const fs = require('node:fs');
const path = require('node:path');

const [dir, base, other, ...flags] = process.argv.slice(2);
const rows = fs
  .readFileSync(path.join(dir, 'results.jsonl'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l));
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const perCore = (r) => (r.proxy_cpu ? r.value / r.proxy_cpu : null);

/** Reloads applied / rejected between t0 and t1 of one run, from the gateway's log. */
function reloadsIn(wd) {
  const t0 = Number(fs.readFileSync(path.join(wd, 't0'), 'utf8'));
  const t1 = Number(fs.readFileSync(path.join(wd, 't1'), 'utf8'));
  let ok = 0;
  let failed = 0;
  let all = 0;
  for (const line of fs.readFileSync(path.join(wd, 'proxy.log'), 'utf8').split('\n')) {
    if (!line.includes('"event":"reload"')) continue;
    const r = JSON.parse(line);
    all++;
    const at = Date.parse(r.time) / 1000;
    if (at < t0 || at > t1) continue;
    if (r.ok) ok++;
    else failed++;
  }
  return { ok, failed, all };
}

const out = [];
for (const scenario of [...new Set(rows.map((r) => r.scenario))]) {
  const a = rows.filter((r) => r.scenario === scenario && r.target === base);
  const b = rows.filter((r) => r.scenario === scenario && r.target === other);
  const ratios = [];
  const coreRatios = [];
  for (const rb of b) {
    const ra = a.find((x) => x.round === rb.round);
    if (!ra || !ra.ok || !rb.ok) continue;
    ratios.push(rb.value / ra.value);
    const ca = perCore(ra);
    const cb = perCore(rb);
    if (ca && cb) coreRatios.push(cb / ca);
  }
  const okA = a.filter((r) => r.ok);
  const okB = b.filter((r) => r.ok);
  const res = {
    scenario,
    unit: (a[0] ?? b[0])?.unit,
    rounds: Math.max(a.length, b.length),
    [base]: { median: median(okA.map((r) => r.value)), values: a.map((r) => r.value), ok: okA.length },
    [other]: { median: median(okB.map((r) => r.value)), values: b.map((r) => r.value), ok: okB.length },
    ratio_of_medians: null,
    median_round_ratio: median(ratios),
    round_ratios: ratios.map((x) => Math.round(x * 1000) / 1000),
    median_round_ratio_per_proxy_core: median(coreRatios),
    errors: [...a, ...b].filter((r) => !r.ok).map((r) => `${r.target} r${r.round}: ${r.error}`),
  };
  if (res[base].median && res[other].median) res.ratio_of_medians = res[other].median / res[base].median;
  if (flags.includes('--reloads')) {
    res.reloads = b.map((r) => ({ round: r.round, ...reloadsIn(path.join(dir, scenario, other, `r${r.round}`)) }));
  }
  out.push(res);
}
if (flags.includes('--json')) {
  console.log(JSON.stringify(out, null, 2));
} else {
  const f = (x, d = 3) => (x === null || x === undefined ? '-' : Number(x).toFixed(d));
  console.log(
    `| scenario | ${base} (median) | ${other} (median) | ratio of medians | median per-round ratio | per proxy core | rounds |`,
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of out) {
    console.log(
      `| ${r.scenario} | ${f(r[base].median, 0)} ${r.unit} | ${f(r[other].median, 0)} ${r.unit} | ${f(r.ratio_of_medians)} | ${f(r.median_round_ratio)} (${r.round_ratios.join(', ')}) | ${f(r.median_round_ratio_per_proxy_core)} | ${r[base].ok}+${r[other].ok} ok of ${r.rounds} |`,
    );
  }
  for (const r of out) {
    for (const e of r.errors) console.log(`error: ${r.scenario}: ${e}`);
    if (r.reloads) {
      console.log(
        `${r.scenario}: reloads applied during the measured runs: ${r.reloads.map((x) => `r${x.round} ${x.ok} ok, ${x.failed} rejected (${x.all} in the whole run)`).join('; ')}`,
      );
    }
  }
}
