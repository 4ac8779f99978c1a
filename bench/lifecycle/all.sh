#!/usr/bin/env bash
# metrics-cost.sh and reload-under-load.sh in one harness run (one benchmark lock, every
# target interleaved in each round): switchyard, switchyard-reload, switchyard-reload-same,
# switchyard-metrics-off, switchyard-metrics-on on the grpc and h1 scenarios.
#   bash bench/lifecycle/all.sh [-r ROUNDS (5)] [-d SECONDS (10)] [-o DIR] [SCENARIOS (grpc,h1)]
# Results: DIR/table.md, DIR/compare.md (the three comparisons).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/overlay.sh"
export BENCH_PORT_BASE=${BENCH_PORT_BASE:-23000}
rounds=5 secs=10 out=""
while getopts "r:d:o:" opt; do
  case $opt in
    r) rounds=$OPTARG ;; d) secs=$OPTARG ;; o) out=$OPTARG ;;
    *) sed -n '2,6p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
scenarios=${1:-grpc,h1}
out=${out:-$LC_BENCH/results/lifecycle-$(date +%Y%m%d-%H%M%S)}
overlay_run "$out" -n -r "$rounds" -d "$secs" "$scenarios" \
  switchyard switchyard-reload switchyard-reload-same switchyard-metrics-off switchyard-metrics-on || true
[[ -s $out/table.md ]] || node "$LC_BENCH/lib/report.js" "$out/results.jsonl" >"$out/table.md"
{
  echo "## metrics on / off"
  node "$here/compare.js" "$out" switchyard-metrics-off switchyard-metrics-on
  echo
  echo "## reload every second (a server added or removed each time) / no reloads"
  node "$here/compare.js" "$out" switchyard switchyard-reload --reloads
  echo
  echo "## reload every second (same config) / no reloads"
  node "$here/compare.js" "$out" switchyard switchyard-reload-same --reloads
} | tee "$out/compare.md"
