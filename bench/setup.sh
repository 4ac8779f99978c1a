#!/usr/bin/env bash
# One-time setup of a fresh Debian/Ubuntu machine for the benchmark; safe to
# run again (installs only what is missing).
#   bash bench/setup.sh
# Installs the load tools and the reference proxies, then the harness's own
# node modules (bench/node_modules, from bench/package-lock.json).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# wrk: h1 load; nghttp2-client: h2load (h2, grpc); haproxy, nginx and
# libnginx-mod-stream (nginx's TCP proxy is a separate module on Debian 12):
# the reference targets and the fast HTTP/gRPC backends; curl: h2 check;
# iproute2 (ss) and util-linux (taskset): port waits and CPU pinning.
PKGS=(haproxy nginx libnginx-mod-stream wrk nghttp2-client curl iproute2 util-linux)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  command -v apt-get >/dev/null || { echo "setup: apt-get not found; install: ${missing[*]}" >&2; exit 1; }
  sudo=""
  ((EUID == 0)) || sudo=sudo
  echo "setup: installing ${missing[*]}"
  # an old or empty package index cannot find the packages: refresh it first
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The harness starts its own haproxy/nginx on 127.0.0.1 with generated
  # configs; the distribution's services would only take CPU and ports 80/443.
  # Only done right after this script installed them, never to a service the
  # machine already ran.
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    for svc in nginx haproxy; do
      if printf '%s\n' "${missing[@]}" | grep -qx "$svc"; then
        $sudo systemctl disable --now "$svc" 2>/dev/null || true
      fi
    done
  fi
else
  echo "setup: system packages present (${PKGS[*]})"
fi

command -v node >/dev/null || { echo "setup: node (>= 20) is required" >&2; exit 1; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  { echo "setup: node >= 20 is required, found $(node --version)" >&2; exit 1; }

echo "setup: npm ci in $BENCH_DIR"
(cd "$BENCH_DIR" && npm ci --no-audit --no-fund --loglevel=error)

for t in haproxy nginx wrk h2load curl ss taskset; do
  command -v "$t" >/dev/null || { echo "setup: $t still missing" >&2; exit 1; }
done
[[ -f /usr/lib/nginx/modules/ngx_stream_module.so || -n $(nginx -V 2>&1 | grep -o -- '--with-stream[^_ ]*' | head -1) ]] ||
  echo "setup: warning: nginx has no stream module (tcp, conns and thrift scenarios need it)" >&2
echo "setup: done; run e.g. 'bash bench/run.sh -d 5 h1,tcp all' (see bench/README.md)"
