'use strict';
// HTTP/1.1 reverse proxy on node's http server with undici's BalancedPool upstream (round
// robin over keep-alive connection pools), written as a Node deployment would write it
// (the shape of fastify-reply-from and similar): pool.request per request, the client's
// body streamed up, the server's body piped back, hop-by-hop fields dropped, 502 on error.
// Usage: node-undici-proxy.js LISTEN_ADDR LISTEN_PORT host:port[,host:port...]
const http = require('node:http');
const { BalancedPool } = require('undici');

const [addr, port, backendList] = process.argv.slice(2);
const pool = new BalancedPool(
  backendList.split(',').map((hp) => `http://${hp}`),
  { connections: 256, keepAliveTimeout: 300000, keepAliveMaxTimeout: 300000 },
);
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

function clean(h) {
  const out = {};
  for (const k in h) if (!HOP.has(k)) out[k] = h[k];
  return out;
}

const server = http.createServer((req, res) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool
    .request({ path: req.url, method: req.method, headers: clean(req.headers), body: hasBody ? req : null })
    .then(({ statusCode, headers, body }) => {
      res.writeHead(statusCode, clean(headers));
      body.pipe(res);
    })
    .catch(() => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
});
server.keepAliveTimeout = 300000;
server.listen({ host: addr, port: Number(port), backlog: 4096 }, () =>
  console.log(`node-undici-proxy on ${addr}:${port}`),
);
process.on('SIGTERM', () => process.exit(0));
