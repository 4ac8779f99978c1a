import net from 'node:net';

/** A TCP echo server that greets with its name, so the demo shows which one answered. */
export function startTcpEcho(port: number, name: string): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.write(`hello from ${name}\n`);
    s.pipe(s);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
