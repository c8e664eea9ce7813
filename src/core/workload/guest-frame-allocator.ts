/**
 * The simulated guest OS's physical frame allocator: a bump pointer over a
 * range of guest frames [firstGfn, endGfn) plus a LIFO free list of frames
 * given back. Control-plane only (page faults), so a plain array is fine.
 *
 * Units: gfn (guest frame numbers, 4 KiB).
 */
export class GuestFrameAllocator {
  private next: number;
  private readonly freeList: number[] = [];
  /** Frames currently handed out. */
  allocated = 0;

  constructor(
    readonly firstGfn: number,
    readonly endGfn: number,
  ) {
    if (!Number.isInteger(firstGfn) || !Number.isInteger(endGfn) || firstGfn < 0 || endGfn < firstGfn) {
      throw new RangeError(`guest frame range [${firstGfn}, ${endGfn}) is not a range of frames`);
    }
    this.next = firstGfn;
  }

  /** Frames that can still be allocated. */
  get available(): number {
    return this.endGfn - this.next + this.freeList.length;
  }

  /** A free frame, or -1 when there is none. */
  alloc(): number {
    let gfn: number;
    if (this.freeList.length > 0) gfn = this.freeList.pop()!;
    else if (this.next < this.endGfn) gfn = this.next++;
    else return -1;
    this.allocated++;
    return gfn;
  }

  /** Gives back a frame obtained from alloc(). */
  free(gfn: number): void {
    if (!(gfn >= this.firstGfn && gfn < this.next) || this.freeList.includes(gfn)) {
      throw new RangeError(`guest frame ${gfn} was not allocated here`);
    }
    this.freeList.push(gfn);
    this.allocated--;
  }
}
