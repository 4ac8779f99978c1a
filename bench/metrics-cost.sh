#!/usr/bin/env bash
# The cost of counting: the grpc and h1 scenarios through Switchyard with metrics on
# (`admin: { metrics: true }`) and off (`admin: { metrics: false }`), interleaved in one
# run, then the throughput ratio on/off (medians, and the median of per-round ratios).
#   bash bench/metrics-cost.sh [-r ROUNDS (3)] [-d SECONDS (10)] [-o DIR] [SCENARIOS (grpc,h1)]
# Results: DIR/table.md (the harness's table), DIR/compare.md (the ratios).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lifecycle/overlay.sh"
overlay_args 3 2,7 metrics-cost "$@"
overlay_run "$out" -n -r "$rounds" -d "$secs" "$scenarios" switchyard-metrics-off switchyard-metrics-on || exit 1
node "$here/lifecycle/compare.js" "$out" switchyard-metrics-off switchyard-metrics-on | tee "$out/compare.md"
