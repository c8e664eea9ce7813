/**
 * Uniform: every access a store to a page drawn uniformly from the whole
 * range — the `--workload uniform --dirty-rate D` of `memvisor migrate`.
 * After k writes over M pages, about M(1 − e^(−k/M)) distinct pages are dirty.
 */
import { PAGE_SIZE } from '../units.ts';
import { AccessKind, type AccessBatch } from './access-batch.ts';
import { SyntheticWorkload, type SyntheticOptions } from './synthetic-base.ts';

export type UniformOptions = SyntheticOptions;

export class UniformWorkload extends SyntheticWorkload {
  readonly name = 'uniform';

  constructor(opts: UniformOptions) {
    super(opts);
  }

  fill(batch: AccessBatch, maxCount: number = batch.capacity): boolean {
    const n = this.begin(batch, maxCount);
    const rng = this.rng;
    const pageScale = this.pageScale;
    const base = this.basePage;
    const mask = this.offsetMask;
    const size = this.accessSize;
    const { kind, addr, size: sizes, line } = batch;
    let seq = this.seq;
    for (let i = 0; i < n; i++) {
      const gfn = base + Math.floor(rng.nextU32() * pageScale);
      kind[i] = AccessKind.Store;
      addr[i] = gfn * PAGE_SIZE + (rng.nextU32() & mask);
      sizes[i] = size;
      line[i] = ++seq;
    }
    return this.end(batch, n);
  }
}
