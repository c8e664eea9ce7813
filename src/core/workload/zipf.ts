/**
 * Zipf: stores whose page popularity follows Zipf's law, P(rank k) ∝ k^-s.
 * Ranks come from ZipfSampler (rejection-inversion, O(1) per sample); rank k
 * is placed on a page by a seeded PagePermutation (O(1) memory), so the hot
 * pages are scattered over the guest as a real heap's would be. With
 * `permute: false` rank k is page k − 1 of the range (handy to look at).
 *
 * Defaults: s = 1.0, permute true.
 */
import { PAGE_SIZE } from '../units.ts';
import { AccessKind, type AccessBatch } from './access-batch.ts';
import { PagePermutation } from './page-permutation.ts';
import { SyntheticWorkload, type SyntheticOptions } from './synthetic-base.ts';
import { ZipfSampler } from './zipf-sampler.ts';

export interface ZipfOptions extends SyntheticOptions {
  /** Zipf exponent s > 0 (default 1.0); larger is more skewed. */
  readonly s?: number;
  /** Scatter ranks over pages with a seeded permutation (default true). */
  readonly permute?: boolean;
}

export class ZipfWorkload extends SyntheticWorkload {
  readonly name = 'zipf';
  readonly s: number;
  private readonly sampler: ZipfSampler;
  private readonly permutation: PagePermutation | null;

  constructor(opts: ZipfOptions) {
    super(opts);
    this.s = opts.s ?? 1.0;
    this.sampler = new ZipfSampler(this.pageCount, this.s);
    this.permutation = (opts.permute ?? true) ? new PagePermutation(this.pageCount, this.rng) : null;
  }

  /** The gfn that holds popularity rank `rank` (1 = most popular). */
  pageOfRank(rank: number): number {
    const index = rank - 1;
    return this.basePage + (this.permutation === null ? index : this.permutation.map(index));
  }

  /**
   * Two passes, so that neither loop's calls outgrow what V8 inlines into
   * one optimised function (see ZipfSampler.sample): the first draws rank
   * and offset per access, in the same order as ever; the second scatters
   * ranks over pages.
   */
  fill(batch: AccessBatch, maxCount: number = batch.capacity): boolean {
    const n = this.begin(batch, maxCount);
    const rng = this.rng;
    const sampler = this.sampler;
    const perm = this.permutation;
    const first = perm === null ? this.basePage : 0;
    const mask = this.offsetMask;
    const size = this.accessSize;
    const { kind, addr, size: sizes, line } = batch;
    let seq = this.seq;
    for (let i = 0; i < n; i++) {
      const index = sampler.sample(rng) - 1;
      kind[i] = AccessKind.Store;
      addr[i] = (first + index) * PAGE_SIZE + (rng.nextU32() & mask);
      sizes[i] = size;
      line[i] = ++seq;
    }
    if (perm !== null) this.scatter(perm, addr, n);
    return this.end(batch, n);
  }

  /** Moves addr[0..n) from rank index × PAGE_SIZE + offset to the rank's page. */
  private scatter(perm: PagePermutation, addr: Float64Array, n: number): void {
    const base = this.basePage;
    for (let i = 0; i < n; i++) {
      const a = addr[i]!;
      const index = Math.floor(a / PAGE_SIZE);
      addr[i] = (base + perm.map(index)) * PAGE_SIZE + (a - index * PAGE_SIZE);
    }
  }
}
