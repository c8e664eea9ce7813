/**
 * MigratableGuest: the narrow waist between the migration sender and the
 * rest of the engine — exactly what the sender needs, nothing else. The CLI
 * implements it over a real domain (p2m + log-dirty mode + workload); tests
 * use testing/fake-guest.ts.
 *
 * Semantics follow Xen's toolstack operations (xen-semantics.md §1, §8):
 *   - `enableLogDirty` is ENABLE_LOGDIRTY; it throws LogDirtyRefusedError
 *     when refused (e.g. already on: -EINVAL). The sender then does what
 *     xg_sr_save.c does: OFF, then ENABLE again.
 *   - `clean` is CLEAN: fills `bitmap` with the pages dirtied since the last
 *     CLEAN (bit `gfn & 31` of word `gfn >>> 5`, ceil(pageCount/32) words),
 *     resets the log, and returns Xen's stats.dirty_count (distinct pages newly
 *     dirtied), which the stop policies use — not a popcount. `final`
 *     marks the saver's last CLEAN (Xen: XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL).
 *   - `peek` is PEEK: the same bitmap, nothing reset (the legacy saver's
 *     `to_skip`).
 *   - `pause`/`unpause` are counted by the implementation like domain_pause.
 *   - `runGuestFor` lets the guest's workload run for `virtualNs` nanoseconds
 *     of its own time; a paused guest does nothing.
 * Units: gfn = 4 KiB guest frame number in [0, pageCount).
 */
export interface MigratableGuest {
  readonly pageCount: number;
  readonly vcpuCount: number;
  /** Copies frame `gfn` (4096 bytes) to `dst[dstOffset]`; false (and zeros written) ⇒ unpopulated. */
  readPage(gfn: number, dst: Uint8Array, dstOffset: number): boolean;
  /**
   * Optional: points `view` at frame `gfn`'s bytes where they sit, without a
   * copy; false (view untouched) ⇒ unpopulated. The sender hashes pages
   * there and sends them from there (zero-copy). The guest's memory changes
   * only inside `runGuestFor`, which the sender calls only once the link
   * has let go of every page it sent in place, so the bytes hashed are the
   * bytes that leave. Without it, every page is copied first (readPage).
   */
  viewPage?(gfn: number, view: PageView): boolean;
  /**
   * Optional: called by the sender just before it reads `gfn` to send it.
   * A guest whose dirty log is cleared lazily, chunk by chunk, as QEMU does
   * for KVM's manual-protect bitmap (migration_bitmap_clear_dirty), clears
   * gfn's chunk here, so that writes from now on are logged for the next pass.
   */
  beforeSend?(gfn: number): void;
  enableLogDirty(): void;
  clean(bitmap: Uint32Array, final?: boolean): { dirtyCount: number };
  peek(bitmap: Uint32Array): { dirtyCount: number };
  disableLogDirty(): void;
  pause(): void;
  unpause(): void;
  /** May return a promise (a guest driven by a trace read from a file); the sender awaits it. */
  runGuestFor(virtualNs: number): void | Promise<void>;
  /** The vCPUs' architectural state, serialized (opaque to the sender). */
  vcpuState(): Uint8Array;
}

/** Where a page's 4096 bytes sit: `bytes[offset …]`. Reused by the caller. */
export interface PageView {
  bytes: Uint8Array;
  offset: number;
}

/** A toolstack log-dirty operation the hypervisor refused (Xen: -EINVAL, -EBUSY, -ENOMEM). */
export class LogDirtyRefusedError extends Error {
  constructor(
    readonly op: 'enable' | 'clean' | 'disable',
    readonly errno: 'EINVAL' | 'EBUSY' | 'ENOMEM',
    why: string,
  ) {
    super(`log-dirty ${op} refused (${errno}): ${why}`);
    this.name = 'LogDirtyRefusedError';
  }
}

/** Words of a dirty bitmap for `pageCount` pages. */
export function bitmapWords(pageCount: number): number {
  return Math.ceil(pageCount / 32);
}
