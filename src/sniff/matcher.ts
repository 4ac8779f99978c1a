import type { SniffClass } from '../core/types.js';

/**
 * A matcher's answer over the bytes seen so far: `yes` claims the connection, `no` rules
 * its protocol out for good, `more` means the bytes are a consistent prefix.
 */
export type Verdict = 'yes' | 'no' | 'more';

export interface Matcher {
  readonly cls: Exclude<SniffClass, 'tcp'>;
  /**
   * `buf` holds every byte read so far. `seen` is how many of them this matcher already
   * answered `more` for (0 on the first call), so it can skip rescanning them: a client
   * that trickles bytes one at a time must not cost quadratic work.
   */
  match(buf: Buffer, seen: number): Verdict;
  /**
   * No more bytes will arrive before a decision (byte cap reached, or silence after some
   * bytes). True claims the connection on what is there, e.g. a TLS record header whose
   * ClientHello is longer than the cap, or a request line longer than the cap.
   */
  settle(buf: Buffer): boolean;
}
