// TLS on the shared port: termination (then HTTP/1 or HTTP/2 inside, by ALPN) and
// passthrough routed by SNI on listeners without a tls block.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import tls from 'node:tls';
import { startGateway } from './helpers/gateway.js';

function selfSigned(): { cert: string; key: string; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,DNS:db.internal,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { cert, key, dir };
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

/** GET over HTTP/1.1 in TLS (ALPN http/1.1, a fresh connection), trusting `cert`; the body. */
function httpsGet(port: number, cert: string, urlPath: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    https
      .get(
        {
          host: '127.0.0.1',
          port,
          path: urlPath,
          ca: fs.readFileSync(cert),
          servername: 'localhost',
          ALPNProtocols: ['http/1.1'],
          agent: false,
        } as https.RequestOptions,
        (res) => {
          let b = '';
          res.on('data', (d) => {
            b += d;
          });
          res.on('end', () => resolve(b));
        },
      )
      .on('error', reject);
  });
}

test('a tls listener terminates TLS and proxies HTTP/1.1 and HTTP/2 inside, chosen by ALPN', async (t) => {
  const { cert, key, dir } = selfSigned();
  const backend = http.createServer((req, res) => res.end(`hello ${req.method} ${req.url}`));
  const h2backend = http2.createServer();
  h2backend.on('stream', (s, h) => {
    s.respond({ ':status': 200 });
    s.end(`h2 hello ${h[':path']}`);
  });
  const port = await listen(backend);
  const h2port = await listen(h2backend);
  const gw = await startGateway(`listeners:
  - name: secure
    bind: "127.0.0.1:0"
    tls: { cert: ${cert}, key: ${key} }
    routes:
      - match: { protocol: http, path_prefix: /h2/ }
        pool: h2web
      - match: { protocol: http }
        pool: web
pools:
  web: { protocol: h1, health: { type: none }, servers: [{ address: "127.0.0.1:${port}" }] }
  h2web: { protocol: h2, health: { type: none }, servers: [{ address: "127.0.0.1:${h2port}" }] }
`);
  t.after(async () => {
    await gw.stop();
    backend.close();
    h2backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const body = await httpsGet(gw.port(), cert, '/x');
  assert.equal(body, 'hello GET /x');
  const client = http2.connect(`https://localhost:${gw.port()}`, { ca: fs.readFileSync(cert) });
  t.after(() => client.close());
  const h2body = await new Promise<string>((resolve, reject) => {
    const req = client.request({ ':path': '/h2/y' });
    let b = '';
    req.on('data', (d) => {
      b += d;
    });
    req.on('end', () => resolve(b));
    req.on('error', reject);
  });
  assert.equal(h2body, 'h2 hello /h2/y');
});

test('without a tls block, TLS is passed through and routed by SNI', async (t) => {
  const { cert, key, dir } = selfSigned();
  const db = tls.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (s) =>
    s.end('db\n'),
  );
  const other = tls.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (s) =>
    s.end('other\n'),
  );
  const dbPort = await listen(db);
  const otherPort = await listen(other);
  const gw = await startGateway(`listeners:
  - name: edge
    bind: "127.0.0.1:0"
    routes:
      - match: { protocol: tls, sni: db.internal }
        pool: db
      - match: { protocol: tls }
        pool: other
pools:
  db: { protocol: tcp, health: { type: none }, servers: [{ address: "127.0.0.1:${dbPort}" }] }
  other: { protocol: tcp, health: { type: none }, servers: [{ address: "127.0.0.1:${otherPort}" }] }
`);
  t.after(async () => {
    await gw.stop();
    db.close();
    other.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const read = (servername: string) =>
    new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: gw.port(), servername, ca: fs.readFileSync(cert) });
      let b = '';
      s.on('data', (d) => {
        b += d;
      });
      s.on('end', () => resolve(b));
      s.on('error', reject);
    });
  assert.equal(await read('db.internal'), 'db\n');
  assert.equal(await read('localhost'), 'other\n');
  const rec = await gw.waitFor((r) => r.type === 'access' && r.proto === 'tls' && r.pool === 'db');
  assert.equal(rec.listener, 'edge');
});

test('a reload to a certificate that cannot be parsed fails and changes nothing', async (t) => {
  const { cert, key, dir } = selfSigned();
  const backend = http.createServer((req, res) => res.end(`old ${req.url}`));
  const port = await listen(backend);
  const other = http.createServer((req, res) => res.end(`new ${req.url}`));
  const otherPort = await listen(other);
  const yaml = (certFile: string, be: number) => `listeners:
  - name: secure
    bind: "127.0.0.1:0"
    tls: { cert: ${certFile}, key: ${key} }
    routes: [{ match: { protocol: http }, pool: web }]
pools:
  web: { protocol: h1, health: { type: none }, servers: [{ address: "127.0.0.1:${be}" }] }
`;
  const gw = await startGateway(yaml(cert, port));
  t.after(async () => {
    await gw.stop();
    backend.close();
    other.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const get = () => httpsGet(gw.port(), cert, '/x');
  assert.equal(await get(), 'old /x');
  const broken = path.join(dir, 'broken.pem');
  fs.writeFileSync(broken, 'not a certificate\n');
  gw.rewrite(yaml(broken, otherPort));
  const r = await gw.reload();
  assert.equal(r.ok, false);
  assert.match(r.ok ? '' : r.errors.join('\n'), /listener secure: tls: cannot load/);
  // Neither the certificate nor the routing changed.
  assert.equal(await get(), 'old /x');
  gw.rewrite(yaml(cert, otherPort));
  assert.deepEqual(await gw.reload(), { ok: true });
  assert.equal(await get(), 'new /x');
});
