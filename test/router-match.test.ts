import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigText } from '../src/config/load.js';
import type { RouteKey } from '../src/core/types.js';
import { compileRouter } from '../src/router/compile.js';
import { compileGlob } from '../src/router/glob.js';

function routerFor(routes: string) {
  const r = loadConfigText(
    `listeners:\n  - name: l\n    bind: ":1"\n    routes:\n${routes}\npools:\n  a: { protocol: h2, servers: [{ address: "127.0.0.1:1" }] }\n  b: { protocol: tcp, servers: [{ address: "127.0.0.1:2" }] }\n`,
    '/tmp/r.yaml',
  );
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  return compileRouter(r.config.listeners[0].routes, new Map());
}

const key = (k: Partial<RouteKey>): RouteKey => ({ proto: 'tcp', source: '127.0.0.1', ...k });

test('globs compile to exact, prefix, suffix and general tests', () => {
  assert.ok(compileGlob('a.b')('a.b'));
  assert.ok(!compileGlob('a.b')('axb'));
  assert.ok(compileGlob('/admin.*/*')('/admin.v1.Users/List'));
  assert.ok(!compileGlob('/admin.*/*')('/public.Users/List'));
  assert.ok(compileGlob('*.example.com', true)('API.Example.com'));
  assert.ok(compileGlob('v?')('v2'));
  assert.ok(!compileGlob('v?')('v22'));
});

test('first match wins and protocol sets follow SPEC (http = http1 + non-gRPC h2, h2 = any HTTP/2)', () => {
  const r = routerFor(`      - { name: g, match: { protocol: grpc, service: "helloworld.*" }, pool: a }
      - { name: deny-admin, match: { protocol: grpc, method: "/admin.*/*" }, deny: true }
      - { name: any-h2, match: { protocol: h2 }, pool: a }
      - { name: web, match: { protocol: http, host: "*.example.com", path_prefix: /api/, headers: { x-canary: "1" } }, pool: a }
      - { name: web-all, match: { protocol: http }, pool: a }
      - { name: lan, match: { protocol: tcp, source: ["10.0.0.0/8", "::1/128"] }, pool: b }
      - { name: tls-db, match: { protocol: tls, sni: "db.internal" }, pool: b }`);
  assert.equal(
    r.route(key({ proto: 'grpc', service: 'helloworld.Greeter', method: '/helloworld.Greeter/SayHello' }))
      ?.name,
    'g',
  );
  const denied = r.route(key({ proto: 'grpc', service: 'admin.Users', method: '/admin.Users/Delete' }));
  assert.equal(denied?.name, 'deny-admin');
  assert.equal(denied?.deny, true);
  assert.equal(r.route(key({ proto: 'h2', path: '/x', method: 'GET' }))?.name, 'any-h2');
  const canary = key({
    proto: 'http1',
    host: 'www.example.com:8080',
    path: '/api/v1',
    headers: { 'x-canary': '1' },
  });
  assert.equal(r.route(canary)?.name, 'web', 'host matching ignores the port');
  assert.equal(r.route({ ...canary, headers: { 'x-canary': '0' } })?.name, 'web-all');
  assert.equal(r.route({ ...canary, headers: { 'x-canary': ['0', '1'] } })?.name, 'web');
  assert.equal(r.route(key({ proto: 'tcp', source: '10.1.2.3' }))?.name, 'lan');
  assert.equal(r.route(key({ proto: 'tcp', source: '::1' }))?.name, 'lan');
  assert.equal(r.route(key({ proto: 'tcp', source: '11.1.2.3' })), undefined);
  assert.equal(r.route(key({ proto: 'tls', sni: 'db.internal' }))?.name, 'tls-db');
  assert.equal(r.route(key({ proto: 'tls', sni: 'web.internal' })), undefined);
  assert.equal(r.route(key({ proto: 'thrift', method: 'add' })), undefined);
  assert.equal(r.accepts('thrift'), false);
  assert.equal(r.accepts('tcp'), true);
});

test('a route without match takes every protocol', () => {
  const r = routerFor('      - { pool: b }');
  for (const proto of ['http1', 'h2', 'grpc', 'thrift', 'tls', 'tcp'] as const) {
    assert.equal(r.route(key({ proto }))?.name, 'l/routes[0]');
  }
});
