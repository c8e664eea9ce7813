/**
 * Where the log-dirty trie gets its 4 KiB pages: Xen takes them from the
 * domain's paging pool (`d->arch.paging.alloc_page`: `hap_alloc_p2m_page` in
 * HAP mode, `shadow_alloc_p2m_page` in shadow mode), and an allocation can
 * fail. The allocator here models that pool's budget and accounting; the
 * page contents themselves are held by the trie (as `map_domain_page` would
 * hand Xen a mapping of the frame).
 *
 * Invariants: `alloc()` returns a page index ≥ 0 or {@link ALLOC_FAILED};
 * every index handed out is given back exactly once through `free()`.
 */
import { OutOfFramesError, type FramePool } from '../memory/frame-pool.ts';

/** Returned by {@link LogDirtyPageAllocator.alloc} when the pool is exhausted. */
export const ALLOC_FAILED = -1;

export interface LogDirtyPageAllocator {
  /** One 4 KiB page: its index (≥ 0), or ALLOC_FAILED when none is left. */
  alloc(): number;
  /** Gives back a page that alloc() handed out. */
  free(page: number): void;
}

/**
 * A pool of at most `limitPages` pages (Infinity: unbounded), with a free
 * list, so tests and benchmarks can model a paging pool that runs dry.
 */
export class BoundedPageAllocator implements LogDirtyPageAllocator {
  private nextFresh = 0;
  private readonly freeList: number[] = [];
  /** Pages handed out and not yet freed. */
  livePages = 0;

  constructor(public limitPages = Infinity) {}

  alloc(): number {
    if (this.livePages >= this.limitPages) return ALLOC_FAILED;
    this.livePages++;
    return this.freeList.length > 0 ? (this.freeList.pop() as number) : this.nextFresh++;
  }

  free(page: number): void {
    this.freeList.push(page);
    this.livePages--;
  }
}

/**
 * Takes trie pages from the host frame pool (so they count against the same
 * memory as p2m tables); pool exhaustion becomes ALLOC_FAILED.
 */
export class FramePoolPageAllocator implements LogDirtyPageAllocator {
  constructor(private readonly pool: FramePool) {}

  alloc(): number {
    try {
      return this.pool.alloc();
    } catch (e) {
      if (e instanceof OutOfFramesError) return ALLOC_FAILED;
      throw e;
    }
  }

  free(page: number): void {
    this.pool.free(page);
  }
}
