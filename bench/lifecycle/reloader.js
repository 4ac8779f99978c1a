'use strict';
// Reloads a running gateway every INTERVAL seconds: swaps CONFIG between CONFIG.a and
// CONFIG.b (atomically, by rename) and sends SIGHUP. Stops when the gateway is gone.
// Usage: node reloader.js GATEWAY_PID CONFIG [INTERVAL_SECONDS]
const fs = require('node:fs');

const [pidArg, cfg, intervalArg] = process.argv.slice(2);
const pid = Number(pidArg);
const intervalMs = Math.round(Number(intervalArg ?? 1) * 1000);
let n = 0;
const timer = setInterval(() => {
  try {
    process.kill(pid, 0);
  } catch {
    clearInterval(timer);
    console.log(JSON.stringify({ done: true, reloads: n, at: Date.now() / 1000 }));
    return;
  }
  n++;
  fs.copyFileSync(`${cfg}.${n % 2 === 1 ? 'b' : 'a'}`, `${cfg}.tmp`);
  fs.renameSync(`${cfg}.tmp`, cfg);
  process.kill(pid, 'SIGHUP');
  console.log(JSON.stringify({ reload: n, at: Date.now() / 1000 }));
}, intervalMs);
process.on('SIGTERM', () => {
  clearInterval(timer);
  console.log(JSON.stringify({ done: true, reloads: n, at: Date.now() / 1000 }));
  process.exit(0);
});
