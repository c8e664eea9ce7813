/**
 * Sequential: a sweep — stores to pages start, start + stride, ... wrapping
 * at the end of the range (a memcpy or a GC marking pass, seen page by page).
 * One access per page visited; the offset inside the page is still drawn from
 * the Rng so the bytes written differ between pages.
 *
 * Defaults: startPage 0, stride 1 page.
 */
import { PAGE_SIZE } from '../units.ts';
import { AccessKind, type AccessBatch } from './access-batch.ts';
import { SyntheticWorkload, type SyntheticOptions } from './synthetic-base.ts';

export interface SequentialOptions extends SyntheticOptions {
  /** First page of the sweep, relative to basePage (default 0). */
  readonly startPage?: number;
  /** Pages between consecutive accesses, ≥ 1 (default 1). */
  readonly stride?: number;
}

export class SequentialWorkload extends SyntheticWorkload {
  readonly name = 'sequential';
  readonly stride: number;
  /** Next page of the sweep, relative to basePage. */
  private cursor: number;

  constructor(opts: SequentialOptions) {
    super(opts);
    const { startPage = 0, stride = 1 } = opts;
    if (!Number.isInteger(startPage) || startPage < 0 || startPage >= this.pageCount) {
      throw new RangeError(`sequential: startPage must be a page of the range, got ${startPage}`);
    }
    if (!Number.isInteger(stride) || stride < 1) {
      throw new RangeError(`sequential: stride must be a positive integer, got ${stride}`);
    }
    this.cursor = startPage;
    this.stride = stride % this.pageCount || this.pageCount;
  }

  fill(batch: AccessBatch, maxCount: number = batch.capacity): boolean {
    const n = this.begin(batch, maxCount);
    const rng = this.rng;
    const pages = this.pageCount;
    const stride = this.stride;
    const base = this.basePage;
    const mask = this.offsetMask;
    const size = this.accessSize;
    const { kind, addr, size: sizes, line } = batch;
    let seq = this.seq;
    let page = this.cursor;
    for (let i = 0; i < n; i++) {
      kind[i] = AccessKind.Store;
      addr[i] = (base + page) * PAGE_SIZE + (rng.nextU32() & mask);
      sizes[i] = size;
      line[i] = ++seq;
      page += stride;
      if (page >= pages) page -= pages;
    }
    this.cursor = page;
    return this.end(batch, n);
  }
}
