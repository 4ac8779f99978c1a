import type { Member, Selector, SelectorFactory } from '../types.js';
import { WeightTable } from './weighted.js';

/**
 * Power of two choices (HAProxy `balance random(2)`, Mitzenmacher 2001): draw two distinct
 * members, weighted, and keep the one with less work in flight per weight. It tracks load
 * almost as well as leastconn but never herds every new pick onto the single least-loaded
 * server between load updates.
 */
class PowerOfTwo implements Selector {
  private readonly table: WeightTable;

  constructor(members: readonly Member[]) {
    this.table = new WeightTable(members);
  }

  select(_key: string | undefined, accept: (m: Member) => boolean): Member | undefined {
    const { table } = this;
    const { members } = table;
    const n = members.length;
    if (n === 0) return undefined;
    if (n === 1) return accept(members[0]) ? members[0] : undefined;
    const i = table.draw();
    const a = members[i];
    const b = members[table.drawExcept(i)];
    const okA = accept(a);
    const okB = accept(b);
    if (okA && okB) return b.active * a.weight < a.active * b.weight ? b : a;
    if (okA) return a;
    if (okB) return b;
    return this.fallback(accept);
  }

  /** Both draws rejected (retry avoid-list, maxconn): least loaded accepted member. */
  private fallback(accept: (m: Member) => boolean): Member | undefined {
    const { members } = this.table;
    const n = members.length;
    const start = (Math.random() * n) | 0;
    let best: Member | undefined;
    for (let k = 0; k < n; k++) {
      const m = members[(start + k) % n];
      if (!accept(m)) continue;
      if (best === undefined || m.active * best.weight < best.active * m.weight) best = m;
    }
    return best;
  }
}

export const p2c: SelectorFactory = (members) => new PowerOfTwo(members);
