// Log capture for tests: pino writes JSON lines into `records`, and tests wait for one.
import { Writable } from 'node:stream';

export type LogRecord = Record<string, unknown>;

/** A destination that parses every JSON line written to it into `records`. */
export function jsonLines(records: LogRecord[]): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) records.push(JSON.parse(line));
      cb();
    },
  });
}

/** The first record matching `pred`, waiting for it up to `timeoutMs`. */
export async function waitForRecord(
  records: LogRecord[],
  pred: (r: LogRecord) => boolean,
  timeoutMs = 5000,
): Promise<LogRecord> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const found = records.find(pred);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('timed out waiting for a log record');
}
