// YAML text → validated, normalised GatewayConfig, or every error found with its position
// as "FILE:LINE:COL: message" (SPEC §1, `switchyard check`).
import fs from 'node:fs';
import path from 'node:path';
import { type Document, isMap, isScalar, LineCounter, type Node, type Pair, parseDocument } from 'yaml';
import type { ZodIssue } from 'zod';
import { formatHostPort, isLoopbackHost, parseHostPort } from '../core/address.js';
import { parseDuration } from '../core/duration.js';
import type { HostPort, SniffClass, Timeouts } from '../core/types.js';
import {
  DEFAULT_GLOBAL,
  DEFAULT_HEALTH,
  DEFAULT_LIMITS,
  DEFAULT_OUTLIER_EJECT,
  DEFAULT_PROTOCOLS,
  DEFAULT_RETRIES,
  DEFAULT_TIMEOUTS,
} from './defaults.js';
import type {
  GatewayConfig,
  HashOn,
  HeaderRulesConfig,
  HealthConfig,
  Limits,
  ListenerConfig,
  MatchConfig,
  PoolConfig,
  RouteConfig,
} from './runtime.js';
import {
  configSchema,
  type RawConfig,
  type RawHeaderRules,
  type RawHealth,
  type RawLimits,
  type RawListener,
  type RawPool,
  type RawTimeouts,
} from './schema.js';

/** A validated config (with `Extra` fields) or every error found, as `FILE:LINE:COL: message`. */
export type LoadResult<Extra = unknown> =
  | ({ ok: true; config: GatewayConfig } & Extra)
  | { ok: false; errors: string[] };

type PathKey = string | number;

class Positions {
  private readonly lines = new LineCounter();
  readonly doc: Document;
  constructor(
    readonly file: string,
    text: string,
  ) {
    this.doc = parseDocument(text, { lineCounter: this.lines, prettyErrors: false, uniqueKeys: true });
  }

  /** Position of the node at `p` (or of the key `key` inside it), falling back to its nearest parent. */
  at(p: readonly PathKey[], key?: string): string {
    let node: unknown;
    for (let n = p.length; n >= 0; n--) {
      node = this.doc.getIn(p.slice(0, n), true);
      if (node) break;
    }
    if (key !== undefined && isMap(node)) {
      const pair = (node.items as Pair[]).find((it) => isScalar(it.key) && it.key.value === key);
      if (pair && isScalar(pair.key)) node = pair.key;
    }
    const range = (node as Node | undefined)?.range ?? [0, 0, 0];
    const pos = this.lines.linePos(range[0]);
    return `${this.file}:${pos.line}:${pos.col}`;
  }

  error(p: readonly PathKey[], message: string, key?: string): string {
    return `${this.at(p, key)}: ${message}`;
  }
}

function issueMessages(pos: Positions, issue: ZodIssue): string[] {
  const p = issue.path as PathKey[];
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => pos.error(p, `unknown key "${k}"`, k));
  }
  if (issue.code === 'invalid_union') {
    // A union's branches each complain; the first branch's message is the most useful one.
    const nested = issue.errors?.[0]?.[0];
    if (nested) {
      return issueMessages(pos, { ...nested, path: [...p, ...nested.path] } as ZodIssue);
    }
  }
  const where = p.length ? `${p.join('.')}: ` : '';
  const missing = issue.code === 'invalid_type' && issue.message.includes('received undefined');
  if (missing) {
    const parent = p.slice(0, -1);
    return [pos.error(parent, `missing required key "${String(p[p.length - 1])}"`)];
  }
  return [pos.error(p, `${where}${issue.message}`)];
}

function parseSize(v: number | string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v === 'number') return v;
  const m = /^(\d+)\s*([a-z]*)$/i.exec(v.trim());
  if (!m) return fallback;
  const unit = m[2].toLowerCase();
  const mult = unit.startsWith('g')
    ? 1 << 30
    : unit.startsWith('m')
      ? 1 << 20
      : unit.startsWith('k')
        ? 1024
        : 1;
  return Number(m[1]) * mult;
}

function mergeTimeouts(base: Timeouts, raw: RawTimeouts | undefined): Timeouts {
  if (!raw) return base;
  const d = (v: string | number | undefined, f: number) => (v === undefined ? f : (parseDuration(v) ?? f));
  return {
    sniff: d(raw.sniff, base.sniff),
    connect: d(raw.connect, base.connect),
    clientIdle: d(raw.client_idle, base.clientIdle),
    serverIdle: d(raw.server_idle, base.serverIdle),
    request: d(raw.request, base.request),
    tunnel: d(raw.tunnel, base.tunnel),
  };
}

function mergeLimits(base: Limits, raw: RawLimits | undefined): Limits {
  if (!raw) return base;
  return {
    sniffBytes: parseSize(raw.sniff_bytes, base.sniffBytes),
    headerBytes: parseSize(raw.header_bytes, base.headerBytes),
    h2Streams: raw.h2_streams ?? base.h2Streams,
    h2ResetsPerSecond: raw.h2_resets_per_second ?? base.h2ResetsPerSecond,
    thriftFrame: parseSize(raw.thrift_frame, base.thriftFrame),
    pipelined: raw.pipelined ?? base.pipelined,
    retryBuffer: parseSize(raw.retry_buffer, base.retryBuffer),
    queue: raw.queue ?? base.queue,
  };
}

function headerRules(raw: RawHeaderRules | undefined): HeaderRulesConfig | undefined {
  if (!raw) return undefined;
  const lower = (o: Record<string, string> | undefined) =>
    Object.entries(o ?? {}).map(([k, v]) => [k.toLowerCase(), v] as [string, string]);
  return {
    set: lower(raw.set),
    add: lower(raw.add),
    remove: (raw.remove ?? []).map((h) => h.toLowerCase()),
    replace: (raw.replace ?? []).map((r) => ({
      name: r.name.toLowerCase(),
      pattern: r.pattern,
      with: r.with,
    })),
  };
}

function parseExpect(v: string | number | undefined): [number, number] {
  if (v === undefined) return DEFAULT_HEALTH.expect;
  if (typeof v === 'number') return [v, v];
  const [a, b] = v.split('-').map(Number);
  return [a, b ?? a];
}

function healthConfig(raw: RawHealth | undefined): HealthConfig {
  const h = raw ?? {};
  return {
    type: h.type ?? DEFAULT_HEALTH.type,
    interval: parseDuration(h.interval) ?? DEFAULT_HEALTH.interval,
    timeout: parseDuration(h.timeout) ?? DEFAULT_HEALTH.timeout,
    rise: h.rise ?? DEFAULT_HEALTH.rise,
    fall: h.fall ?? DEFAULT_HEALTH.fall,
    service: h.service ?? DEFAULT_HEALTH.service,
    path: h.path ?? DEFAULT_HEALTH.path,
    host: h.host,
    expect: parseExpect(h.expect),
    method: h.method ?? DEFAULT_HEALTH.method,
  };
}

function hashOn(text: string | undefined): HashOn | undefined {
  if (!text) return undefined;
  if (text === 'source' || text === 'thrift-method') return { kind: text };
  const colon = text.indexOf(':');
  const kind = text.slice(0, colon) as 'header' | 'cookie' | 'grpc-metadata';
  const name = text.slice(colon + 1);
  return { kind, name: kind === 'cookie' ? name : name.toLowerCase() };
}

function poolConfig(name: string, raw: RawPool, globalTimeouts: Timeouts): PoolConfig {
  return {
    name,
    protocol: raw.protocol,
    balance: raw.balance ?? 'roundrobin',
    hash: hashOn(raw.hash?.on),
    health: healthConfig(raw.health),
    persist: raw.persist,
    retries: {
      attempts: raw.retries?.attempts ?? DEFAULT_RETRIES.attempts,
      on: raw.retries?.on ?? [...DEFAULT_RETRIES.on],
    },
    outlier: raw.outlier
      ? {
          consecutiveFailures: raw.outlier.consecutive_failures ?? 5,
          eject: parseDuration(raw.outlier.eject) ?? DEFAULT_OUTLIER_EJECT,
        }
      : undefined,
    thrift: {
      transport: raw.thrift?.transport ?? 'framed',
      protocol: raw.thrift?.protocol ?? 'binary',
      stripService: raw.thrift?.strip_service ?? false,
      pipelining: raw.thrift?.pipelining ?? false,
    },
    timeouts: mergeTimeouts(globalTimeouts, raw.timeouts),
    servers: raw.servers.map((s) => {
      const hp = parseHostPort(s.address) as HostPort;
      return {
        name: s.name ?? s.address,
        address: s.address,
        host: hp.host === '' ? '127.0.0.1' : hp.host,
        port: hp.port,
        weight: s.weight ?? 1,
        backup: s.backup ?? false,
        maxconn: s.maxconn ?? 0,
      };
    }),
  };
}

function matchConfig(raw: NonNullable<RawListener['routes'][number]['match']>): MatchConfig {
  return {
    protocol: raw.protocol,
    host: raw.host?.toLowerCase(),
    path: raw.path,
    pathPrefix: raw.path_prefix,
    method: raw.method,
    service: raw.service,
    headers: raw.headers
      ? Object.entries(raw.headers).map(([k, v]) => [k.toLowerCase(), v] as [string, string])
      : undefined,
    sni: raw.sni?.toLowerCase(),
    source: raw.source,
  };
}

function sameBind(a: HostPort, b: HostPort): boolean {
  // Port 0 asks the kernel for a free port each time, so it never conflicts.
  if (a.port !== b.port || a.port === 0) return false;
  // ":port" takes every interface, so it conflicts with any host on that port.
  return a.host === b.host || a.host === '' || b.host === '';
}

function semanticErrors(raw: RawConfig, pos: Positions): string[] {
  const errors: string[] = [];
  const pools = raw.pools ?? {};
  const names = new Map<string, number>();
  const binds: { hp: HostPort; where: PathKey[] }[] = [];
  raw.listeners.forEach((l, li) => {
    if (names.has(l.name)) {
      errors.push(pos.error(['listeners', li, 'name'], `duplicate listener name "${l.name}"`));
    }
    names.set(l.name, li);
    const list = Array.isArray(l.bind) ? l.bind : [l.bind];
    list.forEach((b, bi) => {
      const hp = parseHostPort(b);
      if (typeof hp === 'string') return;
      const where: PathKey[] = Array.isArray(l.bind)
        ? ['listeners', li, 'bind', bi]
        : ['listeners', li, 'bind'];
      const clash = binds.find((x) => sameBind(x.hp, hp));
      if (clash)
        errors.push(pos.error(where, `bind "${b}" conflicts with ${formatHostPort(clash.hp)} bound before`));
      binds.push({ hp, where });
    });
    const routeNames = new Set<string>();
    l.routes.forEach((r, ri) => {
      const at: PathKey[] = ['listeners', li, 'routes', ri];
      if (r.name !== undefined) {
        if (routeNames.has(r.name))
          errors.push(pos.error([...at, 'name'], `duplicate route name "${r.name}"`));
        routeNames.add(r.name);
      }
      if (r.deny && r.pool) errors.push(pos.error(at, 'a route has either "pool" or "deny: true", not both'));
      if (!r.deny && !r.pool) errors.push(pos.error(at, 'a route needs "pool" or "deny: true"'));
      if (r.pool && !(r.pool in pools)) errors.push(pos.error([...at, 'pool'], `unknown pool "${r.pool}"`));
      const m = r.match ?? {};
      // Calls of these protocols can only be forwarded to a pool speaking it: caught here
      // rather than failing every call at run time.
      const poolProto = r.pool !== undefined ? pools[r.pool]?.protocol : undefined;
      const needs = m.protocol === 'grpc' ? 'h2' : m.protocol === 'thrift' ? 'thrift' : undefined;
      if (needs !== undefined && poolProto !== undefined && poolProto !== needs) {
        errors.push(
          pos.error(
            [...at, 'pool'],
            `${m.protocol} calls need a "${needs}" pool; "${r.pool}" is ${poolProto}`,
          ),
        );
      }
      const httpOnly = m.host !== undefined || m.path !== undefined || m.path_prefix !== undefined;
      if (httpOnly && m.protocol && !['http', 'grpc', 'h2'].includes(m.protocol)) {
        errors.push(pos.error([...at, 'match'], `host/path keys need an HTTP protocol, not "${m.protocol}"`));
      }
      if (m.sni !== undefined && m.protocol && m.protocol !== 'tls') {
        errors.push(pos.error([...at, 'match', 'sni'], 'sni matches only protocol "tls"'));
      }
      for (const [name, rules] of [
        ['request_headers', r.request_headers],
        ['response_headers', r.response_headers],
      ] as const) {
        rules?.replace?.forEach((rep, i) => {
          try {
            new RegExp(rep.pattern);
          } catch (e) {
            errors.push(
              pos.error([...at, name, 'replace', i, 'pattern'], `invalid regex: ${(e as Error).message}`),
            );
          }
        });
      }
    });
    if (l.tls) {
      for (const k of ['cert', 'key'] as const) {
        const file = path.resolve(path.dirname(pos.file), l.tls[k]);
        if (!fs.existsSync(file))
          errors.push(pos.error(['listeners', li, 'tls', k], `file not found: ${file}`));
      }
    }
  });
  for (const [name, p] of Object.entries(pools)) {
    const serverNames = new Set<string>();
    p.servers.forEach((s, si) => {
      const n = s.name ?? s.address;
      if (serverNames.has(n)) {
        errors.push(
          pos.error(['pools', name, 'servers', si], `duplicate server name "${n}" in pool "${name}"`),
        );
      }
      serverNames.add(n);
      const hp = parseHostPort(s.address);
      if (typeof hp !== 'string' && hp.port === 0)
        errors.push(pos.error(['pools', name, 'servers', si, 'address'], 'server port cannot be 0'));
    });
    if (p.balance === 'hash' && !p.hash) {
      errors.push(pos.error(['pools', name], 'balance "hash" needs hash: { on: ... }', 'balance'));
    }
    if (p.thrift && p.protocol !== 'thrift') {
      errors.push(pos.error(['pools', name, 'thrift'], '"thrift" options need protocol: thrift'));
    }
    if (p.persist && p.protocol !== 'h1' && p.protocol !== 'h2') {
      errors.push(pos.error(['pools', name, 'persist'], 'persist cookies need an HTTP pool (h1 or h2)'));
    }
    const ht = p.health?.type;
    const fits: Record<string, string[]> = { http: ['h1', 'h2'], grpc: ['h2'], thrift: ['thrift'] };
    if (ht && fits[ht] && !fits[ht].includes(p.protocol)) {
      errors.push(
        pos.error(
          ['pools', name, 'health', 'type'],
          `health type "${ht}" does not fit protocol "${p.protocol}"`,
        ),
      );
    }
  }
  if (raw.admin) {
    const parsed = parseHostPort(raw.admin.bind);
    const hp = typeof parsed === 'string' ? { host: '127.0.0.1', port: -1 } : parsed;
    if (!raw.admin.auth && !isLoopbackHost(hp.host)) {
      errors.push(pos.error(['admin', 'bind'], 'an admin bind that is not loopback needs admin.auth'));
    }
    if (raw.admin.auth && process.env[raw.admin.auth.password_env] === undefined) {
      errors.push(
        pos.error(
          ['admin', 'auth', 'password_env'],
          `environment variable ${raw.admin.auth.password_env} is not set`,
        ),
      );
    }
    const clash = binds.find((x) => sameBind(x.hp, hp));
    if (clash)
      errors.push(
        pos.error(['admin', 'bind'], `admin bind conflicts with listener bind ${formatHostPort(clash.hp)}`),
      );
  }
  return errors;
}

function normalise(raw: RawConfig, file: string): GatewayConfig {
  const g = raw.global ?? {};
  const timeouts = mergeTimeouts(DEFAULT_TIMEOUTS, g.timeouts);
  const limits = mergeLimits(DEFAULT_LIMITS, g.limits);
  const pools = new Map<string, PoolConfig>();
  for (const [name, p] of Object.entries(raw.pools ?? {})) pools.set(name, poolConfig(name, p, timeouts));
  const listeners: ListenerConfig[] = raw.listeners.map((l) => {
    const bindText = Array.isArray(l.bind) ? l.bind : [l.bind];
    const routes: RouteConfig[] = l.routes.map((r, i) => ({
      name: r.name ?? `${l.name}/routes[${i}]`,
      match: matchConfig(r.match ?? {}),
      pool: r.pool,
      deny: r.deny ?? false,
      requestHeaders: headerRules(r.request_headers),
      responseHeaders: headerRules(r.response_headers),
    }));
    return {
      name: l.name,
      binds: bindText.map((b) => parseHostPort(b) as HostPort),
      bindText,
      maxconn: l.maxconn ?? g.maxconn ?? DEFAULT_GLOBAL.maxconn,
      tls: l.tls
        ? {
            cert: path.resolve(path.dirname(file), l.tls.cert),
            key: path.resolve(path.dirname(file), l.tls.key),
          }
        : undefined,
      protocols: (l.sniff?.protocols ?? [...DEFAULT_PROTOCOLS]) as SniffClass[],
      timeouts: mergeTimeouts(timeouts, l.timeouts),
      limits: mergeLimits(limits, l.limits),
      routes,
    };
  });
  const admin = raw.admin
    ? {
        bind: parseHostPort(raw.admin.bind) as HostPort,
        bindText: raw.admin.bind,
        auth: raw.admin.auth
          ? { user: raw.admin.auth.user, passwordEnv: raw.admin.auth.password_env }
          : undefined,
        metrics: raw.admin.metrics ?? true,
      }
    : undefined;
  return {
    file,
    global: {
      grace: parseDuration(g.grace) ?? DEFAULT_GLOBAL.grace,
      maxconn: g.maxconn ?? DEFAULT_GLOBAL.maxconn,
      workers: g.workers === 'auto' ? 0 : (g.workers ?? DEFAULT_GLOBAL.workers),
      timeouts,
      limits,
      log: {
        level: g.log?.level ?? DEFAULT_GLOBAL.logLevel,
        access: g.log?.access ?? DEFAULT_GLOBAL.accessLog,
      },
    },
    admin,
    listeners,
    pools,
  };
}

/** Validates YAML text; `file` is used for positions and to resolve relative paths. */
export function loadConfigText(text: string, file: string): LoadResult {
  const pos = new Positions(file, text);
  if (pos.doc.errors.length) {
    return {
      ok: false,
      errors: pos.doc.errors.map((e) => {
        const lp = e.linePos?.[0];
        return `${file}:${lp?.line ?? 1}:${lp?.col ?? 1}: ${e.message.split('\n')[0]}`;
      }),
    };
  }
  const data: unknown = pos.doc.toJS();
  const parsed = configSchema.safeParse(data ?? {});
  if (!parsed.success) {
    const errors = parsed.error.issues.flatMap((i) => issueMessages(pos, i));
    // Cross-reference checks still say something useful on a file with shape errors;
    // they may trip over the malformed parts, which the shape errors already report.
    try {
      for (const e of semanticErrors(data as RawConfig, pos)) if (!errors.includes(e)) errors.push(e);
    } catch {}
    return { ok: false, errors };
  }
  const errors = semanticErrors(parsed.data, pos);
  if (errors.length) return { ok: false, errors };
  return { ok: true, config: normalise(parsed.data, file) };
}

/**
 * Reads and validates the config file, and returns the text it validated with the config
 * (a gateway with workers sends that text to every worker, so that all of them run what the
 * primary validated). `text` given: validates that instead of reading the file; relative
 * paths in it still resolve against the file.
 */
export function loadConfigFile(file: string, text?: string): LoadResult<{ text: string }> {
  const abs = path.resolve(file);
  let src = text;
  if (src === undefined) {
    try {
      src = fs.readFileSync(abs, 'utf8');
    } catch (e) {
      return { ok: false, errors: [`${abs}:1:1: cannot read config: ${(e as Error).message}`] };
    }
  }
  const loaded = loadConfigText(src, abs);
  return loaded.ok ? { ...loaded, text: src } : loaded;
}
