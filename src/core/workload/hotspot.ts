/**
 * Hotspot: a hot region takes most of the writes (Clark et al.'s "writable
 * working set"). With probability `hotWeight` a store goes to a page drawn
 * uniformly from the hot region, otherwise to one drawn uniformly from the
 * rest (the cold pages), so the hot region receives exactly `hotWeight` of
 * the writes in expectation.
 *
 * Defaults: hotFraction 0.1 (10% of the pages, at least one), hotWeight 0.9,
 * hot region starting at page `hotStartPage` = 0 of the range.
 */
import { PAGE_SIZE } from '../units.ts';
import { AccessKind, type AccessBatch } from './access-batch.ts';
import { SyntheticWorkload, U32_RANGE, type SyntheticOptions } from './synthetic-base.ts';

export interface HotspotOptions extends SyntheticOptions {
  /** Share of the range's pages that are hot, in (0, 1] (default 0.1). */
  readonly hotFraction?: number;
  /** Probability that a write goes to the hot region, in [0, 1] (default 0.9). */
  readonly hotWeight?: number;
  /** First hot page, relative to basePage (default 0); the region wraps around. */
  readonly hotStartPage?: number;
}

export class HotspotWorkload extends SyntheticWorkload {
  readonly name = 'hotspot';
  /** Pages in the hot region. */
  readonly hotPages: number;
  readonly hotWeight: number;
  readonly hotStartPage: number;
  /** A u32 draw below this picks the hot region. */
  private readonly hotThreshold: number;

  constructor(opts: HotspotOptions) {
    super(opts);
    const { hotFraction = 0.1, hotWeight = 0.9, hotStartPage = 0 } = opts;
    if (!(hotFraction > 0 && hotFraction <= 1)) {
      throw new RangeError(`hotspot: hotFraction must be in (0, 1], got ${hotFraction}`);
    }
    if (!(hotWeight >= 0 && hotWeight <= 1)) {
      throw new RangeError(`hotspot: hotWeight must be in [0, 1], got ${hotWeight}`);
    }
    if (!Number.isInteger(hotStartPage) || hotStartPage < 0 || hotStartPage >= this.pageCount) {
      throw new RangeError(`hotspot: hotStartPage must be a page of the range, got ${hotStartPage}`);
    }
    this.hotPages = Math.max(1, Math.min(this.pageCount, Math.round(this.pageCount * hotFraction)));
    this.hotWeight = hotWeight;
    this.hotStartPage = hotStartPage;
    this.hotThreshold = this.hotPages === this.pageCount ? U32_RANGE : hotWeight * U32_RANGE;
  }

  /** True if gfn lies in the hot region. */
  isHot(gfn: number): boolean {
    const rel = gfn - this.basePage;
    if (rel < 0 || rel >= this.pageCount) return false;
    const fromStart = (rel - this.hotStartPage + this.pageCount) % this.pageCount;
    return fromStart < this.hotPages;
  }

  fill(batch: AccessBatch, maxCount: number = batch.capacity): boolean {
    const n = this.begin(batch, maxCount);
    const rng = this.rng;
    const pages = this.pageCount;
    const hot = this.hotPages;
    const cold = pages - hot;
    const hotBelow = this.hotThreshold;
    const hotScale = hot / U32_RANGE;
    const coldScale = cold / U32_RANGE;
    const start = this.hotStartPage;
    const base = this.basePage;
    const mask = this.offsetMask;
    const size = this.accessSize;
    const { kind, addr, size: sizes, line } = batch;
    let seq = this.seq;
    for (let i = 0; i < n; i++) {
      // Index from the hot region's start: [0, hot) hot, [hot, pages) cold.
      const rel =
        rng.nextU32() < hotBelow ? Math.floor(rng.nextU32() * hotScale) : hot + Math.floor(rng.nextU32() * coldScale);
      let page = start + rel;
      if (page >= pages) page -= pages;
      kind[i] = AccessKind.Store;
      addr[i] = (base + page) * PAGE_SIZE + (rng.nextU32() & mask);
      sizes[i] = size;
      line[i] = ++seq;
    }
    return this.end(batch, n);
  }
}
