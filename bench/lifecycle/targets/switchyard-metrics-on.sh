#!/usr/bin/env bash
# Target "switchyard-metrics-on": the switchyard target plus an admin listener with
# metrics counting on (`admin: { metrics: true }`); nothing scrapes it during the run.
set -euo pipefail
if [[ ${1:-} == start ]]; then
  # A top-level key at column 0 ends the `global:` block switchyard.sh writes it into.
  export SWITCHYARD_EXTRA_GLOBAL="${SWITCHYARD_EXTRA_GLOBAL:+$SWITCHYARD_EXTRA_GLOBAL
}admin: { bind: \"127.0.0.1:$((BENCH_LISTEN_PORT + 500))\", metrics: true }"
fi
exec "$(dirname "$0")/switchyard.sh" "$@"
