import type { Member, Selector, SelectorFactory } from '../types.js';

/**
 * Fewest units of work in flight relative to weight (HAProxy `lb_fwlc`: active / weight).
 * Compared by cross-multiplication (a.active * b.weight < b.active * a.weight) so no
 * division and no float rounding decide ties.
 *
 * The scan starts one position further on every pick and keeps the first of equal scores,
 * so ties rotate over the tied members instead of always landing on the first one (with no
 * load at all, leastconn behaves like plain round-robin).
 */
class LeastConn implements Selector {
  private readonly members: readonly Member[];
  private next = 0;

  constructor(members: readonly Member[]) {
    this.members = members;
  }

  select(_key: string | undefined, accept: (m: Member) => boolean): Member | undefined {
    const { members } = this;
    const n = members.length;
    if (n === 0) return undefined;
    const start = this.next;
    this.next = start + 1 >= n ? 0 : start + 1;
    let best: Member | undefined;
    for (let k = 0; k < n; k++) {
      let i = start + k;
      if (i >= n) i -= n;
      const m = members[i];
      if (!accept(m)) continue;
      if (best === undefined || m.active * best.weight < best.active * m.weight) best = m;
    }
    return best;
  }
}

export const leastconn: SelectorFactory = (members) => new LeastConn(members);
