// TLS termination for listeners with a `tls:` block. The sniffer has already read the
// ClientHello; its bytes are handed back to the TLS layer before the handshake starts.
import fs from 'node:fs';
import type net from 'node:net';
import tls from 'node:tls';
import type { TlsConfig } from '../config/runtime.js';
import type { SniffResult } from '../core/types.js';

const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * The terminator for `listener`, its certificate and key read and parsed now: a file that
 * cannot be read or is not a usable PEM is an error naming the listener (the config check
 * only sees that the paths are set).
 */
export function tlsTerminatorFor(listener: string, cfg: TlsConfig): TlsTerminator {
  try {
    return new TlsTerminator(cfg);
  } catch (e) {
    throw new Error(
      `listener ${listener}: tls: cannot load ${cfg.cert} / ${cfg.key}: ${(e as Error).message}`,
    );
  }
}

export class TlsTerminator {
  private readonly context: tls.SecureContext;

  constructor(cfg: TlsConfig) {
    this.context = tls.createSecureContext({
      cert: fs.readFileSync(cfg.cert),
      key: fs.readFileSync(cfg.key),
    });
  }

  terminate(
    socket: net.Socket,
    sniff: SniffResult,
    onSecure: (s: tls.TLSSocket, info: { sni?: string; alpn?: string }) => void,
    onError: (message: string) => void,
  ): void {
    if (sniff.head.length) socket.unshift(sniff.head);
    const t = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: this.context,
      ALPNProtocols: ['h2', 'http/1.1'],
    });
    const timer = setTimeout(() => t.destroy(new Error('TLS handshake timeout')), HANDSHAKE_TIMEOUT_MS);
    t.once('secure', () => {
      clearTimeout(timer);
      // tls.Server clears this flag on its own sockets; a hand-made server TLSSocket keeps
      // it set, and node:http2 would then wait forever for a 'secureConnect' that servers
      // never emit.
      (t as { secureConnecting?: boolean }).secureConnecting = false;
      const alpn = typeof t.alpnProtocol === 'string' ? t.alpnProtocol : undefined;
      const sni =
        typeof (t as { servername?: unknown }).servername === 'string'
          ? (t as unknown as { servername: string }).servername
          : undefined;
      onSecure(t, { sni, alpn });
    });
    t.on('error', (e) => {
      clearTimeout(timer);
      onError(e.message);
      t.destroy();
      socket.destroy();
    });
    // No resume() here: TLSSocket drains the bytes buffered on `socket` into the TLS
    // engine on its next tick and then reads the handle itself; a resume would emit them
    // as plain 'data' first and the handshake would never see the ClientHello.
  }
}
