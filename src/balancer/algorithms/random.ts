import type { Member, Selector, SelectorFactory } from '../types.js';
import { WeightTable } from './weighted.js';

/** Weighted random: one draw; if that member is rejected, a draw among the accepted ones. */
class WeightedRandom implements Selector {
  private readonly table: WeightTable;

  constructor(members: readonly Member[]) {
    this.table = new WeightTable(members);
  }

  select(_key: string | undefined, accept: (m: Member) => boolean): Member | undefined {
    const { table } = this;
    if (table.members.length === 0) return undefined;
    const m = table.members[table.draw()];
    if (accept(m)) return m;
    return table.drawAccepted(accept);
  }
}

export const random: SelectorFactory = (members) => new WeightedRandom(members);
