#!/usr/bin/env bash
# Target "node-undici-proxy": node's http server + undici's BalancedPool in one Node
# process (targets/node-undici-proxy.js), keep-alive pools to the backends, round robin.
# HTTP/1.1 only. Started and stopped like node-http-proxy.
NODE_PROXY=node-undici-proxy exec "$(dirname "$0")/node-http-proxy.sh" "$@"
