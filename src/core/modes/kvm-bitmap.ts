/**
 * kvm-bitmap: KVM's dirty logging with a per-memslot bitmap, on the TDP MMU
 * (kvm-tdp-mmu.ts: PML by default, or write protection), with QEMU as the VMM,
 * as a comparison point for Xen's trie. One memslot covers guest memory;
 * KVM_MEM_LOG_DIRTY_PAGES is set on it.
 *
 * ```
 *   enable   allocate 2 × bitmap (log + GET buffer, kvm_create_dirty_bitmap);
 *            classic / manual: PML on and every 4K SPTE's D cleared (or, without PML,
 *            every SPTE write-protected), one TLB flush; INITIALLY_SET: every bit set,
 *            nothing protected
 *   write    PML: the CPU logs the gpa, flushed into the bitmap at the vCPU's next exit;
 *            fault path (no PML, populate, huge SPTE): set_bit_le(gfn), SPTE writable, retry
 *   harvest  classic: KVM_GET_DIRTY_LOG = kick (PML) + read-and-reset, re-protect per 64-page word
 *            manual:  KVM_GET_DIRTY_LOG (kick, copy only), then KVM_CLEAR_DIRTY_LOG per
 *                     QEMU chunk (below), each with its own kick
 *   peek     kick, then the bitmap copied, nothing reset (manual: exactly GET; classic:
 *            no KVM op does this, it is a model-only read)
 *   disable  clear KVM_MEM_LOG_DIRTY_PAGES: PML off, the bitmap is freed; protected SPTEs
 *            are made writable on their next write, unlogged
 * ```
 *
 * Manual protect, as QEMU drives it (migration/ram.c, system/memory.c,
 * accel/kvm/kvm-all.c): after the sync (GET) every clear chunk of
 * 2^clear_bmap_shift pages is marked in QEMU's clear_bmap
 * (cpu_physical_memory_sync_dirty_bitmap → clear_bmap_set); nothing is
 * cleared yet. When the migration thread is about to send a page whose chunk
 * is marked, it clears the chunk first (migration_bitmap_clear_dirty →
 * migration_clear_memory_region_dirty_bitmap → memory_region_clear_dirty_bitmap
 * → kvm_log_clear → kvm_physical_log_clear → kvm_log_clear_one_slot): one
 * KVM_CLEAR_DIRTY_LOG over the chunk (clipped to the slot's end), whose mask
 * is the bits the last GET returned there (QEMU's cached slot bitmap), which
 * are then forgotten. Only chunks holding a page to send are cleared, so here
 * only chunks where GET returned a bit. The chunk is `kvmClearChunkPages`,
 * default 2^18 pages = 1 GiB (CLEAR_BITMAP_SHIFT_DEFAULT 18; QEMU's
 * x-clear-bitmap-shift takes 6 to 31). KVM's own rule stays: first_page
 * 64-aligned, length a multiple of 64 unless it reaches the slot's end, and
 * KVM re-protects 64 pages (one mask word) at a time.
 *
 * When the "send" happens: a migration sender calls deferClearsToSender()
 * and then beforeSend(gfn) before each page it reads — the lazy CLEAR just
 * before the chunk's first page goes, as in QEMU. A trace replay (trace,
 * compare, the contract suite) has no sender: its harvest is the sync plus an
 * instantaneous send of every page the round returned, so every marked chunk
 * is cleared at harvest, in ascending chunk order — the same sequence of
 * ioctls QEMU issues for that round, with no guest time between them (the
 * next window starts after the last send).
 *
 * `dirtyCount` is the number of distinct pages GET returned. With
 * INITIALLY_SET (KVM_DIRTY_LOG_INITIALLY_SET) the first GET returns every page
 * of the slot, written or not — KVM's documented semantics (api.rst,
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: with INITIALLY_SET the bitmap starts all
 * set and pages are write-protected only as KVM_CLEAR_DIRTY_LOG clears them):
 * `reportsAllOnFirstHarvest` says so to the contract suite. Write protection of a page starts with the CLEAR that clears
 * its bit; frames populated later come in protected once the first CLEAR ran.
 *
 * Units: pages relative to the slot = gfns (base gfn 0); bitmap words u32.
 */
import type { Domain } from '../domain/domain.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import { popcount32 } from '../logdirty/dirty-trie.ts';
import { KvmDirtyBitmap, type KvmDirtyLogResult } from '../logdirty/kvm-dirty-bitmap.ts';
import type { HarvestResult, ModeFactory, ModeOptions } from './dirty-mode.ts';
import { DirtyModeError } from './hap-log-dirty.ts';
import { KVM_LOG_SLOT, KvmTdpMode } from './kvm-tdp-mmu.ts';

/** KVM_CLEAR_DIRTY_LOG's alignment: first_page and num_pages are multiples of 64 (one bitmap long). */
export const KVM_CLEAR_LOG_ALIGN_PAGES = 64;
/** QEMU's CLEAR_BITMAP_SHIFT_MIN / _MAX / _DEFAULT (include/exec/ramblock.h): log2 of the clear chunk in pages. */
export const QEMU_CLEAR_BITMAP_SHIFT_MIN = 6;
export const QEMU_CLEAR_BITMAP_SHIFT_MAX = 31;
export const QEMU_CLEAR_BITMAP_SHIFT_DEFAULT = 18;
/** Pages per KVM_CLEAR_DIRTY_LOG when none is given: 2^18 = 1 GiB. */
export const KVM_CLEAR_CHUNK_DEFAULT_PAGES = 2 ** QEMU_CLEAR_BITMAP_SHIFT_DEFAULT;

export interface KvmBitmapStats {
  getIoctls: number;
  clearIoctls: number;
  /** Pages KVM_CLEAR_DIRTY_LOG cleared (and re-protected). */
  pagesCleared: number;
}

export class KvmBitmapMode extends KvmTdpMode {
  /** The memslot's dirty bitmap (KVM's data structure; logdirty/kvm-dirty-bitmap.ts). */
  readonly log: KvmDirtyBitmap;
  readonly manualProtect: boolean;
  readonly initiallySet: boolean;
  /** Pages per KVM_CLEAR_DIRTY_LOG in manual-protect mode. */
  readonly clearChunkPages: number;
  /** INITIALLY_SET: the first harvest after enable reports every page of the slot. */
  readonly reportsAllOnFirstHarvest: boolean;
  readonly kvmStats: KvmBitmapStats = { getIoctls: 0, clearIoctls: 0, pagesCleared: 0 };
  /**
   * Where GET copies the log: QEMU's KVMSlot dirty_bmap. In manual protect it
   * keeps, until the next GET, the returned bits not yet cleared (null while
   * logging is off). kvm_create_dirty_bitmap's second half, GET's bounce
   * buffer inside KVM, is not modelled apart: the same size, counted in trackingBytes.
   */
  private second: Uint32Array | null = null;
  /** QEMU's clear_bmap: chunk i awaits its CLEAR (manual protect only). */
  private readonly clearPending: Uint8Array;
  /** A sender drives the CLEARs (deferClearsToSender). */
  private clearsBeforeSend = false;
  /** One CLEAR's mask (reused; at most one chunk, clipped to the slot). */
  private readonly chunkMask: Uint32Array;

  constructor(domain: Domain, opts: ModeOptions = {}) {
    super(domain, 'kvm-bitmap', opts);
    this.manualProtect = opts.kvmManualProtect ?? false;
    this.initiallySet = opts.kvmInitiallySet ?? false;
    if (this.initiallySet && !this.manualProtect) {
      throw new DirtyModeError('kvm-bitmap: kvmInitiallySet (KVM_DIRTY_LOG_INITIALLY_SET) needs kvmManualProtect (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)');
    }
    const chunk = opts.kvmClearChunkPages ?? KVM_CLEAR_CHUNK_DEFAULT_PAGES;
    if (!Number.isInteger(chunk) || chunk < 2 ** QEMU_CLEAR_BITMAP_SHIFT_MIN || chunk > 2 ** QEMU_CLEAR_BITMAP_SHIFT_MAX || (chunk & (chunk - 1)) !== 0) {
      throw new DirtyModeError(
        `kvm-bitmap: kvmClearChunkPages ${chunk} must be a power of two from 2^${QEMU_CLEAR_BITMAP_SHIFT_MIN} to 2^${QEMU_CLEAR_BITMAP_SHIFT_MAX} (QEMU's clear_bmap_shift)`,
      );
    }
    this.clearChunkPages = chunk;
    // A chunk past the slot's end is clipped (kvm_log_clear_one_slot), so no mask is longer than the slot.
    this.chunkMask = new Uint32Array(Math.ceil(Math.min(chunk, this.npages) / 64) * 2);
    this.clearPending = new Uint8Array(this.manualProtect ? Math.ceil(this.npages / chunk) : 0);
    this.reportsAllOnFirstHarvest = this.initiallySet;
    this.log = new KvmDirtyBitmap(
      { slot: KVM_LOG_SLOT, baseGfn: 0, npages: this.npages, manualProtect: this.manualProtect, initiallySet: this.initiallySet },
      this,
    );
  }

  // ---------------------------------------------------------------- exit side

  protected logWrite(vcpu: Vcpu, gfn: number): void {
    this.log.markDirty(gfn);
    vcpu.chargeCycles(vcpu.domain.costs.kvmBitmapMark);
  }

  // ---------------------------------------------------------------- toolstack side

  enable(): void {
    if (this.logging) throw new DirtyModeError(`${this.name}: dirty logging is already enabled on domain ${this.domain.id}`);
    const costs = this.domain.costs;
    this.controlCycles += costs.kvmIoctl; // KVM_SET_USER_MEMORY_REGION with KVM_MEM_LOG_DIRTY_PAGES
    this.startCpuDirtyLogging();
    this.log.enableLogging(); // clears D / write-protects the slot unless INITIALLY_SET
    this.second = new Uint32Array(this.log.bitmapBytes / 4);
    this.clearPending.fill(0);
    this.logging = true;
    if (!this.initiallySet) {
      this.armNewFrames();
      this.flushTlbs(KVM_LOG_SLOT);
    }
  }

  peek(bitmap: Uint32Array | null): HarvestResult {
    this.requireLogging('peek');
    this.checkBitmap('peek', bitmap);
    this.syncDirtyLog(KVM_LOG_SLOT); // manual: this is GET, which syncs first; classic: so the copy is complete
    const words = this.log.words!;
    this.controlCycles += this.domain.costs.kvmIoctl + (words.length / 2) * this.domain.costs.kvmBitmapPerWord;
    let pages = 0;
    for (let i = 0; i < words.length; i++) if (words[i] !== 0) pages += popcount32(words[i]!);
    if (bitmap !== null) this.copyOut(words, bitmap);
    return { dirtyCount: pages, faultCount: 0 };
  }

  harvest(bitmap: Uint32Array | null): HarvestResult {
    this.requireLogging('harvest');
    this.checkBitmap('harvest', bitmap);
    const second = this.second!;
    const costs = this.domain.costs;
    const got = this.ioctl('KVM_GET_DIRTY_LOG', this.log.getDirtyLog(second));
    this.kvmStats.getIoctls++;
    this.controlCycles += costs.kvmIoctl + (second.length / 2) * costs.kvmBitmapPerWord;
    if (bitmap !== null) this.copyOut(second, bitmap);
    if (this.manualProtect) {
      this.markChunks(second);
      if (!this.clearsBeforeSend) this.clearMarkedChunks();
    }
    return { dirtyCount: got, faultCount: 0 };
  }

  /** A migration sender will call beforeSend(gfn) before each page it sends: CLEARs wait for it (header). */
  deferClearsToSender(): void {
    if (this.manualProtect) this.clearsBeforeSend = true;
  }

  /** migration_bitmap_clear_dirty's first step: the chunk holding gfn is cleared before any of its pages is sent. */
  beforeSend(gfn: number): void {
    if (!this.clearsBeforeSend || !this.logging || gfn >= this.npages) return;
    const c = Math.floor(gfn / this.clearChunkPages);
    if (this.clearPending[c] === 1) this.clearChunk(c);
  }

  disable(): void {
    this.requireLogging('disable');
    this.controlCycles += this.domain.costs.kvmIoctl;
    this.log.disableLogging();
    this.second = null;
    this.clearPending.fill(0);
    this.logging = false;
    this.stopCpuDirtyLogging();
    this.disarmNewFrames();
  }

  /** kvm_create_dirty_bitmap allocates twice the bitmap (the log and GET's buffer); plus the vCPUs' PML pages. */
  trackingBytes(): number {
    return (this.logging ? 2 * this.log.bitmapBytes : 0) + this.pmlBytes();
  }

  /**
   * After a GET: every chunk holding a returned bit is marked for clearing.
   * Bits of an earlier GET not cleared yet are still in KVM's log, so GET
   * returned them again.
   */
  private markChunks(got: Uint32Array): void {
    const wordsPerChunk = this.clearChunkPages / 32;
    const pending = this.clearPending;
    pending.fill(0);
    for (let w = 0; w < got.length; w++) if (got[w] !== 0) pending[Math.floor(w / wordsPerChunk)] = 1;
  }

  /** Every marked chunk, in ascending order (a trace replay's instantaneous send). */
  private clearMarkedChunks(): void {
    const pending = this.clearPending;
    for (let c = 0; c < pending.length; c++) if (pending[c] === 1) this.clearChunk(c);
  }

  /**
   * kvm_log_clear_one_slot for chunk c: KVM_CLEAR_DIRTY_LOG over the chunk,
   * clipped to the slot's end, with QEMU's cached bits as the mask; those bits
   * are then forgotten. Issued even when the chunk's mask is empty (QEMU does).
   */
  private clearChunk(c: number): void {
    this.clearPending[c] = 0;
    const costs = this.domain.costs;
    const cached = this.second!;
    const mask = this.chunkMask;
    const first = c * this.clearChunkPages;
    const pages = Math.min(this.clearChunkPages, this.npages - first);
    const nWords = Math.ceil(pages / 64) * 2;
    const w0 = first / 32;
    for (let k = 0; k < nWords; k++) {
      mask[k] = cached[w0 + k]!;
      cached[w0 + k] = 0;
    }
    this.kvmStats.pagesCleared += this.ioctl('KVM_CLEAR_DIRTY_LOG', this.log.clearDirtyLog(first, pages, mask));
    this.kvmStats.clearIoctls++;
    this.controlCycles += costs.kvmIoctl + (nWords / 2) * costs.kvmBitmapPerWord;
    // INITIALLY_SET: write protection starts with the first CLEAR; frames populated from now on come in protected.
    this.armNewFrames();
  }

  /** The slot bitmap's first ceil(npages / 32) words into the caller's bitmap. */
  private copyOut(words: Uint32Array, bitmap: Uint32Array): void {
    const n = Math.ceil(this.npages / 32);
    for (let i = 0; i < n; i++) bitmap[i] = words[i]!;
  }

  private ioctl(name: string, r: KvmDirtyLogResult): number {
    if (!r.ok) throw new DirtyModeError(`${this.name}: ${name} on domain ${this.domain.id} failed (${r.errno}): ${r.message}`);
    return r.pages;
  }
}

export const createKvmBitmap: ModeFactory = (domain, opts) => {
  const mode = new KvmBitmapMode(domain, opts);
  domain.setPagingMode(mode);
  return mode;
};
