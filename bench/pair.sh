#!/usr/bin/env bash
# Paired A/B of two Switchyard builds on the h1 workload: both gateways run side by side on
# the proxy core, and wrk (on the load core) alternates short runs between them, in turns
# of A-B and B-A. A noisy minute of the shared host then hits both builds of a pair alike,
# and the median of the per-pair ratios B/A is a fairer figure than two separate runs.
#
# Usage: bench/pair.sh DIR_A DIR_B     (each a checkout or copy with dist/ built)
#   N=20    pairs               D=2   seconds per wrk run      C=64  connections
#   FLAGS_A, FLAGS_B   node options for one side only (DIR_A and DIR_B may then be the same)
# Prints each pair and then: medians of A and B (req/s) and the median ratio B/A.
# Loopback only; only the PIDs started here are stopped. Takes the benchmark lock
# (BENCH_LOCK, as run.sh; BENCH_LOCK=none when the caller holds it).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

A=${1:?usage: pair.sh DIR_A DIR_B}
B=${2:?usage: pair.sh DIR_A DIR_B}
N=${N:-20}
D=${D:-2}
C=${C:-64}
for d in "$A" "$B"; do
  [[ -f $d/dist/src/cli.js ]] || die "$d/dist/src/cli.js missing (npm run build there)"
done
command -v wrk >/dev/null || die "wrk missing (bench/setup.sh installs it)"

BACKEND_PORT=${PAIR_BACKEND_PORT:-21610}
PORT_A=$((BACKEND_PORT + 1))
PORT_B=$((BACKEND_PORT + 2))
# Listeners only: the previous run's connections linger in TIME-WAIT for a minute.
for p in $BACKEND_PORT $PORT_A $PORT_B; do
  ! ss -Hltn "( sport = :$p )" | grep -q . || die "something listens on port $p"
done

BENCH_PROXY_CPU=${BENCH_PROXY_CPU:-1}
BENCH_LOAD_CPU=${BENCH_LOAD_CPU:-0}
# One benchmark at a time on the shared host: the same lock as run.sh, waited for 10
# minutes at most (a caller that holds it already sets BENCH_LOCK=none).
BENCH_LOCK=${BENCH_LOCK:-/tmp/switchyard-bench.lock}
if [[ $BENCH_LOCK != none ]]; then
  exec 9>>"$BENCH_LOCK"
  flock -w 600 9 || die "the benchmark lock $BENCH_LOCK stayed taken for 10 minutes"
fi
# The backend and wrk stay on the load core; the gateways are pinned to the proxy core.
taskset -cp "$BENCH_LOAD_CPU" $$ >/dev/null

wd=$(mktemp -d /tmp/switchyard-pair.XXXXXX)
pids=()
cleanup() { stop_pids "${pids[@]}"; }
trap cleanup EXIT

bash "$BENCH_DIR/backends/nginx.sh" "$wd/backend" "$BACKEND_PORT" "" "" >"$wd/backend.log" 2>&1 &
pids+=($!)
for side in a b; do
  port=$PORT_A
  [[ $side == b ]] && port=$PORT_B
  cat >"$wd/$side.yaml" <<EOF
global: { workers: 1, log: { access: false }, maxconn: 20000 }
listeners:
  - name: e
    bind: ["127.0.0.1:$port"]
    routes: [{ match: { protocol: http }, pool: be }]
pools:
  be:
    protocol: h1
    health: { type: none }
    servers: [{ name: s1, address: "127.0.0.1:$BACKEND_PORT" }]
EOF
done
# shellcheck disable=SC2086 # FLAGS_* are lists of options
taskset -c "$BENCH_PROXY_CPU" node ${FLAGS_A:-} "$A/dist/src/cli.js" -c "$wd/a.yaml" >"$wd/a.log" 2>&1 &
pids+=($!)
# shellcheck disable=SC2086
taskset -c "$BENCH_PROXY_CPU" node ${FLAGS_B:-} "$B/dist/src/cli.js" -c "$wd/b.yaml" >"$wd/b.log" 2>&1 &
pids+=($!)
for p in $BACKEND_PORT $PORT_A $PORT_B; do wait_listen "$p" || die "nothing listens on $p"; done

rps() { taskset -c "$BENCH_LOAD_CPU" wrk -t1 -c"$C" -d"${1}s" "http://127.0.0.1:$2/" | awk '/Requests\/sec/ {print $2}'; }
# Warm both (JIT, pools) before measuring.
rps 2 $PORT_A >/dev/null
rps 2 $PORT_B >/dev/null
: >"$wd/pairs"
for ((i = 1; i <= N; i++)); do
  if ((i % 2)); then first=$PORT_A second=$PORT_B; else first=$PORT_B second=$PORT_A; fi
  r1=$(rps "$D" $first)
  r2=$(rps "$D" $second)
  if [[ $first == "$PORT_A" ]]; then a=$r1 b=$r2; else a=$r2 b=$r1; fi
  echo "$i $a $b" | tee -a "$wd/pairs"
done
node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" ").map(Number));
const med = (x) => { const s = [...x].sort((p, q) => p - q); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const ratios = rows.map(([, a, b]) => b / a);
console.log(`A median ${med(rows.map((r) => r[1])).toFixed(0)} req/s, B median ${med(rows.map((r) => r[2])).toFixed(0)} req/s, median ratio B/A ${med(ratios).toFixed(3)} (pairs: ${[...ratios].sort((p, q) => p - q).map((r) => r.toFixed(2)).join(" ")})`);
' "$wd/pairs"
rm -rf "$wd"
