/**
 * Xen's log-dirty bitmap (`xen/arch/x86/mm/paging.c`): a 4-level radix tree
 * of 4 KiB pages, one bit per guest pfn, covering 2^42 pfns (16 PiB).
 *
 * ```
 *  pfn    41          33 32          24 23          15 14                  0
 *        +--------------+--------------+--------------+---------------------+
 *        |   i4 (9)     |   i3 (9)     |   i2 (9)     |      i1 (15)        |
 *        +--------------+--------------+--------------+---------------------+
 *  top (L4 node, 512 slots) -> L3 node (512) -> L2 node (512) -> leaf (32768 bits)
 * ```
 *
 * - A leaf is one page of 32768 bits held as 1024 u32 words; bit i1 is bit
 *   (i1 & 31) of word (i1 >>> 5), so the leaf's bytes (little-endian) are
 *   exactly Xen's `unsigned long` bitmap bytes: bit i1 is bit (i1 & 7) of
 *   byte (i1 >>> 3).
 * - An interior node is one page of 512 slots; an empty slot (Xen:
 *   INVALID_MFN) is `null` here.
 * - Pages are allocated lazily, on the first *dirty* mark below a slot, from
 *   an injected {@link LogDirtyPageAllocator}; a clean mark never allocates.
 *   A failed allocation counts in `failedAllocs` and the mark is lost, as in
 *   Xen (`paging_new_log_dirty_page` bumps `failed_allocs`).
 * - Interior nodes are never freed until {@link DirtyTrie.freeAll} (or the
 *   per-slot free helpers that OFF uses); clearing leaves keeps them.
 *
 * pfns are JS numbers: the L3/L4 indices are taken by division, not by
 * shifts, because `>>` only sees the low 32 bits. pfns outside [0, 2^42) are
 * ignored (Xen ignores pfns with the MSB set, "invalid M2P").
 */
import { PAGE_SIZE, WORDS_PER_PAGE } from '../units.ts';
import { ALLOC_FAILED, type LogDirtyPageAllocator } from './page-allocator.ts';

/** Slots in an interior node (Xen LOGDIRTY_NODE_ENTRIES). */
export const LOGDIRTY_NODE_ENTRIES = 512;
/** pfns covered by one leaf (bits in a 4 KiB page). */
export const PFNS_PER_LEAF = PAGE_SIZE * 8;
/** pfns covered by one L2 node = one L3 slot (2^24). */
export const PFNS_PER_L3_SLOT = PFNS_PER_LEAF * LOGDIRTY_NODE_ENTRIES;
/** pfns covered by one L3 node = one L4 slot (2^33). */
export const PFNS_PER_L4_SLOT = PFNS_PER_L3_SLOT * LOGDIRTY_NODE_ENTRIES;
/** pfns covered by the whole tree (2^42). */
export const LOGDIRTY_MAX_PFNS = PFNS_PER_L4_SLOT * LOGDIRTY_NODE_ENTRIES;

const L1_MASK = PFNS_PER_LEAF - 1; // 0x7FFF
const NODE_MASK = LOGDIRTY_NODE_ENTRIES - 1; // 511

/** Index into a leaf (bit number), pfn bits 14..0. */
export function l1Index(pfn: number): number {
  return pfn & L1_MASK;
}
/** Index into an L2 node, pfn bits 23..15. */
export function l2Index(pfn: number): number {
  return (pfn >>> 15) & NODE_MASK;
}
/** Index into an L3 node, pfn bits 32..24 (division: bit 32 is beyond `>>`). */
export function l3Index(pfn: number): number {
  return (pfn / PFNS_PER_L3_SLOT) & NODE_MASK;
}
/** Index into the top (L4) node, pfn bits 41..33. */
export function l4Index(pfn: number): number {
  return (pfn / PFNS_PER_L4_SLOT) & NODE_MASK;
}

/** One leaf page: 32768 bits. `bytes` views the same memory as `words`. */
export class DirtyLeaf {
  readonly words = new Uint32Array(WORDS_PER_PAGE);
  readonly bytes = new Uint8Array(this.words.buffer);
  constructor(readonly page: number) {}
}

/** One interior page: 512 child slots, `null` when empty. */
export class DirtyNode<Child> {
  readonly slots: (Child | null)[] = new Array<Child | null>(LOGDIRTY_NODE_ENTRIES).fill(null);
  constructor(readonly page: number) {}
}

export type DirtyL2 = DirtyNode<DirtyLeaf>;
export type DirtyL3 = DirtyNode<DirtyL2>;
export type DirtyL4 = DirtyNode<DirtyL3>;

export class DirtyTrie {
  /** The L4 node (Xen `log_dirty.top`), null until the first dirty mark. */
  top: DirtyL4 | null = null;
  /** Pages currently allocated to the tree (Xen `log_dirty.allocs`). */
  allocs = 0;
  /** Allocations that failed since the tree was last freed (Xen `failed_allocs`). */
  failedAllocs = 0;

  constructor(private readonly allocator: LogDirtyPageAllocator) {}

  /**
   * Sets the bit of `pfn`, allocating the path to it if needed. Returns true
   * on a 0→1 transition; false if it was already set, the pfn is out of
   * range, or an allocation failed (then `failedAllocs` went up).
   */
  markDirty(pfn: number): boolean {
    if (!(pfn >= 0 && pfn < LOGDIRTY_MAX_PFNS)) return false;
    let top = this.top;
    if (top === null) {
      const page = this.allocPage();
      if (page === ALLOC_FAILED) return false;
      top = this.top = new DirtyNode<DirtyL3>(page);
    }
    const i4 = l4Index(pfn);
    let l3 = top.slots[i4] as DirtyL3 | null;
    if (l3 === null) {
      const page = this.allocPage();
      if (page === ALLOC_FAILED) return false;
      l3 = top.slots[i4] = new DirtyNode<DirtyL2>(page);
    }
    const i3 = l3Index(pfn);
    let l2 = l3.slots[i3] as DirtyL2 | null;
    if (l2 === null) {
      const page = this.allocPage();
      if (page === ALLOC_FAILED) return false;
      l2 = l3.slots[i3] = new DirtyNode<DirtyLeaf>(page);
    }
    const i2 = l2Index(pfn);
    let leaf = l2.slots[i2] as DirtyLeaf | null;
    if (leaf === null) {
      const page = this.allocPage();
      if (page === ALLOC_FAILED) return false;
      leaf = l2.slots[i2] = new DirtyLeaf(page);
    }
    const i1 = pfn & L1_MASK;
    const w = i1 >>> 5;
    const bit = 1 << (i1 & 31);
    const old = leaf.words[w] as number;
    if ((old & bit) !== 0) return false;
    leaf.words[w] = old | bit;
    return true;
  }

  /** Clears the bit of `pfn` (never allocates). Returns true on a 1→0 transition. */
  markClean(pfn: number): boolean {
    const leaf = this.leafOf(pfn);
    if (leaf === null) return false;
    const i1 = pfn & L1_MASK;
    const w = i1 >>> 5;
    const bit = 1 << (i1 & 31);
    const old = leaf.words[w] as number;
    if ((old & bit) === 0) return false;
    leaf.words[w] = old & ~bit;
    return true;
  }

  /** Whether the bit of `pfn` is set. */
  test(pfn: number): boolean {
    const leaf = this.leafOf(pfn);
    if (leaf === null) return false;
    const i1 = pfn & L1_MASK;
    return ((leaf.words[i1 >>> 5] as number) & (1 << (i1 & 31))) !== 0;
  }

  /** The leaf holding `pfn`, or null when any level on the path is missing. */
  leafOf(pfn: number): DirtyLeaf | null {
    if (!(pfn >= 0 && pfn < LOGDIRTY_MAX_PFNS) || this.top === null) return null;
    const l3 = this.top.slots[l4Index(pfn)];
    if (l3 == null) return null;
    const l2 = l3.slots[l3Index(pfn)];
    if (l2 == null) return null;
    return l2.slots[l2Index(pfn)] ?? null;
  }

  /**
   * Copies the bits of pfns [firstPfn, firstPfn + numPfns) into `dst`
   * starting at byte `dstByteOffset`, one byte per 8 pfns (a missing leaf or
   * subtree gives zeros), and returns how many pfns it walked: numPfns
   * rounded up to a multiple of 8, cut at the end of the tree's coverage.
   *
   * This is the body of Xen's PEEK/CLEAN walk: per leaf it copies
   * `min(4096, ceil(remaining / 8))` bytes, and with `clearLeaves` it zeroes
   * each present leaf right after copying it — the *whole* leaf, as Xen's
   * `clear_page(l1)` does, even when only part of it was copied. `dst` null
   * means "no copy" (Xen's null bitmap handle) but still clears.
   *
   * Missing subtrees are skipped in one step (one `fill(0)` of the
   * destination), so a sparse 1 TiB guest costs what its leaves cost.
   *
   * @param firstPfn multiple of PFNS_PER_LEAF.
   */
  copyOut(
    dst: Uint8Array | null,
    dstByteOffset: number,
    firstPfn: number,
    numPfns: number,
    clearLeaves: boolean,
  ): number {
    if (firstPfn % PFNS_PER_LEAF !== 0 || firstPfn < 0) {
      throw new RangeError(`copyOut: firstPfn ${firstPfn} is not a multiple of ${PFNS_PER_LEAF}`);
    }
    let done = 0;
    let pfn = firstPfn;
    let out = dstByteOffset;
    const top = this.top;
    while (done < numPfns && pfn < LOGDIRTY_MAX_PFNS) {
      const remainingBytes = Math.ceil((numPfns - done) / 8);
      const l3 = top === null ? null : top.slots[l4Index(pfn)];
      let span: number; // pfns up to the end of the missing subtree, if any
      if (l3 == null) {
        span = PFNS_PER_L4_SLOT - (pfn % PFNS_PER_L4_SLOT);
      } else {
        const l2 = l3.slots[l3Index(pfn)];
        if (l2 == null) {
          span = PFNS_PER_L3_SLOT - (pfn % PFNS_PER_L3_SLOT);
        } else {
          // Present L2 node: leaf by leaf to the end of this L3 slot.
          let i2 = l2Index(pfn);
          while (i2 < LOGDIRTY_NODE_ENTRIES && done < numPfns) {
            const leaf = l2.slots[i2];
            const bytes = Math.min(PAGE_SIZE, Math.ceil((numPfns - done) / 8));
            if (dst !== null) {
              if (leaf == null) dst.fill(0, out, out + bytes);
              else dst.set(bytes === PAGE_SIZE ? leaf.bytes : leaf.bytes.subarray(0, bytes), out);
            }
            if (leaf != null && clearLeaves) leaf.words.fill(0);
            out += bytes;
            done += bytes * 8;
            pfn += bytes * 8;
            i2++;
          }
          continue;
        }
      }
      const bytes = Math.min(span / 8, remainingBytes);
      if (dst !== null) dst.fill(0, out, out + bytes);
      out += bytes;
      done += bytes * 8;
      pfn += bytes * 8;
    }
    return done;
  }

  /**
   * Calls `visit(pfn)` for every set bit in [firstPfn, endPfn), in increasing
   * order. Skips missing subtrees and zero words; extracts set bits with
   * `w & -w` and Math.clz32 (count-trailing-zeros).
   */
  forEachDirty(visit: (pfn: number) => void, firstPfn = 0, endPfn = LOGDIRTY_MAX_PFNS): void {
    const top = this.top;
    if (top === null) return;
    const end = Math.min(endPfn, LOGDIRTY_MAX_PFNS);
    let pfn = Math.max(0, firstPfn);
    while (pfn < end) {
      const l3 = top.slots[l4Index(pfn)];
      if (l3 == null) {
        pfn += PFNS_PER_L4_SLOT - (pfn % PFNS_PER_L4_SLOT);
        continue;
      }
      const l2 = l3.slots[l3Index(pfn)];
      if (l2 == null) {
        pfn += PFNS_PER_L3_SLOT - (pfn % PFNS_PER_L3_SLOT);
        continue;
      }
      const leafBase = pfn - (pfn % PFNS_PER_LEAF);
      const leaf = l2.slots[l2Index(pfn)];
      if (leaf != null) {
        const lo = pfn - leafBase; // first bit to look at
        const hi = Math.min(end - leafBase, PFNS_PER_LEAF); // one past the last
        scanWords(leaf.words, lo, hi, leafBase, visit);
      }
      pfn = leafBase + PFNS_PER_LEAF;
    }
  }

  /** Number of set bits (walks the present leaves). */
  countDirty(): number {
    let n = 0;
    this.forEachLeaf((leaf) => {
      const words = leaf.words;
      for (let w = 0; w < words.length; w++) {
        const v = words[w] as number;
        if (v !== 0) n += popcount32(v);
      }
    });
    return n;
  }

  /** Zeroes every present leaf (the tree shape and its pages stay). */
  clearAll(): void {
    this.forEachLeaf((leaf) => leaf.words.fill(0));
  }

  /** Whether L4 slot `i4` holds an L3 node. */
  hasL3(i4: number): boolean {
    return this.top !== null && this.top.slots[i4] != null;
  }

  /**
   * Frees the L2 node in slot (i4, i3) and its leaves (Xen frees the tree one
   * L3 slot at a time so OFF can be preempted). Returns whether there was one.
   */
  freeL3Slot(i4: number, i3: number): boolean {
    const l3 = this.top === null ? null : this.top.slots[i4];
    if (l3 == null) return false;
    const l2 = l3.slots[i3];
    if (l2 == null) return false;
    for (let i2 = 0; i2 < LOGDIRTY_NODE_ENTRIES; i2++) {
      const leaf = l2.slots[i2];
      if (leaf != null) this.freePage(leaf.page);
    }
    this.freePage(l2.page);
    l3.slots[i3] = null;
    return true;
  }

  /** Frees the L3 node in L4 slot `i4` and anything still below it. */
  freeL4Slot(i4: number): boolean {
    const l3 = this.top === null ? null : this.top.slots[i4];
    if (l3 == null) return false;
    for (let i3 = 0; i3 < LOGDIRTY_NODE_ENTRIES; i3++) this.freeL3Slot(i4, i3);
    this.freePage(l3.page);
    (this.top as DirtyL4).slots[i4] = null;
    return true;
  }

  /**
   * Frees the top node and anything left below it, and resets
   * `failedAllocs` (Xen resets it when the tree is freed).
   */
  freeTop(): void {
    if (this.top !== null) {
      for (let i4 = 0; i4 < LOGDIRTY_NODE_ENTRIES; i4++) this.freeL4Slot(i4);
      this.freePage(this.top.page);
      this.top = null;
    }
    this.failedAllocs = 0;
  }

  /** Frees the whole tree (not preemptible; OFF uses the per-slot helpers). */
  freeAll(): void {
    this.freeTop();
  }

  /** Pages the tree holds (Xen `log_dirty.allocs`). */
  get allocatedPages(): number {
    return this.allocs;
  }

  private forEachLeaf(visit: (leaf: DirtyLeaf) => void): void {
    const top = this.top;
    if (top === null) return;
    for (const l3 of top.slots) {
      if (l3 === null) continue;
      for (const l2 of l3.slots) {
        if (l2 === null) continue;
        for (const leaf of l2.slots) if (leaf !== null) visit(leaf);
      }
    }
  }

  private allocPage(): number {
    const page = this.allocator.alloc();
    if (page === ALLOC_FAILED) {
      this.failedAllocs++;
      return ALLOC_FAILED;
    }
    this.allocs++;
    return page;
  }

  private freePage(page: number): void {
    this.allocator.free(page);
    this.allocs--;
  }
}

/**
 * Calls `visit(basePfn + bit)` for each set bit in `words` at bit positions
 * [loBit, hiBit). Word at a time; zero words cost one load and one compare.
 */
export function scanWords(
  words: Uint32Array,
  loBit: number,
  hiBit: number,
  basePfn: number,
  visit: (pfn: number) => void,
): void {
  if (hiBit <= loBit) return;
  const firstWord = loBit >>> 5;
  const lastWord = (hiBit - 1) >>> 5;
  for (let w = firstWord; w <= lastWord; w++) {
    let v = words[w] as number;
    if (v === 0) continue;
    if (w === firstWord) v &= -1 << (loBit & 31);
    if (w === lastWord && (hiBit & 31) !== 0) v &= (1 << (hiBit & 31)) - 1;
    const base = basePfn + w * 32;
    while (v !== 0) {
      const lowest = v & -v;
      visit(base + (31 - Math.clz32(lowest)));
      v ^= lowest;
    }
  }
}

/** Set bits in a u32. */
export function popcount32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}
