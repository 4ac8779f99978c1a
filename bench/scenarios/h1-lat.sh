# Scenario h1-lat: HTTP/1.1 latency at a set load, below saturation. Same client, backend
# and check as h1, but each of wrk's BENCH_H1_LAT_CONNS (64) keep-alive connections waits
# a random 0-4 ms (bench/clients/wrk-report.lua; mean BENCH_H1_LAT_DELAY_MS = 2) after
# every response, which offers about 26-28k requests/s in all: about half of what HAProxy
# forwards per core on the reference machine (docs/benchmarks.md). p50/p99 then show the
# latency each target adds at that load rather than the queueing of a saturated closed
# loop (the h1 scenario). Random pauses keep the connections from sending in synchronized
# bursts (h2load's --rps timers do that, and their bursts set p99: 2 ms even direct).
# A target that cannot keep up shows lower throughput.
export BENCH_H1_CONNS=${BENCH_H1_LAT_CONNS:-64}
export WRK_MEAN_DELAY_MS=${BENCH_H1_LAT_DELAY_MS:-2}
source "$BENCH_DIR/scenarios/h1.sh"
