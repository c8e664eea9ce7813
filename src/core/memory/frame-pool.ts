/**
 * Host frame pool: the machine memory that backs guests and holds p2m tables.
 *
 * Frames (MFNs) live in fixed-size chunks, allocated only when the pool
 * grows, so a sparse guest costs only the frames it touches. A chunk is a
 * WebAssembly memory where available (pagehash/page-hash.ts `allocHashable`),
 * so migration hashes frames where they sit instead of copying them out. Frame
 * `mfn` is in chunk `mfn >>> CHUNK_SHIFT` at byte offset
 * `(mfn & CHUNK_MASK) << PAGE_SHIFT`. Each chunk is viewed as bytes and as
 * u32 words (64-bit entries are little-endian u32 pairs: lo at 2i, hi at 2i+1).
 *
 * Invariants: a freed frame is zeroed before reuse; mfn 0 is never handed out
 * (so 0 can mean "none" in tables that want it); `allocatedFrames` counts live
 * frames.
 */
import { allocHashable } from '../pagehash/page-hash.ts';
import { PAGE_SHIFT, PAGE_SIZE, WORDS_PER_PAGE } from '../units.ts';

/** 4096 frames (16 MiB) per chunk. */
export const CHUNK_SHIFT = 12;
export const CHUNK_FRAMES = 1 << CHUNK_SHIFT;
export const CHUNK_MASK = CHUNK_FRAMES - 1;

export class OutOfFramesError extends Error {
  constructor(readonly limitFrames: number) {
    super(`host frame pool exhausted (${limitFrames} frames)`);
  }
}

export class FramePool {
  /** Byte view of each chunk. */
  readonly bytes: Uint8Array[] = [];
  /** u32 view of each chunk (same memory). */
  readonly words: Uint32Array[] = [];
  private nextFresh = 1;
  private freeList: number[] = [];
  /** Live (allocated, not freed) frames. */
  allocatedFrames = 0;

  /** @param limitFrames hard cap on frames, to model a host running out of memory. */
  constructor(readonly limitFrames = 1 << 30) {}

  /** Allocates one zeroed frame and returns its mfn. Throws OutOfFramesError at the cap. */
  alloc(): number {
    let mfn: number;
    if (this.freeList.length > 0) {
      mfn = this.freeList.pop() as number;
    } else {
      if (this.nextFresh >= this.limitFrames) throw new OutOfFramesError(this.limitFrames);
      mfn = this.nextFresh++;
      const chunk = mfn >>> CHUNK_SHIFT;
      if (chunk >= this.bytes.length) {
        const bytes = allocHashable(CHUNK_FRAMES * PAGE_SIZE, true);
        this.bytes.push(bytes);
        this.words.push(new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2));
      }
    }
    this.allocatedFrames++;
    return mfn;
  }

  /** Returns a frame to the pool (zeroed now, so alloc() hands out clean frames). */
  free(mfn: number): void {
    this.bytesOf(mfn).fill(0, this.byteOffset(mfn), this.byteOffset(mfn) + PAGE_SIZE);
    this.freeList.push(mfn);
    this.allocatedFrames--;
  }

  /** The chunk's byte array holding `mfn`. */
  bytesOf(mfn: number): Uint8Array {
    return this.bytes[mfn >>> CHUNK_SHIFT] as Uint8Array;
  }

  /** The chunk's u32 array holding `mfn`. */
  wordsOf(mfn: number): Uint32Array {
    return this.words[mfn >>> CHUNK_SHIFT] as Uint32Array;
  }

  /** Byte offset of `mfn` inside its chunk. */
  byteOffset(mfn: number): number {
    return (mfn & CHUNK_MASK) << PAGE_SHIFT;
  }

  /** Word offset of `mfn` inside its chunk (entry i of a table frame is at wordOffset + 2i). */
  wordOffset(mfn: number): number {
    return (mfn & CHUNK_MASK) * WORDS_PER_PAGE;
  }

  /** Bytes of host memory reserved by the pool (chunks allocated). */
  get reservedBytes(): number {
    return this.bytes.length * CHUNK_FRAMES * PAGE_SIZE;
  }
}
