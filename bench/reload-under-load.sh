#!/usr/bin/env bash
# Reload under load: the grpc and h1 scenarios through Switchyard, once as is and once
# reloaded with SIGHUP every second for the whole run (each reload adds or removes a
# server), interleaved in one run. The harness fails any run with a failed request
# (wrk errors or non-2xx; h2load failed/errored; gRPC replies checked by DATA bytes and
# grpc-js probes before and after). Reports the throughput ratio reload/static and the
# reloads applied during each measured run.
#   bash bench/reload-under-load.sh [-r ROUNDS (3)] [-d SECONDS (10)] [-o DIR] [SCENARIOS (grpc,h1)]
# RELOAD_INTERVAL (seconds, default 1) sets the reload period.
# Results: DIR/table.md (the harness's table), DIR/compare.md (the ratios and reload counts).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lifecycle/overlay.sh"
# Ports of their own: other benchmark runs on this machine use the default base (21000).
export BENCH_PORT_BASE=${BENCH_PORT_BASE:-23000}
rounds=3 secs=10 out=""
while getopts "r:d:o:" opt; do
  case $opt in
    r) rounds=$OPTARG ;; d) secs=$OPTARG ;; o) out=$OPTARG ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
scenarios=${1:-grpc,h1}
out=${out:-$here/results/reload-under-load-$(date +%Y%m%d-%H%M%S)}
overlay_run "$out" -n -r "$rounds" -d "$secs" "$scenarios" switchyard switchyard-reload || exit 1
node "$here/lifecycle/compare.js" "$out" switchyard switchyard-reload --reloads | tee "$out/compare.md"
