import type net from 'node:net';

/** What every example backend hands back: its name, the port it got, and a way to stop. */
export interface ListeningBackend {
  readonly name: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Listens on host:port (a bind error rejects) and returns the backend handle; `close`
 * stops accepting and destroys the connections still open, so a demo stops at once.
 */
export function listenBackend(
  server: net.Server,
  port: number,
  host: string,
  name: string,
): Promise<ListeningBackend> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
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
