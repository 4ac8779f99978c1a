# Runs bench/run.sh with extra targets (bench/lifecycle/targets/) beside the standard
# ones, without adding them to bench/targets/ (where `npm run bench` = `all all` would
# pick them up). Source it, then: overlay_run OUT_DIR run.sh-args...
#
# The overlay is a directory of symlinks to bench/'s parts plus a targets/ directory
# holding links to every standard target and to ours; run.sh finds everything through
# its own location, so it runs unchanged. The gateway runs from a copy of dist/ taken
# once per run (as targets/switchyard.sh does), so a rebuild meanwhile changes nothing.

LC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LC_BENCH=$(cd "$LC_DIR/.." && pwd)
LC_REPO=$(cd "$LC_BENCH/.." && pwd)
# Ports of their own: other benchmark runs on this machine use the default base (21000).
export BENCH_PORT_BASE=${BENCH_PORT_BASE:-23000}

# overlay_args DEFAULT_ROUNDS USAGE_LINES NAME "$@": the options the lifecycle scripts share,
# [-r ROUNDS] [-d SECONDS (10)] [-o DIR] [SCENARIOS (grpc,h1)], into rounds, secs, out
# (default bench/results/NAME-<time>) and scenarios; usage is lines USAGE_LINES of $0.
overlay_args() {
  rounds=$1 secs=10 out=""
  local usage=$2 name=$3
  shift 3
  local OPTIND opt
  while getopts "r:d:o:" opt; do
    case $opt in
      r) rounds=$OPTARG ;; d) secs=$OPTARG ;; o) out=$OPTARG ;;
      *) sed -n "${usage}p" "$0"; exit 2 ;;
    esac
  done
  shift $((OPTIND - 1))
  scenarios=${1:-grpc,h1}
  out=${out:-$LC_BENCH/results/$name-$(date +%Y%m%d-%H%M%S)}
}

overlay_run() {
  local out=$1 ov f
  shift
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  ov=$out/harness
  rm -rf "$ov"
  mkdir -p "$ov/targets"
  for f in "$LC_BENCH"/*; do
    case $(basename "$f") in targets | results | lifecycle) ;; *) ln -s "$f" "$ov/$(basename "$f")" ;; esac
  done
  for f in "$LC_BENCH"/targets/* "$LC_DIR"/targets/*; do ln -s "$f" "$ov/targets/$(basename "$f")"; done
  if [[ -z ${SWITCHYARD_CMD:-} ]]; then
    if [[ ! -f $LC_REPO/dist/src/cli.js || ${SWITCHYARD_BUILD:-} == 1 ]]; then
      (cd "$LC_REPO" && npm run build) >&2 || true
    fi
    [[ -f $LC_REPO/dist/src/cli.js ]] || { echo "dist/src/cli.js missing: npm run build" >&2; return 1; }
    local snap=$out/switchyard-build
    rm -rf "$snap"
    mkdir -p "$snap"
    cp -r "$LC_REPO/dist" "$LC_REPO/package.json" "$snap/"
    [[ -d $LC_REPO/protos ]] && cp -r "$LC_REPO/protos" "$snap/"
    ln -s "$LC_REPO/node_modules" "$snap/node_modules"
    echo "repo HEAD $(git -C "$LC_REPO" rev-parse --short HEAD 2>/dev/null || echo '?'); dist/src/cli.js built $(date -r "$LC_REPO/dist/src/cli.js" '+%F %T')" >"$snap/ORIGIN"
    node "$snap/dist/src/cli.js" --version >/dev/null || { echo "the copy of dist/ does not run" >&2; return 1; }
    export SWITCHYARD_CMD="node $snap/dist/src/cli.js"
  fi
  bash "$ov/run.sh" -o "$out" "$@"
}
