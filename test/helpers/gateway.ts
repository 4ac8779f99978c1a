// Starts a real gateway in-process from YAML text, for end-to-end tests. Listeners should
// bind port 0 ("127.0.0.1:0"); `port(name)` tells where they landed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/core/logger.js';
import { type Running, startFromFile } from '../../src/lifecycle/run.js';
import { jsonLines, waitForRecord } from './log.js';

export interface TestGateway extends Running {
  /** Every log record written so far, parsed. */
  records: Record<string, unknown>[];
  port(listener?: string): number;
  file: string;
  /** Rewrites the config file (for reload tests). */
  rewrite(yaml: string): void;
  /** Records of `type: access`. */
  access(): Record<string, unknown>[];
  /** Waits until a record matching `pred` appears (bounded). */
  waitFor(
    pred: (r: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
}

export async function startGateway(yaml: string): Promise<TestGateway> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-test-'));
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, yaml);
  const records: Record<string, unknown>[] = [];
  const sink = jsonLines(records);
  const logger = createLogger({ level: 'debug', destination: sink });
  const running = await startFromFile(file, { logger });
  const gw: TestGateway = {
    ...running,
    records,
    file,
    port(listener?: string) {
      const name = listener ?? running.gateway.currentConfig.listeners[0].name;
      const a = running.gateway.addresses(name);
      if (!a.length) throw new Error(`listener ${name} has no bound address`);
      return a[0].port;
    },
    rewrite(text: string) {
      fs.writeFileSync(file, text);
    },
    access() {
      return records.filter((r) => r.type === 'access');
    },
    waitFor: (pred, timeoutMs) => waitForRecord(records, pred, timeoutMs),
    async stop() {
      await running.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return gw;
}
