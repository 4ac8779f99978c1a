#!/usr/bin/env node
// Command line (SPEC §1): run | check, --version, --help. The only place that wires
// config, gateway, admin and signals together.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfigFile } from './config/load.js';
import { runUntilSignal } from './lifecycle/run.js';

const HELP = `Usage:
  switchyard -c FILE [--log-pretty]        run the gateway with that config
  switchyard run -c FILE [--log-pretty]    the same
  switchyard check -c FILE                 validate the config (exit 0 valid, 1 invalid)
  switchyard --version | --help

Signals: SIGTERM/SIGINT graceful stop, SIGHUP reload the config file.
`;

function version(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const rel of ['../package.json', '../../package.json']) {
    const p = path.join(here, rel);
    if (fs.existsSync(p)) return (JSON.parse(fs.readFileSync(p, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        'log-pretty': { type: 'boolean' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    process.stderr.write(`switchyard: ${(e as Error).message}\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`switchyard ${version()}\n`);
    return 0;
  }
  const command = positionals[0] ?? 'run';
  if (positionals.length > 1 || (command !== 'run' && command !== 'check')) {
    process.stderr.write(`switchyard: unknown command "${positionals.join(' ')}"\n${HELP}`);
    return 2;
  }
  const file = values.config;
  if (typeof file !== 'string') {
    process.stderr.write(`switchyard: -c FILE is required\n${HELP}`);
    return 2;
  }
  if (command === 'check') {
    const r = loadConfigFile(file);
    if (r.ok) {
      process.stdout.write(`${r.config.file}: ok\n`);
      return 0;
    }
    process.stderr.write(`${r.errors.join('\n')}\n`);
    return 1;
  }
  return runUntilSignal(file, { pretty: values['log-pretty'] === true });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Let pino's async destination flush; nothing else keeps the loop alive after a stop.
    setTimeout(() => process.exit(code), 100).unref();
  },
  (e: unknown) => {
    process.stderr.write(`switchyard: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
