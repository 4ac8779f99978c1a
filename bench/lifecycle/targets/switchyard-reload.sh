#!/usr/bin/env bash
# Target "switchyard-reload": the switchyard target, reloaded with SIGHUP every
# RELOAD_INTERVAL seconds (default 1) from start to stop (check, warmup, measured load).
# Each reload swaps between the generated config and the same plus one more server
# (a second member at the same backend address, so it gets its own pooled connections):
# every reload adds or removes a server. The reloader runs on the load CPU and is not
# in the target's PID file, so its work is not charged to the proxy. RELOAD_SAME=1 reloads
# the unchanged config instead (target switchyard-reload-same).
set -euo pipefail
here=$(dirname "$0")
source "$here/../lib/common.sh"
case ${1:-} in
  protocols) exec "$here/switchyard.sh" protocols ;;
  stop)
    if [[ -f $BENCH_WORKDIR/reloader.pid ]]; then stop_pids "$(cat "$BENCH_WORKDIR/reloader.pid")"; fi
    exec "$here/switchyard.sh" stop
    ;;
  start) ;;
  *) echo "usage: $0 protocols|start|stop" >&2; exit 2 ;;
esac
"$here/switchyard.sh" start
pid=$(tail -n 1 "$BENCH_WORKDIR/pids")
cfg=$BENCH_WORKDIR/switchyard.yaml
cp "$cfg" "$cfg.a"
last=$(grep -E '^ +- \{ address: ' "$cfg" | tail -n 1)
if [[ ${RELOAD_SAME:-} == 1 ]]; then
  cp "$cfg" "$cfg.b" # every reload applies the same config: the cost of a reload alone
else
  { cat "$cfg"; echo "${last/\{ address:/\{ name: reload-added, address:}"; } >"$cfg.b"
fi
taskset -c "$BENCH_LOAD_CPU" node "$(dirname "$(dirname "$(readlink -f "$0")")")/reloader.js" "$pid" "$cfg" "${RELOAD_INTERVAL:-1}" </dev/null >>"$BENCH_WORKDIR/reloader.log" 2>&1 &
echo $! >"$BENCH_WORKDIR/reloader.pid"
