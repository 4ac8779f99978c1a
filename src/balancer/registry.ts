import type { BalanceAlgorithm } from '../core/types.js';
import { first } from './algorithms/first.js';
import { hash } from './algorithms/hash.js';
import { leastconn } from './algorithms/leastconn.js';
import { p2c } from './algorithms/p2c.js';
import { random } from './algorithms/random.js';
import { roundrobin } from './algorithms/roundrobin.js';
import type { SelectorFactory } from './types.js';

/** BalanceAlgorithm → selector factory. A new algorithm = one file in algorithms/ + one line here. */
export const selectors: Readonly<Record<BalanceAlgorithm, SelectorFactory>> = {
  roundrobin,
  leastconn,
  p2c,
  random,
  hash,
  first,
};

export function selectorFor(balance: BalanceAlgorithm): SelectorFactory {
  const f = selectors[balance];
  if (f === undefined) throw new Error(`unknown balance algorithm: ${balance}`);
  return f;
}
