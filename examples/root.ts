// The demo runs both from examples/ (tsx) and from dist/examples/ (npm start); the files it
// reads at runtime (YAML, protos, generated Thrift code) are never copied into dist/, so
// they are found from the package root.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The directory holding package.json and protos/, found by walking up from this file. */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'protos'))) {
      root = dir;
      return dir;
    }
    dir = path.dirname(dir);
  }
  throw new Error('switchyard package root (package.json + protos/) not found above examples/');
}

export const fromRoot = (...parts: string[]): string => path.join(packageRoot(), ...parts);
