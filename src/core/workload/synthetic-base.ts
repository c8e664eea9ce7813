/**
 * What every synthetic workload shares: the options (guest page range, access
 * size, length, the injected Rng) and the batch bookkeeping.
 *
 * Contract of `fill(batch, maxCount)` for every generator:
 *   - clears `batch`, then writes the next min(maxCount, capacity, remaining)
 *     accesses — the count-based API; pair it with AccessRate to pace it in
 *     virtual time;
 *   - allocates nothing (typed arrays written in place);
 *   - each access: gpa = gfn × 4096 + offset, offset a random multiple of
 *     `accessSize` inside the page (so an access never spans pages);
 *     `line` = 1-based sequence number of the access;
 *   - returns true iff the batch holds at least one access (false = end).
 * Deterministic: the same options and seed give the same accesses.
 *
 * Why only Rng.nextU32 in the loops: a double returned from a call V8 did
 * not inline is boxed (one heap allocation per access); a u32 scaled by
 * pageCount / 2^32 (exactly nextInt's arithmetic) or compared with
 * p × 2^32 stays unboxed. Page indices therefore need pageCount ≤ 2^32
 * (a 16 TiB guest).
 */
import type { Rng } from '../rng.ts';
import { PAGE_MASK, PAGE_SIZE } from '../units.ts';
import type { AccessBatch, AccessSource } from './access-batch.ts';

/** 2^32: u32 draws are scaled by this (x / U32_RANGE is uniform in [0, 1)). */
export const U32_RANGE = 0x100000000;

export interface SyntheticOptions {
  /** Guest pages the workload ranges over: gfns [basePage, basePage + pageCount). */
  readonly pageCount: number;
  /** The workload's only source of randomness (seed it for reproducible runs). */
  readonly rng: Rng;
  /** First gfn of the range (default 0). */
  readonly basePage?: number;
  /** Bytes per access, a power of two in 1..128 (default 8); offsets are aligned to it. */
  readonly accessSize?: number;
  /** Accesses before the source reports its end (default: endless). */
  readonly count?: number;
}

export abstract class SyntheticWorkload implements AccessSource {
  abstract readonly name: string;
  protected readonly rng: Rng;
  readonly pageCount: number;
  readonly basePage: number;
  readonly accessSize: number;
  /** Total accesses this source will produce (Infinity = endless). */
  readonly count: number;
  /** pageCount / 2^32: floor(u32 × pageScale) is a uniform page index. */
  protected readonly pageScale: number;
  /** PAGE_MASK with the low log2(accessSize) bits cleared. */
  protected readonly offsetMask: number;
  /** Accesses produced so far; the last access's `line`. */
  protected seq = 0;

  constructor(opts: SyntheticOptions) {
    const { pageCount, basePage = 0, accessSize = 8, count = Infinity } = opts;
    if (!Number.isInteger(pageCount) || pageCount < 1 || pageCount > U32_RANGE) {
      throw new RangeError(`workload: pageCount must be an integer in [1, 2^32], got ${pageCount}`);
    }
    if (!Number.isInteger(basePage) || basePage < 0 || (basePage + pageCount) * PAGE_SIZE > Number.MAX_SAFE_INTEGER) {
      throw new RangeError(`workload: basePage must be a non-negative integer in range, got ${basePage}`);
    }
    if (!Number.isInteger(accessSize) || accessSize < 1 || accessSize > 128 || (accessSize & (accessSize - 1)) !== 0) {
      throw new RangeError(`workload: accessSize must be a power of two in 1..128, got ${accessSize}`);
    }
    if (count !== Infinity && (!Number.isInteger(count) || count < 0)) {
      throw new RangeError(`workload: count must be a non-negative integer, got ${count}`);
    }
    this.rng = opts.rng;
    this.pageCount = pageCount;
    this.basePage = basePage;
    this.accessSize = accessSize;
    this.count = count;
    this.pageScale = pageCount / U32_RANGE;
    this.offsetMask = PAGE_MASK & ~(accessSize - 1);
  }

  /** Accesses produced so far. */
  get produced(): number {
    return this.seq;
  }

  abstract fill(batch: AccessBatch, maxCount?: number): boolean;

  /** Clears `batch` and says how many accesses this fill writes. */
  protected begin(batch: AccessBatch, maxCount: number): number {
    batch.length = 0;
    let n = maxCount < batch.capacity ? maxCount : batch.capacity;
    const left = this.count - this.seq;
    if (left < n) n = left;
    return n > 0 ? Math.floor(n) : 0;
  }

  /** Records that `n` accesses were written. */
  protected end(batch: AccessBatch, n: number): boolean {
    batch.length = n;
    this.seq += n;
    return n > 0;
  }
}
