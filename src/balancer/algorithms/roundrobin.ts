import type { Member, Selector, SelectorFactory } from '../types.js';

/**
 * Smooth weighted round-robin (nginx `ngx_http_upstream_get_peer`): each pick adds every
 * candidate's weight to its running score, takes the highest, and subtracts the total from
 * the winner. Over any window of sum(weights) picks each member gets exactly its weight,
 * interleaved (5:1:1 gives a a b a c a a, not a a a a a b c).
 *
 * Members rejected by `accept` sit the round out, so the remaining ones keep their relative
 * shares — the same rule nginx applies to peers that are failed or at max_conns.
 */
export class SmoothWeightedRR implements Selector {
  private readonly members: readonly Member[];
  private readonly weights: Int32Array;
  private readonly current: Float64Array;

  constructor(members: readonly Member[]) {
    this.members = members;
    this.weights = new Int32Array(members.length);
    for (let i = 0; i < members.length; i++) this.weights[i] = members[i].weight;
    this.current = new Float64Array(members.length);
  }

  select(_key: string | undefined, accept: (m: Member) => boolean): Member | undefined {
    const { members, weights, current } = this;
    let best = -1;
    let total = 0;
    for (let i = 0; i < members.length; i++) {
      if (!accept(members[i])) continue;
      current[i] += weights[i];
      total += weights[i];
      if (best < 0 || current[i] > current[best]) best = i;
    }
    if (best < 0) return undefined;
    current[best] -= total;
    return members[best];
  }
}

export const roundrobin: SelectorFactory = (members) => new SmoothWeightedRR(members);
