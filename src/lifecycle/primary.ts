// The primary of a multi-process gateway (docs/operations.md "Multiple processes"): forks
// the workers (each runs every listener; node:cluster shares the listening sockets), runs
// the active health checks once for all of them (health/remote.ts) and sends them the
// verdicts, runs the admin listener over their merged stats, fans reloads, server steering
// and the stop out to them, and replaces a worker that dies (a bounded number of times).
import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import {
  type AdminServer,
  adminAuth,
  type SteerRequest,
  type SteerResult,
  startAdmin,
} from '../admin/server.js';
import type { GatewayConfig } from '../config/runtime.js';
import { formatHostPort } from '../core/address.js';
import { msSince } from '../core/duration.js';
import { createLogger, type Logger, logEvent } from '../core/logger.js';
import { CentralHealth } from '../health/remote.js';
import { mergeProcessMetrics, mergePrometheus, mergeSnapshots, type WorkerSnapshot } from '../stats/merge.js';
import type { StatsJson } from '../stats/render/json.js';
import { processMetricsJson } from '../stats/render/prometheus.js';
import { loadForReload, type ReloadResult, type ReloadTrigger, reloadFailed } from './reload.js';
import { type FromWorker, isFromWorker, type ToWorker } from './worker.js';

/** Replacements allowed within RESTART_WINDOW_MS; beyond that a dead worker stays dead. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 10_000;
/** Past `global.grace`, how long the workers get to exit before they are killed. */
const STOP_MARGIN_MS = 5_000;
const STATS_TIMEOUT_MS = 3_000;
const STEER_TIMEOUT_MS = 5_000;
const RELOAD_TIMEOUT_MS = 60_000;
const START_TIMEOUT_MS = 60_000;

type Request =
  | { sy: 'stats'; proc?: boolean }
  | { sy: 'steer'; req: SteerRequest }
  | { sy: 'reload'; by: ReloadTrigger; text: string };

interface Slot {
  worker: Worker;
  ready: boolean;
  /** The config text this worker runs; undefined: it started from the file (see worker.ts). */
  text?: string;
  /** Replies awaited from this worker, by request id. */
  waiting: Map<number, (data: unknown) => void>;
}

const failed = (data: unknown): string | undefined =>
  typeof data === 'object' && data !== null && typeof (data as { error?: unknown }).error === 'string'
    ? (data as { error: string }).error
    : undefined;

/** A reload reply that says the worker applied the text. */
const applied = (data: unknown): boolean => failed(data) === undefined && (data as ReloadResult).ok;

/**
 * Tries, in this process, each bind `next` adds to `current`, and returns the ones that fail
 * as reload errors (the wording of a worker's). A bind that fails in a worker poisons that
 * address in it for good: node 20's cluster keeps the failed listen's index, so the worker's
 * later listens there, or a fresh worker's, get a second handle in the primary and fail with
 * EADDRINUSE (nodejs/node#60086). Trying first keeps an address in use away from the workers.
 */
async function unbindable(current: GatewayConfig, next: GatewayConfig, file: string): Promise<string[]> {
  const have = new Set(current.listeners.flatMap((l) => l.binds.map(formatHostPort)));
  const errors: string[] = [];
  for (const l of next.listeners) {
    for (const hp of l.binds) {
      const key = formatHostPort(hp);
      if (have.has(key)) continue;
      have.add(key);
      const err = await new Promise<string | undefined>((resolve) => {
        const s = net.createServer();
        s.once('error', (e) => resolve(e.message));
        s.listen({ host: hp.host || undefined, port: hp.port }, () => s.close(() => resolve(undefined)));
      });
      if (err !== undefined) errors.push(`${file}:1:1: cannot bind ${key}: ${err}`);
    }
  }
  return errors;
}

export async function runPrimary(
  file: string,
  initial: { config: GatewayConfig; text: string },
  count: number,
  opts: { pretty?: boolean },
): Promise<number> {
  let cfg = initial.config;
  // The config text every worker runs: what each new worker starts with and what a reload
  // that fails in any worker rolls the others back to. It changes only when every worker
  // has applied a reload.
  let text = initial.text;
  const logger: Logger = createLogger({ level: cfg.global.log.level, pretty: opts.pretty });
  // Round-robin in the primary spreads connections evenly; SCHED_NONE leaves it to the
  // kernel, which on Linux favours whichever worker is awake (docs/operations.md has the
  // figures). NODE_CLUSTER_SCHED_POLICY (node's own variable) still overrides.
  if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_RR;

  const slots = new Map<number, Slot>();
  const restarts: number[] = [];
  let nextId = 1;
  let stopping = false;
  let started = false;
  let onAllExited: (() => void) | undefined;
  let onStartup: ((ok: boolean) => void) | undefined;
  // Reloads, rollbacks and a late worker's catch-up run one at a time, in turn.
  let reloading: Promise<unknown> = Promise.resolve();
  const inTurn = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = reloading.then(fn);
    reloading = run.catch(() => undefined);
    return run;
  };

  /** Best effort: a worker whose channel is gone is about to exit ('exit' handles it). */
  const tell = (worker: Worker, m: ToWorker): void => {
    if (!worker.isConnected()) return;
    try {
      worker.send(m);
    } catch {
      // closed meanwhile
    }
  };
  // Every worker, ready or still starting: one that is starting either has asked for the
  // full state already (so this update is newer) or will ask (and get a state including it).
  const health = new CentralHealth(logger, (verdicts) => {
    for (const s of slots.values()) tell(s.worker, { sy: 'health', full: false, verdicts });
  });
  health.apply(cfg);
  /** The full state after workers rebuilt their pools: settles any verdict that crossed it. */
  const fullHealth = (to: Iterable<Slot>): void => {
    const verdicts = health.snapshot();
    for (const s of to) tell(s.worker, { sy: 'health', full: true, verdicts });
  };

  const fork = (): void => {
    const worker = cluster.fork();
    const slot: Slot = { worker, ready: false, waiting: new Map() };
    slots.set(worker.id, slot);
    worker.on('message', (m: unknown) => {
      if (!isFromWorker(m)) return;
      const msg = m as FromWorker;
      if (msg.sy === 'health_sync') {
        slot.text = text;
        tell(worker, { sy: 'config', text });
        tell(worker, { sy: 'health', full: true, verdicts: health.snapshot() });
        return;
      }
      if (msg.sy === 'ready') {
        slot.ready = true;
        if (msg.file === true) slot.text = undefined;
        if (started) {
          logEvent(logger, 'worker_start', { worker: worker.id, pid: worker.process.pid });
          // A worker that started while a reload was being applied (or from the file) may
          // run another config than the others: after any reload under way, align it.
          void inTurn(() => catchUp(slot));
        } else if ([...slots.values()].every((s) => s.ready)) onStartup?.(true);
        return;
      }
      const done = slot.waiting.get(msg.id);
      slot.waiting.delete(msg.id);
      done?.(msg.data);
    });
    // A worker whose channel breaks is about to exit; 'exit' below handles it.
    worker.on('error', () => {});
  };

  cluster.on('exit', (worker, code, signal) => {
    const slot = slots.get(worker.id);
    slots.delete(worker.id);
    if (slot) for (const done of slot.waiting.values()) done({ error: `worker ${worker.id} exited` });
    const fields = { worker: worker.id, pid: worker.process.pid, code, signal: signal ?? undefined };
    if (stopping) {
      logEvent(logger, 'worker_exit', fields);
      if (slots.size === 0) onAllExited?.();
      return;
    }
    logger.error({ type: 'event', event: 'worker_exit', ...fields }, 'worker exited unexpectedly');
    if (!started) {
      onStartup?.(false);
      return;
    }
    const now = Date.now();
    while (restarts.length > 0 && restarts[0] < now - RESTART_WINDOW_MS) restarts.shift();
    if (restarts.length >= MAX_RESTARTS) {
      logger.error(
        {
          type: 'event',
          event: 'worker_restart_limit',
          restarts: restarts.length,
          window_ms: RESTART_WINDOW_MS,
        },
        'workers die too often; not replacing this one',
      );
      if (slots.size === 0) void stop('no_workers').then(() => finish(1));
      return;
    }
    restarts.push(now);
    fork();
  });

  /** Sends one request to every ready worker (or those of `only`), in worker-id order; a missing reply is an error. */
  const ask = (
    r: Request,
    timeoutMs: number,
    only?: Slot[],
  ): Promise<{ worker: number; data: unknown }[]> => {
    const ready = (only ?? [...slots.values()].filter((s) => s.ready)).sort(
      (a, b) => a.worker.id - b.worker.id,
    );
    return Promise.all(
      ready.map(
        (slot) =>
          new Promise<{ worker: number; data: unknown }>((resolve) => {
            const id = nextId++;
            const timer = setTimeout(() => {
              slot.waiting.delete(id);
              resolve({ worker: slot.worker.id, data: { error: `worker ${slot.worker.id} did not answer` } });
            }, timeoutMs);
            slot.waiting.set(id, (data) => {
              clearTimeout(timer);
              resolve({ worker: slot.worker.id, data });
            });
            try {
              slot.worker.send({ ...r, id } as ToWorker);
            } catch {
              slot.waiting.get(id)?.({ error: `worker ${slot.worker.id} is gone` });
            }
          }),
      ),
    );
  };

  const snapshots = async (proc = false): Promise<{ worker: number; snap: WorkerSnapshot }[]> =>
    (await ask({ sy: 'stats', proc }, STATS_TIMEOUT_MS))
      .filter((r) => failed(r.data) === undefined)
      .map((r) => ({ worker: r.worker, snap: r.data as WorkerSnapshot }));

  /** The merged stats plus one line per worker (how evenly connections spread). */
  const stats = async (): Promise<StatsJson> => {
    const snaps = await snapshots();
    const merged = mergeSnapshots(snaps.map((s) => s.snap)).stats;
    const workers = snaps.map(({ worker, snap }) => {
      let active = 0;
      let total = 0;
      for (const l of snap.stats.listeners) {
        active += l.connections.active;
        total += l.connections.total;
      }
      return { worker, pid: slots.get(worker)?.worker.process.pid, connections: { active, total } };
    });
    return { ...merged, workers } as StatsJson;
  };

  const steer = async (req: SteerRequest): Promise<SteerResult> => {
    const replies = await ask({ sy: 'steer', req }, STEER_TIMEOUT_MS);
    if (replies.length === 0) return { status: 503, body: { ok: false, errors: ['no worker is running'] } };
    for (const r of replies) {
      const err = failed(r.data);
      if (err !== undefined) return { status: 503, body: { ok: false, errors: [err] } };
    }
    const results = replies.map((r) => r.data as SteerResult);
    // Every worker has the same pools (same file), so a 404 is everyone's; any other
    // disagreement is reported rather than hidden.
    return results.find((r) => r.status !== 200) ?? results[0];
  };

  /**
   * A worker that cannot run the config the others run: stopped gracefully (it is asked
   * nothing more) and, like any worker that exits, replaced — by one started with `text`.
   */
  const retire = (slot: Slot, reason: string): void => {
    if (stopping || slots.get(slot.worker.id) !== slot) return;
    slot.ready = false;
    logger.error(
      { type: 'event', event: 'worker_retire', worker: slot.worker.id, reason },
      'worker cannot run the current config; replacing it',
    );
    tell(slot.worker, { sy: 'stop', signal: 'retire' });
  };

  /** Puts `back` (workers that applied, or may have applied, a failed reload) on `text` again. */
  const rollBack = async (back: Slot[]): Promise<void> => {
    if (stopping || back.length === 0) return;
    const replies = await ask({ sy: 'reload', by: 'primary', text }, RELOAD_TIMEOUT_MS, back);
    const stuck = replies.filter((r) => !applied(r.data)).map((r) => r.worker);
    logger.warn(
      {
        type: 'event',
        event: 'reload_rollback',
        workers: replies.map((r) => r.worker),
        failed: stuck.length > 0 ? stuck : undefined,
      },
      'workers that had applied the failed reload are back on the previous config',
    );
    for (const s of back) if (stuck.includes(s.worker.id)) retire(s, 'rollback failed');
    fullHealth(back);
  };

  const catchUp = async (slot: Slot): Promise<void> => {
    if (stopping || !slot.ready || slot.text === text || slots.get(slot.worker.id) !== slot) return;
    const [r] = await ask({ sy: 'reload', by: 'primary', text }, RELOAD_TIMEOUT_MS, [slot]);
    if (r === undefined) return;
    if (!applied(r.data)) {
      retire(slot, 'cannot apply the current config');
      return;
    }
    slot.text = text;
    fullHealth([slot]);
  };

  // All or nothing: every worker gets the text validated here, and unless every one of them
  // applies it, those that did go back to the previous text (HAProxy/Envoy users expect a
  // failed reload to leave the whole gateway as it was).
  const reloadNow = async (by: ReloadTrigger): Promise<ReloadResult> => {
    const t0 = performance.now();
    const loaded = loadForReload(file, logger, by);
    if (!loaded.ok) return loaded;
    const busy = await unbindable(cfg, loaded.config, file);
    if (busy.length > 0) return reloadFailed(logger, by, file, busy);
    const asked = [...slots.values()].filter((s) => s.ready);
    const replies = await ask({ sy: 'reload', by, text: loaded.text }, RELOAD_TIMEOUT_MS, asked);
    const errors: string[] = [];
    // A worker that refused it changed nothing; one that did not answer may still apply it.
    const changed = new Set<number>();
    for (const r of replies) {
      const err = failed(r.data);
      const res = r.data as ReloadResult;
      if (err !== undefined) {
        errors.push(`worker ${r.worker}: ${err}`);
        changed.add(r.worker);
      } else if (!res.ok) {
        for (const e of res.errors) if (!errors.includes(e)) errors.push(e);
      } else changed.add(r.worker);
    }
    if (errors.length > 0) {
      const result = reloadFailed(logger, by, file, errors);
      // The primary's checks never left the old pools.
      await rollBack(asked.filter((s) => changed.has(s.worker.id) && slots.get(s.worker.id) === s));
      return result;
    }
    text = loaded.text;
    for (const s of asked) s.text = text;
    cfg = loaded.config;
    // The checks follow the new pools as one process's do (servers that stay keep their
    // state and streaks); the full state then settles any verdict that crossed the reload.
    health.apply(cfg);
    fullHealth(slots.values());
    logEvent(
      logger,
      'reload',
      {
        ok: true,
        by,
        file,
        workers: replies.length,
        duration_ms: msSince(t0),
      },
      'config reloaded in every worker',
    );
    return { ok: true };
  };
  const reload = (by: ReloadTrigger): Promise<ReloadResult> => inTurn(() => reloadNow(by));

  let admin: AdminServer | undefined;
  let stopped: Promise<void> | undefined;
  const stop = (signal: string): Promise<void> => {
    stopped ??= (async () => {
      stopping = true;
      health.stop();
      logEvent(logger, 'stop', { grace_ms: cfg.global.grace, signal, workers: slots.size }, 'graceful stop');
      const allExited = new Promise<void>((r) => {
        onAllExited = r;
        if (slots.size === 0) r();
      });
      for (const s of slots.values()) {
        // A worker still starting listens to no message yet; SIGTERM ends it (the default
        // action before it is up, the graceful stop once it is).
        if (!s.ready) {
          s.worker.process.kill('SIGTERM');
          continue;
        }
        try {
          s.worker.send({ sy: 'stop', signal } satisfies ToWorker);
        } catch {
          s.worker.process.kill('SIGTERM');
        }
      }
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        allExited.then(() => false),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(true), cfg.global.grace + STOP_MARGIN_MS);
        }),
      ]);
      clearTimeout(timer);
      if (late) {
        for (const s of slots.values()) {
          logger.warn(
            { type: 'event', event: 'worker_kill', worker: s.worker.id },
            'worker did not stop in time',
          );
          s.worker.process.kill('SIGKILL');
        }
        await allExited;
      }
      await admin?.close();
      logEvent(logger, 'stopped', {});
    })();
    return stopped;
  };

  let finish: (code: number) => void = () => {};
  const exitCode = new Promise<number>((r) => {
    finish = r;
  });

  // Start: every worker must come up, as a single process must bind every listener.
  for (let i = 0; i < count; i++) fork();
  const ok = await new Promise<boolean>((resolve) => {
    onStartup = resolve;
    setTimeout(() => resolve(false), START_TIMEOUT_MS).unref();
  });
  onStartup = undefined;
  if (!ok) {
    await stop('start_failed');
    return 1;
  }
  started = true;

  if (cfg.admin) {
    try {
      admin = await startAdmin({
        bind: cfg.admin.bind,
        auth: adminAuth(cfg.admin.auth),
        remote: {
          stats,
          metrics: async () => {
            const list = await snapshots(true);
            const snaps = list.map((s) => s.snap);
            const proc = snaps.flatMap((s) => (s.proc !== undefined ? [s.proc] : []));
            proc.push(await processMetricsJson('primary'));
            return (
              mergePrometheus(
                snaps.map((s) => s.prom),
                mergeSnapshots(snaps),
              ) + (await mergeProcessMetrics(proc))
            );
          },
          steer,
        },
        reload: () => reload('admin'),
        draining: () => stopping,
        logger,
        metrics: cfg.admin.metrics,
      });
    } catch (e) {
      process.stderr.write(`${(e as Error).message}\n`);
      await stop('start_failed');
      return 1;
    }
  }

  logEvent(logger, 'started', {
    file,
    pid: process.pid,
    workers: [...slots.values()].map((s) => ({ worker: s.worker.id, pid: s.worker.process.pid })),
  });
  const onStop = (signal: NodeJS.Signals): void => {
    void stop(signal).then(() => {
      logger.flush?.();
      finish(0);
    });
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', () => {
    void reload('SIGHUP');
  });
  return exitCode;
}
