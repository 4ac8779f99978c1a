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
overlay_args 3 2,10 reload-under-load "$@"
overlay_run "$out" -n -r "$rounds" -d "$secs" "$scenarios" switchyard switchyard-reload || exit 1
node "$here/lifecycle/compare.js" "$out" switchyard switchyard-reload --reloads | tee "$out/compare.md"
