import type { Member } from '../types.js';

/**
 * Cumulative weights for weighted random draws: member i owns [cum[i-1], cum[i]).
 * Shared by `random` and `p2c`.
 */
export class WeightTable {
  readonly members: readonly Member[];
  readonly cum: Float64Array;
  readonly total: number;

  constructor(members: readonly Member[]) {
    this.members = members;
    this.cum = new Float64Array(members.length);
    let t = 0;
    for (let i = 0; i < members.length; i++) {
      t += members[i].weight;
      this.cum[i] = t;
    }
    this.total = t;
  }

  /** Index of the member owning point r, 0 <= r < total (binary search, no allocation). */
  indexAt(r: number): number {
    const { cum } = this;
    let lo = 0;
    let hi = cum.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (r < cum[mid]) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Weighted draw over all members. */
  draw(): number {
    return this.indexAt(Math.random() * this.total);
  }

  /** Weighted draw over all members except `skip` (its slice of the line is cut out). */
  drawExcept(skip: number): number {
    const lo = skip === 0 ? 0 : this.cum[skip - 1];
    const w = this.cum[skip] - lo;
    let r = Math.random() * (this.total - w);
    if (r >= lo) r += w;
    const i = this.indexAt(r);
    // Float edge: r landing exactly on the cut boundary may map back onto `skip`.
    return i === skip ? (skip + 1) % this.members.length : i;
  }

  /**
   * Weighted draw among the members `accept` takes, for when draws over everyone keep
   * hitting rejected ones: two passes over the list, still no allocation.
   */
  drawAccepted(accept: (m: Member) => boolean): Member | undefined {
    const { members } = this;
    let t = 0;
    for (let i = 0; i < members.length; i++) if (accept(members[i])) t += members[i].weight;
    if (t === 0) return undefined;
    let r = Math.random() * t;
    let last: Member | undefined;
    for (let i = 0; i < members.length; i++) {
      const m = members[i];
      if (!accept(m)) continue;
      last = m;
      r -= m.weight;
      if (r < 0) return m;
    }
    return last;
  }
}
