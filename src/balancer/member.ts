import type { AdminState, HealthState, MemberState } from '../core/types.js';
import type { CheckResult, Member, MemberSpec } from './types.js';

/**
 * Owner hook: the newest Pool that holds this member. Passive ejection reported through an
 * older pool (work that started before a reload) must still rebuild the live pool's picker.
 */
export interface MemberOwner {
  refresh(reason?: string): void;
}

/** A server at runtime. Plain fields so the hot path bumps counters directly. */
export class PoolMember implements Member {
  name: string;
  address: string;
  host: string;
  port: number;
  weight: number;
  backup: boolean;
  maxconn: number;
  health: HealthState = 'up'; // SPEC §2: servers start up
  admin: AdminState = 'ready';
  ejectedUntil = 0;
  active = 0;
  total = 0;
  errors = 0;
  bytesIn = 0;
  bytesOut = 0;
  lastCheck?: CheckResult;
  changedAt: number;
  consecutiveFailures = 0;
  /** Set by the Pool that adopted this member last. */
  owner: MemberOwner | undefined;

  constructor(spec: MemberSpec) {
    this.name = spec.name;
    this.address = spec.address;
    this.host = spec.host;
    this.port = spec.port;
    this.weight = spec.weight;
    this.backup = spec.backup;
    this.maxconn = spec.maxconn;
    this.changedAt = Date.now();
  }

  /** maint > drain > down (health down or ejected) > up. */
  get state(): MemberState {
    return memberState(this, Date.now());
  }

  /** May take new work: health up, admin ready, not ejected, weight > 0. */
  usable(now: number): boolean {
    return isUsable(this, now);
  }
}

export function createMember(spec: MemberSpec): PoolMember {
  return new PoolMember(spec);
}

export function memberState(m: Member, now: number): MemberState {
  if (m.admin === 'maint') return 'maint';
  if (m.admin === 'drain') return 'drain';
  if (m.health === 'down' || m.ejectedUntil > now) return 'down';
  return 'up';
}

export function isUsable(m: Member, now: number): boolean {
  return m.health === 'up' && m.admin === 'ready' && m.ejectedUntil <= now && m.weight > 0;
}
