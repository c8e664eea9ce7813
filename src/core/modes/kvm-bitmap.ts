/**
 * kvm-bitmap: KVM's dirty logging with a per-memslot bitmap, on EPT write
 * protection (kvm-tdp-mmu.ts), as a comparison point for Xen's trie. One
 * memslot covers guest memory; KVM_MEM_LOG_DIRTY_PAGES is set on it.
 *
 * ```
 *   enable   allocate 2 × bitmap (log + GET buffer, kvm_create_dirty_bitmap);
 *            classic / manual: write-protect every present SPTE, one TLB flush;
 *            INITIALLY_SET: every bit set, nothing write-protected
 *   fault    set_bit_le(gfn), SPTE writable, retry
 *   harvest  classic: KVM_GET_DIRTY_LOG = read-and-reset, re-protect per 64-page word
 *            manual:  KVM_GET_DIRTY_LOG (copy only), then KVM_CLEAR_DIRTY_LOG for every
 *                     `kvmClearChunkPages` chunk (64 by default: KVM's granularity) holding
 *                     a set bit, with GET's bits as the mask; chunks with none get no ioctl
 *   peek     the bitmap copied, nothing reset (manual: exactly GET; classic: no KVM op does
 *            this, it is a model-only read)
 *   disable  clear KVM_MEM_LOG_DIRTY_PAGES: the bitmap is freed; protected SPTEs are
 *            made writable on their next write, unlogged
 * ```
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
  /** kvm_second_dirty_bitmap: where GET copies the log (null while logging is off). */
  private second: Uint32Array | null = null;
  /** One CLEAR's mask (reused). */
  private readonly chunkMask: Uint32Array;

  constructor(domain: Domain, opts: ModeOptions = {}) {
    super(domain, 'kvm-bitmap');
    this.manualProtect = opts.kvmManualProtect ?? false;
    this.initiallySet = opts.kvmInitiallySet ?? false;
    if (this.initiallySet && !this.manualProtect) {
      throw new DirtyModeError('kvm-bitmap: kvmInitiallySet (KVM_DIRTY_LOG_INITIALLY_SET) needs kvmManualProtect (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)');
    }
    const chunk = opts.kvmClearChunkPages ?? KVM_CLEAR_LOG_ALIGN_PAGES;
    if (!Number.isInteger(chunk) || chunk <= 0 || chunk % KVM_CLEAR_LOG_ALIGN_PAGES !== 0) {
      throw new DirtyModeError(`kvm-bitmap: kvmClearChunkPages ${chunk} must be a positive multiple of ${KVM_CLEAR_LOG_ALIGN_PAGES}`);
    }
    this.clearChunkPages = chunk;
    this.chunkMask = new Uint32Array(chunk / 32);
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
    this.log.enableLogging(); // write-protects the slot unless INITIALLY_SET
    this.second = new Uint32Array(this.log.bitmapBytes / 4);
    this.logging = true;
    if (!this.initiallySet) {
      this.armNewFrames();
      this.flushTlbs(KVM_LOG_SLOT);
    }
  }

  peek(bitmap: Uint32Array | null): HarvestResult {
    this.requireLogging('peek');
    this.checkBitmap('peek', bitmap);
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
    if (this.manualProtect) this.clearAll(second);
    if (bitmap !== null) this.copyOut(second, bitmap);
    return { dirtyCount: got, faultCount: 0 };
  }

  disable(): void {
    this.requireLogging('disable');
    this.controlCycles += this.domain.costs.kvmIoctl;
    this.log.disableLogging();
    this.second = null;
    this.logging = false;
    this.disarmNewFrames();
  }

  /** kvm_create_dirty_bitmap allocates twice the bitmap: the log and GET's buffer. */
  trackingBytes(): number {
    return this.logging ? 2 * this.log.bitmapBytes : 0;
  }

  /**
   * KVM_CLEAR_DIRTY_LOG over every chunk holding a bit GET returned, with those
   * bits as the mask (what QEMU does with the bitmap it fetched).
   */
  private clearAll(got: Uint32Array): void {
    const costs = this.domain.costs;
    const chunk = this.clearChunkPages;
    const mask = this.chunkMask;
    for (let first = 0; first < this.npages; first += chunk) {
      const pages = Math.min(chunk, this.npages - first);
      const nWords = Math.ceil(pages / 64) * 2;
      const w0 = first / 32;
      let any = 0;
      for (let k = 0; k < nWords; k++) {
        const m = got[w0 + k]!;
        mask[k] = m;
        any |= m;
      }
      if (any === 0) continue;
      this.kvmStats.pagesCleared += this.ioctl('KVM_CLEAR_DIRTY_LOG', this.log.clearDirtyLog(first, pages, mask));
      this.kvmStats.clearIoctls++;
      this.controlCycles += costs.kvmIoctl + (nWords / 2) * costs.kvmBitmapPerWord;
    }
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
