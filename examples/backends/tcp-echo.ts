import net from 'node:net';
import { type ListeningBackend, listenBackend } from './listen.js';

export type TcpEcho = ListeningBackend;

/** A TCP echo server that greets with its name, so the demo shows which one answered. */
export function startTcpEcho(port: number, name: string, host = '127.0.0.1'): Promise<TcpEcho> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.write(`hello from ${name}\n`);
    s.pipe(s);
  });
  return listenBackend(server, port, host, name);
}
