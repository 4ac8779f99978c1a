#!/usr/bin/env bash
# Target "switchyard": the project's gateway, one process (`workers: 1`), run
# straight with node (no npm/npx wrapper, whose process would be counted in
# the proxy's RSS and CPU), access log off like the other targets.
#   http1     route { protocol: http } -> pool protocol h1
#   h2c       route { protocol: http } -> pool protocol h2
#   grpc      route { protocol: grpc } -> pool protocol h2
#   tcp       route { protocol: tcp }  -> pool protocol tcp
#   thrift    route { protocol: thrift } -> pool protocol thrift (framed, binary):
#             every call is balanced on its own
# The listener keeps the default sniffer (every protocol on one port), as a
# user of the product would run it; SWITCHYARD_SNIFF="tcp" (a space- or
# comma-separated list of sniff classes) restricts it.
# Env: SWITCHYARD_CMD (default: node on a copy of <repo>/dist taken at the
# first start of a run, so that every round runs the same build; the repo is
# built with `npm run build` first when dist/src/cli.js is missing, or with
# SWITCHYARD_BUILD=1; SWITCHYARD_SNAPSHOT=0 runs <repo>/dist in place),
# SWITCHYARD_EXTRA_GLOBAL (extra YAML lines under global:, e.g.
# "  limits: { pipelined: 64 }"). Other SWITCHYARD_* variables reach the
# gateway through the environment and are shown
# in the table's notes.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

case ${1:-} in
  protocols) echo "http1 h2c grpc tcp thrift"; exit 0 ;;
  stop) stop_pidfile "$BENCH_WORKDIR/pids"; exit 0 ;;
  start) ;;
  *) echo "usage: $0 protocols|start|stop" >&2; exit 2 ;;
esac

repo=$(cd "$BENCH_DIR/.." && pwd)
if [[ -z ${SWITCHYARD_CMD:-} ]]; then
  # One build per benchmark run: `npm test` rebuilds dist/ in the working tree
  # at any time, so the first start of a run copies dist/ (with package.json and
  # protos/, which the gateway reads beside it) into the results directory and
  # every round runs that copy. SWITCHYARD_SNAPSHOT=0 runs dist/ in place.
  run_dir=$(cd "$BENCH_WORKDIR/../../.." && pwd)
  snap=$run_dir/switchyard-build
  if [[ ${SWITCHYARD_SNAPSHOT:-1} == 0 || ! -f $snap/dist/src/cli.js ]]; then
    if [[ ! -f $repo/dist/src/cli.js || ${SWITCHYARD_BUILD:-} == 1 ]]; then
      log "switchyard: building (npm run build in $repo)"
      # tsc still emits when some file has a type error; what matters is the CLI
      (cd "$repo" && npm run build) || log "switchyard: npm run build exited non-zero"
      [[ -f $repo/dist/src/cli.js ]] || die "switchyard: $repo/dist/src/cli.js missing after npm run build"
    fi
  fi
  if [[ ${SWITCHYARD_SNAPSHOT:-1} == 0 ]]; then
    SWITCHYARD_CMD="node $repo/dist/src/cli.js"
    log "switchyard: repo HEAD $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'); dist/src/cli.js built $(date -r "$repo/dist/src/cli.js" '+%F %T')"
  else
    if [[ ! -f $snap/dist/src/cli.js ]]; then
      rm -rf "$snap.tmp"
      mkdir -p "$snap.tmp"
      cp -r "$repo/dist" "$repo/package.json" "$snap.tmp/"
      [[ -d $repo/protos ]] && cp -r "$repo/protos" "$snap.tmp/"
      ln -s "$repo/node_modules" "$snap.tmp/node_modules"
      echo "repo HEAD $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'); dist/src/cli.js built $(date -r "$repo/dist/src/cli.js" '+%F %T'); copied $(date '+%F %T')" >"$snap.tmp/ORIGIN"
      # a copy taken while tsc was writing would not load: check before using it
      node "$snap.tmp/dist/src/cli.js" --version >/dev/null 2>&1 || die "switchyard: the copy of dist/ does not run (node dist/src/cli.js --version failed); rebuild and retry"
      mv "$snap.tmp" "$snap"
    fi
    SWITCHYARD_CMD="node $snap/dist/src/cli.js"
    log "switchyard: build copy in $snap: $(cat "$snap/ORIGIN")"
  fi
fi
log "switchyard: $SWITCHYARD_CMD"

case $BENCH_FRONT in
  http1) pool_proto=h1 route="{ protocol: http }" ;;
  h2c) pool_proto=h2 route="{ protocol: http }" ;;
  grpc) pool_proto=h2 route="{ protocol: grpc }" ;;
  tcp) pool_proto=tcp route="{ protocol: tcp }" ;;
  thrift) pool_proto=thrift route="{ protocol: thrift }" ;;
  *) die "switchyard: unsupported protocol $BENCH_FRONT" ;;
esac

raise_nofile
# every tunnel is 2 sockets; keep some fds for listeners and internals
maxconn=$((($(ulimit -n) - 100) / 2))
cfg=$BENCH_WORKDIR/switchyard.yaml
{
  cat <<CFG
global:
  maxconn: $maxconn
  workers: 1
  log: { access: false }
  timeouts: { client_idle: 300s, server_idle: 300s, tunnel: 300s }
CFG
  [[ -n ${SWITCHYARD_EXTRA_GLOBAL:-} ]] && printf '%s\n' "$SWITCHYARD_EXTRA_GLOBAL"
  cat <<CFG
listeners:
  - name: bench
    bind: ["$BENCH_LISTEN_ADDR:$BENCH_LISTEN_PORT"]
    maxconn: $maxconn
CFG
  if [[ -n ${SWITCHYARD_SNIFF:-} ]]; then
    echo "    sniff: { protocols: [$(echo "$SWITCHYARD_SNIFF" | tr ' ,' '\n\n' | grep . | paste -sd, | sed 's/,/, /g')] }"
  fi
  cat <<CFG
    routes:
      - match: $route
        pool: be
pools:
  be:
    protocol: $pool_proto
    balance: roundrobin
    health: { type: none }
CFG
  if [[ $pool_proto == thrift ]]; then
    # what the servers speak (backends/thrift-echo.js); the client speaks the same
    echo "    thrift: { transport: framed, protocol: binary, pipelining: true }"
  fi
  echo "    servers:"
  IFS=, read -ra backends <<<"$BENCH_BACKENDS"
  for b in "${backends[@]}"; do echo "      - { address: \"$b\" }"; done
} >"$cfg"

# Anything that changes what is measured goes into the table's notes.
notes=()
while IFS= read -r kv; do
  case ${kv%%=*} in
    SWITCHYARD_CMD | SWITCHYARD_BUILD | SWITCHYARD_SNAPSHOT | SWITCHYARD_SNIFF | SWITCHYARD_EXTRA_GLOBAL) ;;
    *) notes+=("env $kv") ;; # read by the gateway itself
  esac
done < <(env | grep '^SWITCHYARD_' | sort)
[[ -n ${SWITCHYARD_SNIFF:-} ]] && notes+=("sniff $SWITCHYARD_SNIFF")
[[ -n ${SWITCHYARD_EXTRA_GLOBAL:-} ]] && notes+=("global: $(echo "$SWITCHYARD_EXTRA_GLOBAL" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')")
if ((${#notes[@]})); then (IFS=';'; echo "${notes[*]}" | sed 's/;/; /g') >"$BENCH_WORKDIR/note"; fi

# shellcheck disable=SC2086
spawn_bg "$BENCH_WORKDIR/pids" "$BENCH_WORKDIR/proxy.log" $SWITCHYARD_CMD -c "$cfg"
pid=$(tail -n 1 "$BENCH_WORKDIR/pids")
# fail fast when the process exits (a config error), instead of waiting 15 s
for ((i = 0; i < 300; i++)); do
  ss -Hltn "sport = :$BENCH_LISTEN_PORT" | grep -q . && exit 0
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
if kill -0 "$pid" 2>/dev/null; then log "switchyard (pid $pid) did not listen within 15 s"; else log "switchyard (pid $pid) exited"; fi
log "last lines of $BENCH_WORKDIR/proxy.log:"
tail -n 20 "$BENCH_WORKDIR/proxy.log" >&2
exit 1
