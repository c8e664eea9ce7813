/**
 * A domain's guest-physical memory over its p2m: the software view
 * (GuestPhysAccess: what the toolstack, the guest-OS model and migration use;
 * no TLB, no A/D, no exits) plus population of guest frames.
 *
 * Population gives a gfn a host frame, mapped ram_rw — or ram_logdirty while
 * log-dirty covers it, so a later write is still caught (Xen's PoD path maps
 * ram_rw and marks the frames dirty instead; either way no write is lost).
 * With populateOrder 9, a whole 2 MiB-aligned block is populated as one
 * superpage when it fits inside the guest.
 *
 * Units: gpa in bytes, gfn/mfn in 4 KiB frames; valid gfns are [0, pageCount).
 */
import type { FramePool } from '../memory/frame-pool.ts';
import type { GuestPhysAccess } from '../memory/guest-phys.ts';
import { P2m, P2mLookup } from '../p2m/p2m.ts';
import { P2mType } from '../p2m/p2m-type.ts';
import { ORDER_2M, ORDER_4K, PAGE_SIZE } from '../units.ts';

/** Scratch for unaligned u32 reads (single-threaded engine: never shared between two reads). */
const UNALIGNED_SCRATCH = new Uint8Array(4);

export class GuestMemoryError extends Error {}

/** Types whose frames hold guest data the software view may read and write. */
function hasData(t: P2mType): boolean {
  return t !== P2mType.Invalid && t !== P2mType.PopulateOnDemand && t !== P2mType.MmioDm &&
    t !== P2mType.RamPaged && t !== P2mType.RamPagingOut && t !== P2mType.RamPagingIn && t !== P2mType.MmioDirect;
}

/**
 * Allocates `n` (a power of two) host frames with consecutive, n-aligned mfns.
 * FramePool hands out fresh frames in increasing order once its free list is
 * empty; frames that do not fit the run go back to the pool.
 */
export function allocContiguous(pool: FramePool, n: number): number {
  const spill: number[] = [];
  let runStart = -1;
  let runLen = 0;
  for (;;) {
    const m = pool.alloc();
    if (runLen > 0 && m === runStart + runLen) {
      runLen++;
    } else if (m % n === 0) {
      for (let k = 0; k < runLen; k++) spill.push(runStart + k);
      runStart = m;
      runLen = 1;
    } else {
      for (let k = 0; k < runLen; k++) spill.push(runStart + k);
      spill.push(m);
      runLen = 0;
    }
    if (runLen === n) break;
  }
  for (const m of spill) pool.free(m);
  return runStart;
}

export class GuestMemory implements GuestPhysAccess {
  /** Guest frames that have a host frame. */
  populatedFrames = 0;
  private readonly r = new P2mLookup();

  constructor(
    readonly p2m: P2m,
    readonly pool: FramePool,
    readonly pageCount: number,
    /** 0: populate 4 KiB frames; 9: 2 MiB superpages where they fit. */
    readonly populateOrder: number = ORDER_4K,
  ) {}

  /** Host frame holding gfn's data, or -1 when it has none. */
  frameOf(gfn: number): number {
    const r = this.r;
    if (!this.p2m.lookup(gfn, r) || !hasData(r.type)) return -1;
    return r.mfn;
  }

  /** Gives gfn a host frame if it has none (see the header); returns the frame. */
  populate(gfn: number): number {
    if (gfn < 0 || gfn >= this.pageCount || !Number.isInteger(gfn)) {
      throw new GuestMemoryError(`gfn ${gfn} is outside guest memory (0..${this.pageCount - 1})`);
    }
    const have = this.frameOf(gfn);
    if (have >= 0) return have;
    const p2m = this.p2m;
    if (this.populateOrder === ORDER_2M) {
      const base = gfn - (gfn % 512);
      if (base + 512 <= this.pageCount && this.blockEmpty(base)) {
        const mfn = allocContiguous(this.pool, 512);
        const type = p2m.isLogdirtyRange(base, base + 511) === 1 ? P2mType.RamLogdirty : P2mType.RamRw;
        p2m.set(base, mfn, ORDER_2M, type);
        this.populatedFrames += 512;
        return mfn + (gfn - base);
      }
    }
    const mfn = this.pool.alloc();
    p2m.set(gfn, mfn, ORDER_4K, p2m.ramTypeFor(gfn));
    this.populatedFrames++;
    return mfn;
  }

  /** Populates [firstGfn, firstGfn + count). */
  populateRange(firstGfn: number, count: number): void {
    for (let g = firstGfn; g < firstGfn + count; g++) this.populate(g);
  }

  /** Populates every guest frame (up-front allocation). */
  populateAll(): void {
    this.populateRange(0, this.pageCount);
  }

  readU32(gpa: number): number {
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const off = gpa - gfn * PAGE_SIZE;
    const mfn = this.frameOf(gfn);
    if (mfn < 0) return 0;
    if ((off & 3) === 0) return this.pool.wordsOf(mfn)[this.pool.wordOffset(mfn) + (off >>> 2)]!;
    // Unaligned (it may cross a page): through readBytes, into one scratch (no allocation per read).
    const tmp = UNALIGNED_SCRATCH;
    this.readBytes(gpa, tmp, 0, 4);
    return (tmp[0]! | (tmp[1]! << 8) | (tmp[2]! << 16) | (tmp[3]! << 24)) >>> 0;
  }

  writeU32(gpa: number, value: number): void {
    if (gpa % 4 !== 0) throw new GuestMemoryError(`writeU32 at unaligned gpa 0x${gpa.toString(16)}`);
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const mfn = this.populate(gfn);
    this.pool.wordsOf(mfn)[this.pool.wordOffset(mfn) + ((gpa - gfn * PAGE_SIZE) >>> 2)] = value >>> 0;
  }

  readPage(gfn: number, dst: Uint8Array, dstOffset: number): boolean {
    const mfn = this.frameOf(gfn);
    if (mfn < 0) {
      dst.fill(0, dstOffset, dstOffset + PAGE_SIZE);
      return false;
    }
    const off = this.pool.byteOffset(mfn);
    dst.set(this.pool.bytesOf(mfn).subarray(off, off + PAGE_SIZE), dstOffset);
    return true;
  }

  writePage(gfn: number, src: Uint8Array, srcOffset: number): void {
    const mfn = this.populate(gfn);
    this.pool.bytesOf(mfn).set(src.subarray(srcOffset, srcOffset + PAGE_SIZE), this.pool.byteOffset(mfn));
  }

  /** Copies n bytes at gpa (any alignment, crossing pages) into dst; unpopulated frames read as zeros. */
  readBytes(gpa: number, dst: Uint8Array, dstOffset: number, n: number): void {
    let done = 0;
    while (done < n) {
      const a = gpa + done;
      const gfn = Math.floor(a / PAGE_SIZE);
      const off = a - gfn * PAGE_SIZE;
      const len = Math.min(n - done, PAGE_SIZE - off);
      const mfn = this.frameOf(gfn);
      if (mfn < 0) {
        dst.fill(0, dstOffset + done, dstOffset + done + len);
      } else {
        const b = this.pool.byteOffset(mfn) + off;
        dst.set(this.pool.bytesOf(mfn).subarray(b, b + len), dstOffset + done);
      }
      done += len;
    }
  }

  /** Writes n bytes from src at gpa (any alignment, crossing pages), populating frames as needed. */
  writeBytes(gpa: number, src: Uint8Array, srcOffset: number, n: number): void {
    let done = 0;
    while (done < n) {
      const a = gpa + done;
      const gfn = Math.floor(a / PAGE_SIZE);
      const off = a - gfn * PAGE_SIZE;
      const len = Math.min(n - done, PAGE_SIZE - off);
      const mfn = this.populate(gfn);
      this.pool.bytesOf(mfn).set(src.subarray(srcOffset + done, srcOffset + done + len), this.pool.byteOffset(mfn) + off);
      done += len;
    }
  }

  private blockEmpty(base: number): boolean {
    for (let g = base; g < base + 512; g++) if (this.p2m.lookup(g, this.r)) return false;
    return true;
  }
}
