/**
 * Read-mostly: pages drawn uniformly from the range, each access a load
 * except with probability `writeFraction` a store (a database serving
 * reads, a page cache). Only the stores dirty pages, so at a given access
 * rate it dirties about writeFraction as many pages as `uniform`.
 *
 * Default writeFraction 0.05.
 */
import { PAGE_SIZE } from '../units.ts';
import { AccessKind, type AccessBatch } from './access-batch.ts';
import { SyntheticWorkload, U32_RANGE, type SyntheticOptions } from './synthetic-base.ts';

export interface ReadMostlyOptions extends SyntheticOptions {
  /** Probability that an access is a store, in [0, 1] (default 0.05). */
  readonly writeFraction?: number;
}

export class ReadMostlyWorkload extends SyntheticWorkload {
  readonly name = 'read-mostly';
  readonly writeFraction: number;
  /** A u32 draw below this is a store. */
  private readonly writeThreshold: number;

  constructor(opts: ReadMostlyOptions) {
    super(opts);
    const { writeFraction = 0.05 } = opts;
    if (!(writeFraction >= 0 && writeFraction <= 1)) {
      throw new RangeError(`read-mostly: writeFraction must be in [0, 1], got ${writeFraction}`);
    }
    this.writeFraction = writeFraction;
    this.writeThreshold = writeFraction * U32_RANGE;
  }

  fill(batch: AccessBatch, maxCount: number = batch.capacity): boolean {
    const n = this.begin(batch, maxCount);
    const rng = this.rng;
    const pageScale = this.pageScale;
    const writeBelow = this.writeThreshold;
    const base = this.basePage;
    const mask = this.offsetMask;
    const size = this.accessSize;
    const { kind, addr, size: sizes, line } = batch;
    let seq = this.seq;
    for (let i = 0; i < n; i++) {
      const gfn = base + Math.floor(rng.nextU32() * pageScale);
      kind[i] = rng.nextU32() < writeBelow ? AccessKind.Store : AccessKind.Load;
      addr[i] = gfn * PAGE_SIZE + (rng.nextU32() & mask);
      sizes[i] = size;
      line[i] = ++seq;
    }
    return this.end(batch, n);
  }
}
