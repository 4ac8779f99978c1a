#!/usr/bin/env bash
# Target "switchyard-reload-same": switchyard-reload with RELOAD_SAME=1: a SIGHUP every
# second that re-applies the unchanged config (no server added or removed).
export RELOAD_SAME=1
exec "$(dirname "$0")/switchyard-reload.sh" "$@"
