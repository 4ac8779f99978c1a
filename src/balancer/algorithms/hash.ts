import type { Member, Selector, SelectorFactory } from '../types.js';
import { SmoothWeightedRR } from './roundrobin.js';

/**
 * Ring points per unit of weight (ketama's 160). A server's share deviates from its weight by
 * about 1/sqrt(points): 40 points gave equal servers ±30% (measured, 10 servers), 160 gives
 * about ±15%. Each member's sorted points are cached, so a health flip only merges runs.
 */
export const POINTS_PER_WEIGHT = 160;
/** Ring size cap; above it every member's point count is scaled down by the same factor. */
export const MAX_POINTS = 1 << 18;
// Member indices are stored in an Int32Array; far beyond any sane pool size.
const MAX_MEMBERS = 2 ** 21;

interface Run {
  hashes: Uint32Array;
  owners: Int32Array;
}

/** Sorted point hashes of one member for one point count (name is a member's identity). */
const pointCache = new WeakMap<Member, { count: number; hashes: Uint32Array }>();

function memberPoints(m: Member, count: number): Uint32Array {
  const hit = pointCache.get(m);
  if (hit !== undefined && hit.count === count) return hit.hashes;
  const hashes = new Uint32Array(count);
  // Point j of a server is hashString(`${name}#${j}`), streamed without building strings.
  const prefix = fnv(0x811c9dc5, `${m.name}#`);
  for (let j = 0; j < count; j++) hashes[j] = finish(fnvDigits(prefix, j));
  hashes.sort();
  pointCache.set(m, { count, hashes });
  return hashes;
}

/** Two sorted runs into one; on equal hashes the left run (earlier in config order) first. */
function merge(a: Run, b: Run): Run {
  const n = a.hashes.length + b.hashes.length;
  const hashes = new Uint32Array(n);
  const owners = new Int32Array(n);
  let i = 0;
  let j = 0;
  for (let k = 0; k < n; k++) {
    if (j >= b.hashes.length || (i < a.hashes.length && a.hashes[i] <= b.hashes[j])) {
      hashes[k] = a.hashes[i];
      owners[k] = a.owners[i++];
    } else {
      hashes[k] = b.hashes[j];
      owners[k] = b.owners[j++];
    }
  }
  return { hashes, owners };
}

/**
 * FNV-1a over the UTF-16 code units, then the murmur3 finaliser: FNV alone mixes the last
 * characters poorly, and ring points named "g1#0", "g1#1", … differ only there.
 * charCodeAt keeps it allocation-free (no Buffer, no TextEncoder).
 */
export function hashString(s: string): number {
  return finish(fnv(0x811c9dc5, s));
}

function fnv(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

/** FNV-1a state after `prefix` extended by the decimal digits of n: hashString(`${prefix}${n}`). */
function fnvDigits(h: number, n: number): number {
  let div = 1;
  while (div * 10 <= n) div *= 10;
  for (; div >= 1; div /= 10) {
    h ^= 48 + (Math.floor(n / div) % 10);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Consistent hashing on a ring keyed by server name (ketama style): a server's points
 * depend only on its name and weight, so adding or removing one of N servers moves about
 * 1/N of the keys and no key moves between two servers that both stayed. Virtual nodes are
 * proportional to weight. A key goes to the first point clockwise of its hash; when that
 * member is rejected (full, being avoided) the walk goes on clockwise, which is also where
 * the key would land if that member were gone.
 */
class HashRing implements Selector {
  private readonly members: readonly Member[];
  private readonly hashes: Uint32Array;
  private readonly owners: Int32Array;
  private readonly fallback: SmoothWeightedRR;
  // Per-select "already rejected" marks, stamped with a generation so nothing is cleared.
  private readonly rejected: Uint32Array;
  private gen = 0;

  constructor(members: readonly Member[]) {
    if (members.length >= MAX_MEMBERS) throw new RangeError('hash: too many servers');
    this.members = members;
    this.fallback = new SmoothWeightedRR(members);
    this.rejected = new Uint32Array(members.length);
    let totalWeight = 0;
    for (const m of members) totalWeight += m.weight;
    const scale = Math.min(1, MAX_POINTS / Math.max(1, totalWeight * POINTS_PER_WEIGHT));
    // Pairwise merging of per-member sorted runs: O(points × log members) per rebuild.
    let runs: Run[] = members.map((m, i) => {
      const hashes = memberPoints(m, Math.max(1, Math.round(m.weight * POINTS_PER_WEIGHT * scale)));
      return { hashes, owners: new Int32Array(hashes.length).fill(i) };
    });
    while (runs.length > 1) {
      const next: Run[] = [];
      for (let k = 0; k < runs.length; k += 2)
        next.push(k + 1 < runs.length ? merge(runs[k], runs[k + 1]) : runs[k]);
      runs = next;
    }
    this.hashes = runs[0]?.hashes ?? new Uint32Array(0);
    this.owners = runs[0]?.owners ?? new Int32Array(0);
  }

  select(key: string | undefined, accept: (m: Member) => boolean): Member | undefined {
    const { members, hashes, owners } = this;
    const n = members.length;
    if (n === 0) return undefined;
    if (key === undefined) return this.fallback.select(undefined, accept);
    const h = hashString(key);
    // First point with hash >= h; past the end wraps to the start of the ring.
    let lo = 0;
    let hi = hashes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (hashes[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    const size = hashes.length;
    const m0 = members[owners[lo === size ? 0 : lo]];
    if (accept(m0)) return m0;
    return this.walk(lo, accept);
  }

  private walk(start: number, accept: (m: Member) => boolean): Member | undefined {
    const { members, hashes, owners, rejected } = this;
    const size = hashes.length;
    const n = members.length;
    let gen = ++this.gen;
    if (gen === 0xffffffff) {
      rejected.fill(0);
      this.gen = gen = 1;
    }
    let seen = 0;
    let p = start;
    for (let k = 0; k < size && seen < n; k++, p++) {
      if (p >= size) p -= size;
      const idx = owners[p];
      if (rejected[idx] === gen) continue;
      const m = members[idx];
      if (accept(m)) return m;
      rejected[idx] = gen;
      seen++;
    }
    return undefined;
  }
}

export const hash: SelectorFactory = (members) => new HashRing(members);
