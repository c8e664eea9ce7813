/**
 * A set of gfns as sorted, disjoint, inclusive ranges: Xen's rangeset, used for
 * p2m->logdirty_ranges (xen/common/rangeset.c). Control-plane structure: add and
 * remove allocate; the queries (contains / overlaps) do not.
 *
 * Invariant: starts[k] ≤ ends[k] < starts[k + 1] - 1 (adjacent ranges are merged).
 */
export class GfnRangeSet {
  private starts: number[] = [];
  private ends: number[] = [];

  get rangeCount(): number {
    return this.starts.length;
  }

  clear(): void {
    this.starts = [];
    this.ends = [];
  }

  /** Adds [first, last]. */
  add(first: number, last: number): void {
    if (last < first) return;
    const s: number[] = [];
    const e: number[] = [];
    let lo = first;
    let hi = last;
    let placed = false;
    for (let k = 0; k < this.starts.length; k++) {
      const a = this.starts[k]!;
      const b = this.ends[k]!;
      if (b + 1 < lo) {
        s.push(a);
        e.push(b);
      } else if (a > hi + 1) {
        if (!placed) {
          s.push(lo);
          e.push(hi);
          placed = true;
        }
        s.push(a);
        e.push(b);
      } else {
        lo = Math.min(lo, a);
        hi = Math.max(hi, b);
      }
    }
    if (!placed) {
      s.push(lo);
      e.push(hi);
    }
    this.starts = s;
    this.ends = e;
  }

  /** Removes [first, last]. */
  remove(first: number, last: number): void {
    if (last < first) return;
    const s: number[] = [];
    const e: number[] = [];
    for (let k = 0; k < this.starts.length; k++) {
      const a = this.starts[k]!;
      const b = this.ends[k]!;
      if (b < first || a > last) {
        s.push(a);
        e.push(b);
        continue;
      }
      if (a < first) {
        s.push(a);
        e.push(first - 1);
      }
      if (b > last) {
        s.push(last + 1);
        e.push(b);
      }
    }
    this.starts = s;
    this.ends = e;
  }

  /** Index of the last range whose start ≤ gfn, or -1. */
  private floorIndex(gfn: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! <= gfn) {
        ans = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return ans;
  }

  /** Whether every gfn of [first, last] is in the set. */
  containsRange(first: number, last: number): boolean {
    const k = this.floorIndex(first);
    return k >= 0 && this.ends[k]! >= last;
  }

  /** Whether any gfn of [first, last] is in the set. */
  overlaps(first: number, last: number): boolean {
    const k = this.floorIndex(last);
    return k >= 0 && this.ends[k]! >= first;
  }

  /** The ranges, for reports and tests. */
  toArray(): Array<[number, number]> {
    return this.starts.map((s, k) => [s, this.ends[k]!]);
  }
}
