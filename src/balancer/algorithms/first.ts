import type { Member, Selector, SelectorFactory } from '../types.js';

/**
 * The first member in config order that `accept` takes (HAProxy `balance first`): fills
 * server 1 up to its maxconn, then server 2, … so idle servers can be powered down.
 * Without maxconn every pick goes to the first usable server.
 */
class First implements Selector {
  private readonly members: readonly Member[];

  constructor(members: readonly Member[]) {
    this.members = members;
  }

  select(_key: string | undefined, accept: (m: Member) => boolean): Member | undefined {
    const { members } = this;
    for (let i = 0; i < members.length; i++) if (accept(members[i])) return members[i];
    return undefined;
  }
}

export const first: SelectorFactory = (members) => new First(members);
