#!/usr/bin/env bash
# Target "switchyard-metrics-off": as switchyard-metrics-on, with `admin: { metrics: false }`
# (the admin listener runs, nothing is counted).
set -euo pipefail
if [[ ${1:-} == start ]]; then
  export SWITCHYARD_EXTRA_GLOBAL="${SWITCHYARD_EXTRA_GLOBAL:+$SWITCHYARD_EXTRA_GLOBAL
}admin: { bind: \"127.0.0.1:$((BENCH_LISTEN_PORT + 500))\", metrics: false }"
fi
exec "$(dirname "$0")/switchyard.sh" "$@"
