-- wrk script for a paced load: each connection waits a random 0..2*MEAN ms (integer ms:
-- wrk's timer resolution) after each response before its next request, so requests arrive
-- spread out (no synchronized bursts) at about CONNS / (MEAN + latency) per second.
-- MEAN comes from the environment (WRK_MEAN_DELAY_MS, default 2). Prints the same JSON line
-- as wrk-report.lua.
local mean = tonumber(os.getenv("WRK_MEAN_DELAY_MS") or "2")

delay = function()
  return math.floor(math.random() * (2 * mean + 1))
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end
