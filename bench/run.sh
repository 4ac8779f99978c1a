#!/usr/bin/env bash
# Side-by-side proxy benchmark (Switchyard vs direct, HAProxy, nginx, ...).
#   bash bench/run.sh [options] SCENARIOS TARGETS...      (npm run bench = all all)
#     SCENARIOS  comma-separated list of h1,h2,grpc,grpc-lat,tcp,conns,thrift,thrift-pipe, or "all"
#     TARGETS    names of scripts in targets/ (direct haproxy nginx node-http-proxy switchyard), or "all"
#   options
#     -r N       rounds: every target runs N times, interleaved; the table shows medians (default 1)
#     -d SECS    seconds per measured load run for h1/h2/grpc/thrift (default 10)
#     -o DIR     results directory (default results/<timestamp>)
#     -n         do not add the direct and haproxy baselines automatically
# CPU layout: proxy on CPU $BENCH_PROXY_CPU (1), load generator + backends on
# CPU $BENCH_LOAD_CPU (0). See bench/README.md for the target contract and env knobs.
# Tools: bench/setup.sh installs them (Debian/Ubuntu); node deps are installed
# into bench/node_modules on first use.
set -uo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export BENCH_DIR
source "$BENCH_DIR/lib/common.sh"

ROUNDS=1
export BENCH_DURATION=${BENCH_DURATION:-10}
OUT=""
BASELINES=1
while getopts "r:d:o:nh" opt; do
  case $opt in
    r) ROUNDS=$OPTARG ;;
    d) BENCH_DURATION=$OPTARG ;;
    o) OUT=$OPTARG ;;
    n) BASELINES=0 ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
(($# >= 2)) || { sed -n '2,15p' "$0"; exit 2; }

ALL_SCENARIOS="h1 h1-lat h2 grpc grpc-lat tcp conns thrift thrift-pipe"
if [[ $1 == all ]]; then SCENARIOS=$ALL_SCENARIOS; else SCENARIOS=${1//,/ }; fi
shift
for s in $SCENARIOS; do [[ -f $BENCH_DIR/scenarios/$s.sh ]] || die "unknown scenario: $s"; done

TARGETS=()
if [[ $1 == all ]]; then
  for f in "$BENCH_DIR"/targets/*.sh; do TARGETS+=("$(basename "$f" .sh)"); done
else
  TARGETS=("$@")
fi
if ((BASELINES)); then
  # ratios need direct and haproxy from the same run; put them first
  rest=()
  for t in "${TARGETS[@]}"; do [[ $t == direct || $t == haproxy ]] || rest+=("$t"); done
  TARGETS=(direct)
  command -v haproxy >/dev/null && TARGETS+=(haproxy)
  TARGETS+=("${rest[@]}")
fi
for t in "${TARGETS[@]}"; do [[ -x $BENCH_DIR/targets/$t.sh ]] || die "unknown target: $t (no executable targets/$t.sh)"; done

for tool in wrk h2load node npm taskset ss curl; do command -v $tool >/dev/null || die "$tool is not installed (run bench/setup.sh)"; done
# The harness keeps its own pinned deps (bench/package-lock.json), apart from
# the gateway's: install them on first use, or again when the lock file changed.
if [[ ! -f $BENCH_DIR/node_modules/.package-lock.json || $BENCH_DIR/package-lock.json -nt $BENCH_DIR/node_modules/.package-lock.json ]]; then
  log "installing the harness's node modules (npm ci in $BENCH_DIR)"
  (cd "$BENCH_DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2 || die "npm ci failed in $BENCH_DIR"
fi

export BENCH_PROXY_CPU=${BENCH_PROXY_CPU:-1}
export BENCH_LOAD_CPU=${BENCH_LOAD_CPU:-0}
export BENCH_PORT_BASE=${BENCH_PORT_BASE:-21000}
export BENCH_NBACKENDS=${BENCH_NBACKENDS:-1}
export BENCH_LISTEN_ADDR=127.0.0.1
# One benchmark at a time per machine: two runs on the same two cores measure
# each other. Take an exclusive flock on BENCH_LOCK (default
# /tmp/switchyard-bench.lock; "none" to skip) for the whole run, waiting if
# another run holds it. A caller that already holds it (e.g.
# `flock /tmp/switchyard-bench.lock bash bench/run.sh ...`, or a script that
# runs several benchmarks under one lock) is detected (the lock on an fd of
# this shell or an ancestor, in /proc/PID/fdinfo) and not waited for.
BENCH_LOCK=${BENCH_LOCK:-/tmp/switchyard-bench.lock}
lock_holders() { # PIDs recorded for a flock on BENCH_LOCK (may be a flock(1) that has exited)
  local ino
  ino=$(stat -c %i "$BENCH_LOCK" 2>/dev/null) || return 0
  awk -v ino=":$ino" '$2 == "FLOCK" && substr($6, length($6) - length(ino) + 1) == ino { print $5 }' /proc/locks 2>/dev/null
}
caller_holds_lock() { # this shell or an ancestor has BENCH_LOCK open with a flock on it
  local real p=$BASHPID i f
  real=$(realpath "$BENCH_LOCK")
  for ((i = 0; i < 64 && p > 1; i++)); do
    for f in /proc/$p/fd/*; do
      [[ $(readlink "$f" 2>/dev/null) == "$real" ]] || continue
      grep -q '^lock:.*FLOCK' "/proc/$p/fdinfo/${f##*/}" 2>/dev/null && return 0
    done
    p=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null) || return 1
  done
  return 1
}
if [[ $BENCH_LOCK != none ]]; then
  : >>"$BENCH_LOCK" || die "cannot open the benchmark lock $BENCH_LOCK (BENCH_LOCK=none to run without)"
  if caller_holds_lock; then
    log "benchmark lock $BENCH_LOCK already held by a caller"
  else
    exec {BENCH_LOCK_FD}>>"$BENCH_LOCK"
    if ! flock -n "$BENCH_LOCK_FD"; then
      for h in $(lock_holders); do
        if [[ -r /proc/$h/cmdline ]]; then
          log "waiting for the benchmark lock $BENCH_LOCK, held by pid $h: $(tr '\0' ' ' <"/proc/$h/cmdline" | cut -c1-160)"
        else
          log "waiting for the benchmark lock $BENCH_LOCK (taken by pid $h, now held through an fd it passed on)"
        fi
      done
      flock "$BENCH_LOCK_FD"
      log "benchmark lock taken"
    fi
  fi
fi

RUN_DIR=${OUT:-$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RUN_DIR"
# nginx workers run as an unprivileged user: they must reach the files written here
chmod a+rx "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
RESULTS=$RUN_DIR/results.jsonl
: >>"$RESULTS"

raise_nofile
# The harness itself (and everything it starts outside a target) runs on the load CPU.
taskset -cp "$BENCH_LOAD_CPU" $$ >/dev/null

CURRENT_WD=""
CURRENT_TARGET=""
BACKEND_PIDS=""
cleanup() {
  if [[ -n $CURRENT_WD ]]; then
    BENCH_WORKDIR=$CURRENT_WD "$BENCH_DIR/targets/$CURRENT_TARGET.sh" stop >/dev/null 2>&1
    stop_pidfile "$CURRENT_WD/pids"
  fi
  [[ -n $BACKEND_PIDS ]] && stop_pidfile "$BACKEND_PIDS"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# record WD SCENARIO RESULT_KIND TARGET ROUND [ERROR]
record() {
  SC_NOTE=${SC_NOTE:-} BENCH_ROOT_PID=$$ BACKEND_PIDS=$BACKEND_PIDS node "$BENCH_DIR/lib/record.js" "$@" >>"$RESULTS" || log "could not record $2/$4"
}

# A fresh listen port per target run, so that TIME_WAIT sockets left by the
# previous run (10k of them after conns) never collide with the next one.
PORT_SEQ=0
LISTEN_PORT=0
next_listen_port() { # sets LISTEN_PORT
  while :; do
    LISTEN_PORT=$((BENCH_PORT_BASE + 100 + PORT_SEQ % 800))
    PORT_SEQ=$((PORT_SEQ + 1))
    port_free "$LISTEN_PORT" && return
  done
}

# check_pinning WD: warn when a proxy process may run outside the proxy CPU
check_pinning() {
  local p list
  for p in $(node "$BENCH_DIR/lib/proc.js" pids "$1/pids"); do
    list=$(awk '/Cpus_allowed_list/ {print $2}' "/proc/$p/status" 2>/dev/null)
    [[ -z $list || $list == "$BENCH_PROXY_CPU" ]] || log "WARNING: pid $p may run on CPUs $list, not $BENCH_PROXY_CPU"
  done
}

run_one() { # SCENARIO TARGET ROUND
  local scenario=$1 target=$2 round=$3 wd port connect p err=""
  wd=$RUN_DIR/$scenario/$target/r$round
  mkdir -p "$wd"
  next_listen_port
  port=$LISTEN_PORT
  export BENCH_WORKDIR=$wd BENCH_LISTEN_PORT=$port BENCH_SCENARIO=$scenario
  CURRENT_WD=$wd CURRENT_TARGET=$target
  log "$scenario / $target (round $round) listen :$port"
  if ! taskset -c "$BENCH_PROXY_CPU" "$BENCH_DIR/targets/$target.sh" start >"$wd/start.log" 2>&1; then
    err="start failed: $(tail -c 300 "$wd/start.log" | tr '\n' ' ')"
  fi
  connect=127.0.0.1:$port
  [[ -s $wd/connect ]] && connect=$(<"$wd/connect")
  if [[ -z $err ]] && ! wait_listen "${connect##*:}" 15; then err="nothing listens on $connect"; fi
  if [[ -z $err ]]; then
    check_pinning "$wd"
    if ! sc_check "$connect" "$wd" >"$wd/check.log" 2>&1; then
      err="correctness check failed: $(tail -c 300 "$wd/check.log" | tr '\n' ' ')"
    fi
  fi
  if [[ -z $err ]]; then
    sc_warmup "$connect" "$wd" >"$wd/warmup.log" 2>&1
    node "$BENCH_DIR/lib/proc.js" cpu "$wd/pids" >"$wd/cpu0"
    node "$BENCH_DIR/lib/proc.js" rss "$wd/pids" >"$wd/rss0"
    node "$BENCH_DIR/lib/proc.js" cpus >"$wd/cpus0"
    node "$BENCH_DIR/lib/proc.js" snapshot >"$wd/procs0"
    date +%s.%N >"$wd/t0"
    sc_load "$connect" "$wd" >"$wd/load.log" 2>&1 || err="load run failed: $(tail -c 300 "$wd/load.log" | tr '\n' ' ')"
    date +%s.%N >"$wd/t1"
    node "$BENCH_DIR/lib/proc.js" snapshot >"$wd/procs1"
    node "$BENCH_DIR/lib/proc.js" cpus >"$wd/cpus1"
    node "$BENCH_DIR/lib/proc.js" cpu "$wd/pids" >"$wd/cpu1"
    node "$BENCH_DIR/lib/proc.js" rss "$wd/pids" >"$wd/rss1"
    for p in $(cat "$wd/pids" 2>/dev/null); do
      kill -0 "$p" 2>/dev/null || { [[ -n $err ]] || err="proxy process $p exited during the run"; }
    done
    if [[ -z $err ]] && declare -F sc_postcheck >/dev/null && ! sc_postcheck "$connect" "$wd" >"$wd/postcheck.log" 2>&1; then
      err="check after load failed: $(tail -c 300 "$wd/postcheck.log" | tr '\n' ' ')"
    fi
  fi
  "$BENCH_DIR/targets/$target.sh" stop >>"$wd/start.log" 2>&1
  stop_pidfile "$wd/pids"
  CURRENT_WD=""
  sleep 1 # let the stopped proxy's sockets close before the next run
  [[ -n $err ]] && log "  $err"
  record "$wd" "$scenario" "$SC_RESULT" "$target" "$round" "$err"
}

log "results in $RUN_DIR; proxy CPU $BENCH_PROXY_CPU, load CPU $BENCH_LOAD_CPU; targets: ${TARGETS[*]}"
for scenario in $SCENARIOS; do
  (
    SC_DIR=$RUN_DIR/$scenario
    mkdir -p "$SC_DIR"
    BACKEND_PIDS=$SC_DIR/backend.pids
    : >"$BACKEND_PIDS"
    # a subshell does not inherit traps: stop this scenario's processes on exit
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    source "$BENCH_DIR/scenarios/$scenario.sh"
    if ! sc_backends_start >"$SC_DIR/backend-start.log" 2>&1; then
      log "$scenario: backends failed to start: $(tail -c 400 "$SC_DIR/backend-start.log")"
      exit 1
    fi
    export BENCH_BACKENDS BENCH_H1_BACKENDS BENCH_FRONT BENCH_BACKEND_PROTO BENCH_MAX_CONNS
    log "$scenario: backends $BENCH_BACKENDS (${BENCH_BACKEND_DESC:-$BENCH_BACKEND_PROTO})${BENCH_H1_BACKENDS:+, h1 $BENCH_H1_BACKENDS}"
    for ((round = 1; round <= ROUNDS; round++)); do
      for target in "${TARGETS[@]}"; do
        supported=" $("$BENCH_DIR/targets/$target.sh" protocols 2>/dev/null) "
        if [[ $supported != *" $BENCH_FRONT "* ]]; then
          ((round == 1)) && log "$scenario / $target: target does not speak $BENCH_FRONT, skipped"
          continue
        fi
        run_one "$scenario" "$target" "$round"
      done
    done
    stop_pidfile "$BACKEND_PIDS"
  )
done

node "$BENCH_DIR/lib/report.js" "$RESULTS" | tee "$RUN_DIR/table.md"
log "raw results: $RESULTS"
