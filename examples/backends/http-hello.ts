import http from 'node:http';
import { type ListeningBackend, listenBackend } from './listen.js';

export type HttpHello = ListeningBackend;

/**
 * An HTTP/1.1 server that answers every request with its own name (body and `x-server`
 * header), so the demo shows which server got each request; `/healthz` is the health check.
 */
export function startHttpHello(port: number, name: string, host = '127.0.0.1'): Promise<HttpHello> {
  const server = http.createServer((req, res) => {
    // The body is not used; it must still be read for keep-alive to continue.
    req.resume();
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    const body = `hello from ${name}: ${req.method} ${req.url}\n`;
    res
      .writeHead(200, {
        'content-type': 'text/plain',
        'content-length': Buffer.byteLength(body),
        'x-server': name,
      })
      .end(body);
  });
  server.keepAliveTimeout = 65_000;
  server.on('clientError', (_e, socket) => socket.destroy());
  return listenBackend(server, port, host, name);
}
