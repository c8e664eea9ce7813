/**
 * The receiver's guest memory: a sparse store of 64 MiB slabs allocated on
 * first non-zero write (large slabs: V8 hands them out lazily-zeroed by the
 * kernel, measured 2× cheaper per page than 2 MiB ones), so a big, mostly-zero guest costs little. A zero
 * page written into an absent slab stays absent. Implements the page part of
 * GuestPhysAccess, so a receiver can equally write into a real domain.
 */
import type { GuestPhysAccess } from '../memory/guest-phys.ts';
import { hashPage, ZERO_PAGE_HASH } from './stream/checksum.ts';

/** What the receiver needs of destination memory. */
export type PageStore = Pick<GuestPhysAccess, 'pageCount' | 'readPage' | 'writePage'> & {
  /** Optional: `count` consecutive pages whose bytes lie back to back at src[srcOffset]. */
  writePages?(gfn: number, count: number, src: Uint8Array, srcOffset: number): void;
};

const PAGE = 4096;
const SLAB_SHIFT = 14;
const SLAB_PAGES = 1 << SLAB_SHIFT;
const ZERO = new Uint8Array(PAGE);

/** Makes a zeroed slab of `bytes` (default: a plain Uint8Array; the receiver may give shared memory a helper thread can pre-fault). */
export type SlabAllocator = (bytes: number) => Uint8Array;

export class PagedMemory implements PageStore {
  private readonly slabs: (Uint8Array | undefined)[];
  private readonly allocSlab: SlabAllocator;

  constructor(readonly pageCount: number, allocSlab: SlabAllocator = (bytes) => new Uint8Array(bytes)) {
    this.slabs = new Array<Uint8Array | undefined>(Math.ceil(pageCount / SLAB_PAGES));
    this.allocSlab = allocSlab;
  }

  /** Bytes allocated for slabs. */
  get allocatedBytes(): number {
    let n = 0;
    for (const s of this.slabs) if (s) n += s.length;
    return n;
  }

  readPage(gfn: number, dst: Uint8Array, dstOffset: number): boolean {
    const slab = this.slabs[gfn >>> SLAB_SHIFT];
    if (!slab) {
      dst.fill(0, dstOffset, dstOffset + PAGE);
      return false;
    }
    const off = (gfn & (SLAB_PAGES - 1)) * PAGE;
    dst.set(slab.subarray(off, off + PAGE), dstOffset);
    return true;
  }

  writePage(gfn: number, src: Uint8Array, srcOffset: number): void {
    let slab = this.slabs[gfn >>> SLAB_SHIFT];
    if (!slab) {
      if (src === ZERO) return;
      slab = this.newSlab(gfn);
    }
    slab.set(new Uint8Array(src.buffer, src.byteOffset + srcOffset, PAGE), (gfn & (SLAB_PAGES - 1)) * PAGE);
  }

  /**
   * Writes `count` pages from `gfn` on, whose bytes lie back to back at
   * `src[srcOffset]`: one copy per slab instead of one per page (a batch of
   * consecutive frames arrives as one run).
   */
  writePages(gfn: number, count: number, src: Uint8Array, srcOffset: number): void {
    let at = src.byteOffset + srcOffset;
    while (count > 0) {
      const inSlab = Math.min(count, SLAB_PAGES - (gfn & (SLAB_PAGES - 1)));
      const slab = this.slabs[gfn >>> SLAB_SHIFT] ?? this.newSlab(gfn);
      // A plain view, not src.subarray: a Buffer's subarray costs ≈1 µs.
      slab.set(new Uint8Array(src.buffer, at, inSlab * PAGE), (gfn & (SLAB_PAGES - 1)) * PAGE);
      gfn += inSlab;
      count -= inSlab;
      at += inSlab * PAGE;
    }
  }

  private newSlab(gfn: number): Uint8Array {
    const base = (gfn >>> SLAB_SHIFT) << SLAB_SHIFT;
    return (this.slabs[gfn >>> SLAB_SHIFT] = this.allocSlab(Math.min(SLAB_PAGES, this.pageCount - base) * PAGE));
  }

  /**
   * Allocates every slab not yet allocated (virtual memory only: nothing is
   * touched) and returns all of them in gfn order, for a helper that
   * pre-faults them ahead of the stream's writes.
   */
  allocateAll(): Uint8Array[] {
    for (let i = 0; i < this.slabs.length; i++) this.slabs[i] ??= this.allocSlab(Math.min(SLAB_PAGES, this.pageCount - i * SLAB_PAGES) * PAGE);
    return this.slabs as Uint8Array[];
  }

  /**
   * Allocates every slab and touches every page now, like a destination
   * domain whose memory is populated when it is built (Xen restore): the page
   * faults (≈2.7 µs per 4 KiB here) then happen before the stream, not in it.
   * `onSlab` hears the pages done after each 64 MiB slab, so a caller can
   * show that a long preallocation is progressing.
   */
  prefault(onSlab?: (pagesDone: number, pageCount: number) => void): void {
    for (let i = 0; i < this.slabs.length; i++) {
      const slab = (this.slabs[i] ??= this.allocSlab(Math.min(SLAB_PAGES, this.pageCount - i * SLAB_PAGES) * PAGE));
      for (let o = 0; o < slab.length; o += PAGE) slab[o] = 0;
      onSlab?.(Math.min(this.pageCount, (i + 1) * SLAB_PAGES), this.pageCount);
    }
  }

  /** Zeroes every allocated slab (a store reused after a failed attempt). */
  clear(): void {
    for (const s of this.slabs) s?.fill(0);
  }

  /** Writes a zero page (no allocation if its slab is absent). */
  zeroPage(gfn: number): void {
    const slab = this.slabs[gfn >>> SLAB_SHIFT];
    if (slab) slab.fill(0, (gfn & (SLAB_PAGES - 1)) * PAGE, ((gfn & (SLAB_PAGES - 1)) + 1) * PAGE);
  }

  /** Page hash straight from the slab (no copy); absent slab ⇒ zero-page hash. */
  hashPageInto(gfn: number, out: Uint32Array, outIndex: number): void {
    const slab = this.slabs[gfn >>> SLAB_SHIFT];
    if (!slab) {
      out[outIndex] = ZERO_PAGE_HASH.lo;
      out[outIndex + 1] = ZERO_PAGE_HASH.hi;
      return;
    }
    hashPage(slab, (gfn & (SLAB_PAGES - 1)) * PAGE, out, outIndex);
  }
}

export { ZERO as ZERO_PAGE_BYTES };
