#!/usr/bin/env bash
# The cost of counting: the grpc and h1 scenarios through Switchyard with metrics on
# (`admin: { metrics: true }`) and off (`admin: { metrics: false }`), interleaved in one
# run, then the throughput ratio on/off (medians, and the median of per-round ratios).
#   bash bench/metrics-cost.sh [-r ROUNDS (3)] [-d SECONDS (10)] [-o DIR] [SCENARIOS (grpc,h1)]
# Results: DIR/table.md (the harness's table), DIR/compare.md (the ratios).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lifecycle/overlay.sh"
# Ports of their own: other benchmark runs on this machine use the default base (21000).
export BENCH_PORT_BASE=${BENCH_PORT_BASE:-23000}
rounds=3 secs=10 out=""
while getopts "r:d:o:" opt; do
  case $opt in
    r) rounds=$OPTARG ;; d) secs=$OPTARG ;; o) out=$OPTARG ;;
    *) sed -n '2,7p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
scenarios=${1:-grpc,h1}
out=${out:-$here/results/metrics-cost-$(date +%Y%m%d-%H%M%S)}
overlay_run "$out" -n -r "$rounds" -d "$secs" "$scenarios" switchyard-metrics-off switchyard-metrics-on || exit 1
node "$here/lifecycle/compare.js" "$out" switchyard-metrics-off switchyard-metrics-on | tee "$out/compare.md"
