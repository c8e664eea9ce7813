/**
 * Per-page write age for the dashboard heatmap: for every guest page, the
 * last round whose harvest reported it dirty (0 = never). Fed once per round
 * with the harvest bitmap (bit `gfn & 31` of word `gfn >>> 5`, as every
 * DirtyMode fills it), never per guest access.
 *
 * Units: rounds are numbered from 1 by whoever calls `record`; gfn 4 KiB frames.
 * Invariant: `lastDirtyRound[gfn] ≤ round` (the latest round recorded).
 */
export class PageAges {
  /** Last round that reported the page dirty; 0 = never dirtied since reset. */
  readonly lastDirtyRound: Uint32Array;
  /** Latest round recorded (0 before the first). */
  round = 0;
  /** Distinct pages ever reported dirty. */
  everDirty = 0;

  constructor(readonly pageCount: number) {
    this.lastDirtyRound = new Uint32Array(pageCount);
  }

  /**
   * Records one harvest as round `round` (> every earlier round). Bits past
   * pageCount are ignored. Returns the pages set in the bitmap.
   */
  record(bitmap: Uint32Array, round: number): number {
    if (!(round > this.round)) throw new RangeError(`round ${round} is not after round ${this.round}`);
    this.round = round;
    const last = this.lastDirtyRound;
    const n = this.pageCount;
    const words = Math.min(bitmap.length, Math.ceil(n / 32));
    let set = 0;
    for (let w = 0; w < words; w++) {
      let bits = bitmap[w]!;
      if (bits === 0) continue;
      const base = w << 5;
      while (bits !== 0) {
        const low = bits & -bits;
        const gfn = base + (31 - Math.clz32(low));
        bits ^= low;
        if (gfn >= n) break;
        if (last[gfn] === 0) this.everDirty++;
        last[gfn] = round;
        set++;
      }
    }
    return set;
  }

  reset(): void {
    this.lastDirtyRound.fill(0);
    this.round = 0;
    this.everDirty = 0;
  }
}
