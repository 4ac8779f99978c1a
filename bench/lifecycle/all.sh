#!/usr/bin/env bash
# metrics-cost.sh and reload-under-load.sh in one harness run (one benchmark lock, every
# target interleaved in each round): switchyard, switchyard-reload, switchyard-reload-same,
# switchyard-metrics-off, switchyard-metrics-on on the grpc and h1 scenarios.
#   bash bench/lifecycle/all.sh [-r ROUNDS (5)] [-d SECONDS (10)] [-o DIR] [SCENARIOS (grpc,h1)]
# Results: DIR/table.md, DIR/compare.md (the three comparisons).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/overlay.sh"
overlay_args 5 2,6 lifecycle "$@"
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
