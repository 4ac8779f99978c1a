import net from 'node:net';

export interface TcpEcho {
  readonly name: string;
  readonly port: number;
  close(): Promise<void>;
}

/** A TCP echo server that greets with its name, so the demo shows which one answered. */
export function startTcpEcho(port: number, name: string, host = '127.0.0.1'): Promise<TcpEcho> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.write(`hello from ${name}\n`);
    s.pipe(s);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve({
        name,
        port: (server.address() as net.AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            for (const s of sockets) s.destroy();
          }),
      });
    });
  });
}
