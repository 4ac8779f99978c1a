// Request timeouts without a timer per call. All calls of one list share one duration, so
// their deadlines come in the order they were added: an intrusive linked list (append,
// unlink: O(1), no allocation) and one node timer for its head.
import { performance } from 'node:perf_hooks';

export interface Timed {
  deadline: number; // performance.now() ms
  tPrev: Timed | undefined;
  tNext: Timed | undefined;
  tList: DeadlineList | undefined;
  onTimeout(): void;
}

export class DeadlineList {
  readonly ms: number;
  private head: Timed | undefined;
  private tail: Timed | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(ms: number) {
    this.ms = ms;
  }

  /** Starts `t`'s timeout, counted from `start` (performance.now() ms). */
  add(t: Timed, start: number): void {
    t.deadline = start + this.ms;
    t.tList = this;
    t.tNext = undefined;
    t.tPrev = this.tail;
    if (this.tail !== undefined) this.tail.tNext = t;
    else this.head = t;
    this.tail = t;
    if (this.timer === undefined) this.arm(t.deadline - performance.now());
  }

  remove(t: Timed): void {
    if (t.tList !== this) return;
    const { tPrev, tNext } = t;
    if (tPrev !== undefined) tPrev.tNext = tNext;
    else this.head = tNext;
    if (tNext !== undefined) tNext.tPrev = tPrev;
    else this.tail = tPrev;
    t.tPrev = t.tNext = t.tList = undefined;
    // The timer stays: when it fires it re-arms for the new head (or stops).
  }

  private arm(inMs: number): void {
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(inMs)));
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    const now = performance.now();
    // Timers may fire a fraction of a millisecond early by this clock.
    while (this.head !== undefined && this.head.deadline <= now + 0.5) {
      const t = this.head;
      this.remove(t);
      t.onTimeout();
    }
    if (this.head !== undefined) this.arm(this.head.deadline - now);
  };

  /** Calls waiting (for tests and stats). */
  get size(): number {
    let n = 0;
    for (let t = this.head; t !== undefined; t = t.tNext) n++;
    return n;
  }
}
