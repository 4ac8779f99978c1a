// End to end through the real gateway: TCP tunnels, balancing, health, reload and graceful stop.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { startGateway } from './helpers/gateway.js';

interface Backend {
  server: net.Server;
  port: number;
  name: string;
  accepted: number;
}

async function echoBackend(name: string, port = 0): Promise<Backend> {
  const b: Backend = { server: net.createServer({ allowHalfOpen: true }), port: 0, name, accepted: 0 };
  b.server.on('connection', (s) => {
    b.accepted++;
    s.on('error', () => {});
    s.write(`${name}\n`);
    s.pipe(s);
  });
  await new Promise<void>((r) => b.server.listen(port, '127.0.0.1', r));
  b.port = (b.server.address() as net.AddressInfo).port;
  return b;
}

function closeBackend(b: Backend): Promise<void> {
  return new Promise((r) => {
    b.server.close(() => r());
  });
}

/** Connects, reads the greeting line, and returns the socket plus the backend name. */
async function tunnel(port: number): Promise<{ socket: net.Socket; name: string }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  let buf = '';
  const name = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no greeting')), 3000);
    socket.on('data', function onData(d: Buffer) {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(t);
        socket.off('data', onData);
        resolve(buf.slice(0, nl));
      }
    });
    socket.once('close', () => reject(new Error('closed before greeting')));
  });
  return { socket, name };
}

function echoOnce(socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const t = setTimeout(() => reject(new Error(`no echo of ${text}`)), 3000);
    socket.on('data', function onData(d: Buffer) {
      got += d.toString();
      if (got.length >= text.length) {
        clearTimeout(t);
        socket.off('data', onData);
        resolve(got);
      }
    });
    socket.write(text);
  });
}

function config(
  backends: Backend[],
  extra = '',
  health = '{ type: tcp, interval: 50ms, timeout: 200ms, rise: 2, fall: 2 }',
) {
  return `global:
  grace: 2s
  timeouts: { sniff: 100ms }
listeners:
  - name: edge
    bind: ["127.0.0.1:0"]
    routes:
      - match: { protocol: tcp }
        pool: echo
pools:
  echo:
    protocol: tcp
    health: ${health}
    servers:
${backends.map((b) => `      - { name: ${b.name}, address: "127.0.0.1:${b.port}" }`).join('\n')}
${extra}`;
}

test('tunnels are balanced round-robin, echo data, and log one access record each', async (t) => {
  const a = await echoBackend('a');
  const b = await echoBackend('b');
  const gw = await startGateway(config([a, b]));
  t.after(async () => {
    await gw.stop();
    await closeBackend(a);
    await closeBackend(b);
  });
  const names: string[] = [];
  for (let i = 0; i < 6; i++) {
    const { socket, name } = await tunnel(gw.port());
    names.push(name);
    assert.equal(await echoOnce(socket, `ping-${i}`), `ping-${i}`);
    socket.end();
    await new Promise((r) => socket.once('close', r));
  }
  assert.deepEqual(names.filter((n) => n === 'a').length, 3);
  assert.deepEqual(names.filter((n) => n === 'b').length, 3);
  const rec = await gw.waitFor((r) => r.type === 'access' && r.proto === 'tcp');
  assert.equal(rec.listener, 'edge');
  assert.equal(rec.pool, 'echo');
  assert.match(String(rec.client), /^127\.0\.0\.1:\d+$/);
  assert.ok(typeof rec.bytes_in === 'number' && typeof rec.duration_ms === 'number');
});

test('a killed backend goes down after fall checks and gets no tunnel; restarted it comes back after rise', async (t) => {
  const a = await echoBackend('a');
  let b = await echoBackend('b');
  const gw = await startGateway(config([a, b]));
  t.after(async () => {
    await gw.stop();
    await closeBackend(a);
    await closeBackend(b);
  });
  const port = b.port;
  await closeBackend(b);
  await gw.waitFor((r) => r.event === 'server_state' && r.server === 'b' && r.to === 'down', 3000);
  for (let i = 0; i < 4; i++) {
    const { socket, name } = await tunnel(gw.port());
    assert.equal(name, 'a', 'a down server gets no new tunnel');
    socket.destroy();
  }
  b = await echoBackend('b', port);
  await gw.waitFor((r) => r.event === 'server_state' && r.server === 'b' && r.to === 'up', 3000);
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const { socket, name } = await tunnel(gw.port());
    seen.add(name);
    socket.destroy();
  }
  assert.ok(seen.has('b'), 'the restarted server takes tunnels again');
});

test('backups serve only when every primary is down', async (t) => {
  const a = await echoBackend('a');
  const bk = await echoBackend('bk');
  const cfg = config([a], '').replace(
    /servers:\n/,
    `servers:\n      - { name: bk, address: "127.0.0.1:${bk.port}", backup: true }\n`,
  );
  const gw = await startGateway(cfg);
  t.after(async () => {
    await gw.stop();
    await closeBackend(a);
    await closeBackend(bk);
  });
  for (let i = 0; i < 3; i++) {
    const { socket, name } = await tunnel(gw.port());
    assert.equal(name, 'a');
    socket.destroy();
  }
  await closeBackend(a);
  await gw.waitFor((r) => r.event === 'server_state' && r.server === 'a' && r.to === 'down', 3000);
  const { socket, name } = await tunnel(gw.port());
  assert.equal(name, 'bk');
  socket.destroy();
});

test('reload keeps an open tunnel alive and new tunnels use the new pool', async (t) => {
  const a = await echoBackend('a');
  const b = await echoBackend('b');
  const gw = await startGateway(config([a]));
  t.after(async () => {
    await gw.stop();
    await closeBackend(a);
    await closeBackend(b);
  });
  const port = gw.port();
  const open = await tunnel(port);
  assert.equal(open.name, 'a');
  gw.rewrite(config([b]));
  const r = await gw.reload();
  assert.deepEqual(r, { ok: true });
  assert.equal(gw.port(), port, 'an unchanged bind keeps its listening socket');
  assert.equal(
    await echoOnce(open.socket, 'still-here'),
    'still-here',
    'the tunnel opened before reload still works',
  );
  const fresh = await tunnel(port);
  assert.equal(fresh.name, 'b');
  fresh.socket.destroy();
  open.socket.destroy();
});

test('an invalid reload is rejected with positioned errors and changes nothing', async (t) => {
  const a = await echoBackend('a');
  const gw = await startGateway(config([a]));
  t.after(async () => {
    await gw.stop();
    await closeBackend(a);
  });
  gw.rewrite('listeners: [ { name: x, bind: ":1", routes: [ { pool: missing } ] } ]\n');
  const r = await gw.reload();
  assert.equal(r.ok, false);
  assert.ok(!r.ok && r.errors.some((e) => /:1:\d+: unknown pool "missing"/.test(e)), JSON.stringify(r));
  const { socket, name } = await tunnel(gw.port());
  assert.equal(name, 'a');
  socket.destroy();
});

test('graceful stop lets an open tunnel finish and refuses new connections', async (t) => {
  const a = await echoBackend('a');
  const gw = await startGateway(config([a]));
  t.after(async () => {
    await closeBackend(a);
  });
  const port = gw.port();
  const open = await tunnel(port);
  const stopped = gw.stop();
  await new Promise((r) => setTimeout(r, 50));
  await assert.rejects(tunnel(port), 'no new connection after stop began');
  assert.equal(await echoOnce(open.socket, 'during-drain'), 'during-drain');
  open.socket.end();
  await stopped;
});

test('silent clients fall back to tcp after the sniff timeout (server-speaks-first)', async (t) => {
  const a = await echoBackend('banner');
  // An HTTP route makes the listener sniff; the silent client must still reach the tcp route.
  const cfg = config([a]).replace(
    '    routes:\n',
    '    routes:\n      - match: { protocol: http }\n        deny: true\n',
  );
  const gw = await startGateway(cfg);
  t.after(async () => {
    await gw.stop();
    await closeBackend(a);
  });
  const { socket, name } = await tunnel(gw.port());
  assert.equal(name, 'banner', 'the banner arrives although the client never spoke first');
  assert.equal(
    gw.gateway.view().listeners[0].connections.sniffTimeouts,
    1,
    'it went through the sniff timeout',
  );
  socket.destroy();
});

test('a listener whose routes want only tcp skips sniffing', async (t) => {
  const a = await echoBackend('banner');
  const gw = await startGateway(config([a]));
  t.after(async () => {
    await gw.stop();
    await closeBackend(a);
  });
  const { socket, name } = await tunnel(gw.port());
  assert.equal(name, 'banner');
  assert.equal(
    gw.gateway.view().listeners[0].connections.sniffTimeouts,
    0,
    'no sniff wait on a tcp-only listener',
  );
  socket.destroy();
});

test('listener maxconn refuses connections over the cap and counts them; below it none is refused', async (t) => {
  const a = await echoBackend('a');
  const gw = await startGateway(
    config([a]).replace('    bind: ["127.0.0.1:0"]', '    bind: ["127.0.0.1:0"]\n    maxconn: 3'),
  );
  t.after(async () => {
    await gw.stop();
    await closeBackend(a);
  });
  const open = [];
  for (let i = 0; i < 3; i++) open.push(await tunnel(gw.port()));
  await assert.rejects(tunnel(gw.port()), 'the fourth connection is refused');
  const state = gw.gateway.view().listeners[0];
  assert.equal(state.connections.active, 3);
  assert.ok(state.connections.refused >= 1);
  open.pop()!.socket.destroy();
  await new Promise((r) => setTimeout(r, 50));
  const again = await tunnel(gw.port());
  assert.equal(again.name, 'a', 'a slot freed by a closed tunnel is usable again');
  again.socket.destroy();
  for (const o of open) o.socket.destroy();
});

test('balance: hash on source keeps one client address on one server', async (t) => {
  const backends = await Promise.all(['a', 'b', 'c', 'd'].map((n) => echoBackend(n)));
  const gw = await startGateway(
    config(backends).replace(
      '    protocol: tcp\n',
      '    protocol: tcp\n    balance: hash\n    hash: { on: source }\n',
    ),
  );
  t.after(async () => {
    await gw.stop();
    for (const b of backends) await closeBackend(b);
  });
  const seen = new Set<string>();
  for (let i = 0; i < 8; i++) {
    const { socket, name } = await tunnel(gw.port());
    seen.add(name);
    socket.destroy();
  }
  assert.equal(seen.size, 1, `one source address, one server (saw ${[...seen].join(',')})`);
});
