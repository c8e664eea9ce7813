/**
 * A direct-mapped TLB as flat typed arrays (the v86 way): slot = page & mask,
 * a hit costs one Float64 load and compare plus one flags test.
 *
 * Tags are page numbers as Float64 because guest-virtual page numbers reach
 * 2^36; an empty slot holds -1. Each entry caches the 4 KiB host frame and the
 * combined permissions of every stage, plus TLB_WD: the write can complete
 * without a walk because every dirty flag it would set (the guest PTE's D in 2-D,
 * the final p2m entry's D when the CPU tracks it) is already set. A write that
 * finds W without WD goes to the walker, as on hardware.
 *
 * The same class serves as the guest-physical ("nested") TLB of a 2-D walk,
 * keyed by gfn (SDM Vol. 3C §29.4.1: guest-physical mappings are cached).
 */
export const TLB_R = 1;
export const TLB_W = 2;
export const TLB_X = 4;
export const TLB_WD = 8;

/** TLB flag bits an access needs, by AccessKind (Fetch, Load, Store, Modify). */
export const TLB_NEED_BY_KIND = new Uint8Array([TLB_X, TLB_R, TLB_WD, TLB_R | TLB_WD]);

export class Tlb {
  readonly tag: Float64Array;
  readonly mfn: Int32Array;
  readonly flags: Uint8Array;
  readonly mask: number;
  /** Times flush() ran. */
  flushes = 0;

  /** @param entries a power of two. */
  constructor(readonly entries = 4096) {
    if (entries <= 0 || (entries & (entries - 1)) !== 0) throw new RangeError(`TLB size ${entries} is not a power of two`);
    this.tag = new Float64Array(entries).fill(-1);
    this.mfn = new Int32Array(entries);
    this.flags = new Uint8Array(entries);
    this.mask = entries - 1;
  }

  /** Host frame for `page` if cached with all of `need` (TLB_* bits), else -1. */
  lookup(page: number, need: number): number {
    const s = page & this.mask;
    return this.tag[s] === page && (this.flags[s]! & need) === need ? this.mfn[s]! : -1;
  }

  fill(page: number, mfn: number, flags: number): void {
    const s = page & this.mask;
    this.tag[s] = page;
    this.mfn[s] = mfn;
    this.flags[s] = flags;
  }

  invalidate(page: number): void {
    const s = page & this.mask;
    if (this.tag[s] === page) this.tag[s] = -1;
  }

  flush(): void {
    this.tag.fill(-1);
    this.flushes++;
  }
}
