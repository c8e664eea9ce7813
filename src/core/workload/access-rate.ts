/**
 * Pacing a workload in virtual time: how many accesses fall in a window of
 * `ns` nanoseconds at a rate of D pages (accesses) per virtual second.
 *
 * Invariant: the fractional remainder is carried from window to window, so
 * after any sequence of windows totalling T ns the counts returned sum to
 * exactly floor(T × D / 10^9) — no drift, whatever the window sizes.
 * Arithmetic stays exact in doubles for D < 2^32 and T < 2^53 ns (≈ 104 days):
 * the product T × D (up to 2^85) is never formed whole.
 *
 * Units: `ns` virtual nanoseconds (the engine's Clock), rate in accesses per
 * virtual second (a synthetic workload does one page write per access).
 */

const NS_PER_S = 1_000_000_000;
const TWO_16 = 65536;

export class AccessRate {
  /** Carried numerator, in access·ns, always in [0, 10^9). */
  private remainder = 0;
  /** Accesses handed out since construction or the last reset. */
  private issued = 0;

  /**
   * @param pagesPerSecond integer rate D, 0 ≤ D < 2^32.
   */
  constructor(readonly pagesPerSecond: number) {
    if (!Number.isInteger(pagesPerSecond) || pagesPerSecond < 0 || pagesPerSecond >= 0x100000000) {
      throw new RangeError(`access rate must be an integer in [0, 2^32) pages/s, got ${pagesPerSecond}`);
    }
  }

  /**
   * Number of accesses in the next window of `ns` virtual nanoseconds
   * (integer, ≥ 0), keeping the fractional part for the next window.
   */
  accessesIn(ns: number): number {
    if (!Number.isInteger(ns) || ns < 0 || ns > Number.MAX_SAFE_INTEGER) {
      throw new RangeError(`window must be a non-negative integer of ns, got ${ns}`);
    }
    const rate = this.pagesPerSecond;
    // ns = wholeSeconds·10^9 + r: whole seconds contribute exactly rate each.
    const wholeSeconds = Math.floor(ns / NS_PER_S);
    const r = ns - wholeSeconds * NS_PER_S; // < 2^30
    // r·rate can reach 2^62: split rate = hi·2^16 + lo so every product < 2^46.
    const hi = Math.floor(rate / TWO_16);
    const lo = rate - hi * TWO_16;
    const prodHi = r * hi; // < 2^46
    const qHi = Math.floor(prodHi / NS_PER_S);
    const mHi = prodHi - qHi * NS_PER_S; // < 10^9
    // Remaining numerator: mHi·2^16 + r·lo + remainder < 2^47.
    const rest = mHi * TWO_16 + r * lo + this.remainder;
    const qRest = Math.floor(rest / NS_PER_S);
    this.remainder = rest - qRest * NS_PER_S;
    const n = wholeSeconds * rate + qHi * TWO_16 + qRest;
    this.issued += n;
    return n;
  }

  /** Accesses handed out so far. */
  get total(): number {
    return this.issued;
  }

  reset(): void {
    this.remainder = 0;
    this.issued = 0;
  }
}
