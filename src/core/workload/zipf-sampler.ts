/**
 * Zipf-distributed ranks in [1, n] with exponent s > 0, P(k) ∝ k^-s, by
 * rejection-inversion (W. Hörmann, G. Derflinger, "Rejection-inversion to
 * generate variates from monotone discrete distributions", ACM TOMACS 6(3),
 * 1996), as in Apache Commons RNG's RejectionInversionZipfSampler.
 *
 * O(1) memory and O(1) expected time per sample (a few log/exp, < 1.1
 * iterations on average), independent of n — so it scales to 2^28 pages and
 * beyond, where a CDF table would not.
 */
import type { Rng } from '../rng.ts';

export class ZipfSampler {
  private readonly hIntegralX1: number;
  private readonly hIntegralN: number;
  private readonly sThreshold: number;
  /** The rejection test's u, handed to accepts() unboxed. */
  private readonly pendingU = new Float64Array(1);

  constructor(
    readonly n: number,
    readonly exponent: number,
  ) {
    if (!Number.isInteger(n) || n < 1 || n > Number.MAX_SAFE_INTEGER) {
      throw new RangeError(`zipf: number of elements must be a positive integer, got ${n}`);
    }
    if (!(exponent > 0) || !Number.isFinite(exponent)) {
      throw new RangeError(`zipf: exponent s must be > 0, got ${exponent}`);
    }
    this.hIntegralX1 = this.hIntegral(1.5) - 1;
    this.hIntegralN = this.hIntegral(n + 0.5);
    this.sThreshold = 2 - this.hIntegralInverse(this.hIntegral(2.5) - this.h(2));
  }

  /**
   * One rank in [1, n]; rank 1 is the most frequent.
   *
   * Allocation-free whether or not V8 inlines this or accepts(): a double
   * that crosses a call V8 did not inline (argument or result) is boxed, so
   * no call here but rng.nextFloat() takes or returns one. hIntegralInverse
   * is written out below; the rejection test (~1.5% of draws, too rare to be
   * inlined reliably) does its own h and hIntegral, takes u through a
   * Float64Array and returns a boolean; the rank goes back as a Smi. Same
   * arithmetic, in the same order, as the methods the constructor uses.
   */
  sample(rng: Rng): number {
    const n = this.n;
    const s = this.exponent;
    for (;;) {
      const u = this.hIntegralN + rng.nextFloat() * (this.hIntegralX1 - this.hIntegralN);
      // x = hIntegralInverse(u)
      let t = u * (1 - s);
      if (t < -1) t = -1;
      const x = Math.exp((Math.abs(t) > 1e-8 ? Math.log1p(t) / t : 1 - t * (0.5 - t * (1 / 3 - 0.25 * t))) * u);
      let k = Math.floor(x + 0.5);
      if (k < 1) k = 1;
      else if (k > n) k = n;
      if (k - x <= this.sThreshold) return k;
      this.pendingU[0] = u;
      if (this.accepts(k)) return k;
    }
  }

  /** The rejection test u ≥ hIntegral(k + 0.5) − h(k), for u in pendingU. */
  private accepts(k: number): boolean {
    const s = this.exponent;
    const logX = Math.log(k + 0.5);
    const e = (1 - s) * logX;
    const integral = (Math.abs(e) > 1e-8 ? Math.expm1(e) / e : 1 + e * 0.5 * (1 + (e / 3) * (1 + 0.25 * e))) * logX;
    return this.pendingU[0]! >= integral - Math.exp(-s * Math.log(k));
  }

  /** h(x) = x^-s. */
  private h(x: number): number {
    return Math.exp(-this.exponent * Math.log(x));
  }

  /** H(x) = ∫ h: (x^(1-s) - 1) / (1 - s), log x when s = 1. */
  private hIntegral(x: number): number {
    const logX = Math.log(x);
    return helper2((1 - this.exponent) * logX) * logX;
  }

  private hIntegralInverse(x: number): number {
    let t = x * (1 - this.exponent);
    if (t < -1) t = -1; // guards rounding at the lower end
    return Math.exp(helper1(t) * x);
  }
}

/** log(1 + x) / x, accurate near 0. */
function helper1(x: number): number {
  return Math.abs(x) > 1e-8 ? Math.log1p(x) / x : 1 - x * (0.5 - x * (1 / 3 - 0.25 * x));
}

/** (exp(x) - 1) / x, accurate near 0. */
function helper2(x: number): number {
  return Math.abs(x) > 1e-8 ? Math.expm1(x) / x : 1 + x * 0.5 * (1 + (x / 3) * (1 + 0.25 * x));
}
