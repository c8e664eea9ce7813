/**
 * KVM's per-memslot dirty bitmap, as a comparison point for Xen's trie
 * (Linux `virt/kvm/kvm_main.c`: `mark_page_dirty_in_slot`,
 * `kvm_get_dirty_log_protect`, `kvm_clear_dirty_log_protect`;
 * `Documentation/virt/kvm/api.rst` KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG,
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2).
 *
 * One flat bitmap per memslot, one bit per page, in 64-bit words (here u32
 * pairs, little-endian: the same bytes as KVM's `unsigned long` bitmap).
 *
 * - Classic mode: KVM_GET_DIRTY_LOG is read-and-reset. Each non-zero 64-bit
 *   word is taken (`xchg` with 0), copied out, and its pages re-protected
 *   (one protectMasked call per word), then one TLB flush.
 * - Both ioctls first call `kvm_arch_sync_dirty_log` (protector.syncDirtyLog):
 *   with PML, the vCPUs are kicked so their PML buffers land in the log.
 * - Manual-protect mode (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): GET copies the
 *   bitmap and neither clears nor re-protects; KVM_CLEAR_DIRTY_LOG takes a
 *   caller bitmap over [first_page, first_page + num_pages) — first_page
 *   64-aligned, num_pages a multiple of 64 unless it reaches the slot's end —
 *   and clears/re-protects only the bits set both there and in the log.
 * - KVM_DIRTY_LOG_INITIALLY_SET (manual mode only): logging starts with
 *   every bit set and nothing write-protected; a page is write-protected
 *   only when a CLEAR clears its bit (lazily, chunk by chunk).
 *
 * Units: pages relative to the memslot (`relGfn = gfn - baseGfn`),
 * npages ≤ 2^31. Marking sets a bit and does nothing else (KVM has no 0→1
 * count); counting is done by whoever reads the log.
 */
import type { KvmWriteProtector } from './kvm-write-protect.ts';
import { popcount32 } from './dirty-trie.ts';

/** Largest memslot modelled (KVM caps npages at KVM_MEM_MAX_NR_PAGES). */
export const KVM_MAX_SLOT_PAGES = 2 ** 31;

export interface KvmMemslotConfig {
  /** `as_id << 16 | id`. */
  readonly slot: number;
  readonly baseGfn: number;
  readonly npages: number;
  /** KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE. */
  readonly manualProtect: boolean;
  /** KVM_DIRTY_LOG_INITIALLY_SET; requires manualProtect. */
  readonly initiallySet?: boolean;
}

export type KvmDirtyLogErrno = 'EINVAL' | 'EFAULT' | 'ENOENT';

export type KvmDirtyLogResult =
  | { readonly ok: true; /** Pages set in the returned (GET) or cleared (CLEAR) bitmap. */ readonly pages: number }
  | { readonly ok: false; readonly errno: KvmDirtyLogErrno; readonly message: string };

export class KvmDirtyBitmap {
  readonly slot: number;
  readonly baseGfn: number;
  readonly npages: number;
  readonly manualProtect: boolean;
  readonly initiallySet: boolean;
  /** The dirty bitmap (`memslot->dirty_bitmap`); null while logging is off. */
  words: Uint32Array | null = null;
  /** Bytes of a bitmap for the whole slot (`kvm_dirty_bitmap_bytes`: npages rounded up to 64 bits). */
  readonly bitmapBytes: number;

  constructor(
    config: KvmMemslotConfig,
    private readonly protector: KvmWriteProtector,
  ) {
    if (!Number.isInteger(config.npages) || config.npages <= 0 || config.npages > KVM_MAX_SLOT_PAGES) {
      throw new RangeError(`memslot ${config.slot}: npages ${config.npages} must be an integer in [1, 2^31]`);
    }
    if (config.initiallySet && !config.manualProtect) {
      throw new RangeError(`memslot ${config.slot}: KVM_DIRTY_LOG_INITIALLY_SET needs KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE`);
    }
    this.slot = config.slot;
    this.baseGfn = config.baseGfn;
    this.npages = config.npages;
    this.manualProtect = config.manualProtect;
    this.initiallySet = config.initiallySet ?? false;
    this.bitmapBytes = Math.ceil(config.npages / 64) * 8;
  }

  /**
   * Sets KVM_MEM_LOG_DIRTY_PAGES on the slot: allocates the bitmap (all set
   * with INITIALLY_SET, bits past npages stay 0) and, without
   * INITIALLY_SET, write-protects the whole slot.
   */
  enableLogging(): void {
    if (this.words !== null) return;
    const words = new Uint32Array(this.bitmapBytes / 4);
    if (this.initiallySet) {
      const full = this.npages >>> 5;
      words.fill(0xffffffff, 0, full);
      if ((this.npages & 31) !== 0) words[full] = (1 << (this.npages & 31)) - 1;
    } else {
      this.protector.protectSlot(this.slot);
    }
    this.words = words;
  }

  /** Clears KVM_MEM_LOG_DIRTY_PAGES: the bitmap is dropped. */
  disableLogging(): void {
    this.words = null;
  }

  /** `mark_page_dirty_in_slot` (bitmap flavour): `set_bit_le(relGfn)`. */
  markDirty(relGfn: number): void {
    const words = this.words;
    if (words === null || relGfn >= this.npages) return;
    words[relGfn >>> 5] = (words[relGfn >>> 5] as number) | (1 << (relGfn & 31));
  }

  /** Whether `relGfn`'s bit is set. */
  isDirty(relGfn: number): boolean {
    const words = this.words;
    return words !== null && relGfn < this.npages && (((words[relGfn >>> 5] as number) >>> (relGfn & 31)) & 1) === 1;
  }

  /**
   * KVM_GET_DIRTY_LOG into `out` (at least `bitmapBytes`). Classic mode:
   * read-and-reset with re-protection; manual mode: a plain copy.
   */
  getDirtyLog(out: Uint8Array | Uint32Array): KvmDirtyLogResult {
    const words = this.words;
    if (words === null) return this.noLog('KVM_GET_DIRTY_LOG');
    if (out.byteLength < this.bitmapBytes) {
      return { ok: false, errno: 'EFAULT', message: `KVM_GET_DIRTY_LOG on slot ${this.slot}: buffer holds ${out.byteLength} bytes, the slot needs ${this.bitmapBytes}` };
    }
    this.protector.syncDirtyLog?.(this.slot);
    const dst = wordsOf(out, words.length);
    let pages = 0;
    if (this.manualProtect) {
      dst.set(words);
      for (let i = 0; i < words.length; i++) if (words[i] !== 0) pages += popcount32(words[i] as number);
      return { ok: true, pages };
    }
    let flush = false;
    for (let i = 0; i < words.length; i += 2) {
      const lo = words[i] as number;
      const hi = words[i + 1] as number;
      dst[i] = lo;
      dst[i + 1] = hi;
      if ((lo | hi) === 0) continue;
      flush = true;
      words[i] = 0;
      words[i + 1] = 0;
      pages += popcount32(lo) + popcount32(hi);
      this.protector.protectMasked(this.slot, i * 32, lo, hi);
    }
    if (flush) this.protector.flushTlbs(this.slot);
    return { ok: true, pages };
  }

  /**
   * KVM_CLEAR_DIRTY_LOG: for pages [firstPage, firstPage + numPages), clear
   * the bits set in `mask` (bit i = page firstPage + i) that are set in the
   * log, and re-protect exactly those pages, 64 at a time.
   */
  clearDirtyLog(firstPage: number, numPages: number, mask: Uint8Array | Uint32Array): KvmDirtyLogResult {
    const words = this.words;
    if (words === null) return this.noLog('KVM_CLEAR_DIRTY_LOG');
    if (firstPage % 64 !== 0) {
      return { ok: false, errno: 'EINVAL', message: `KVM_CLEAR_DIRTY_LOG on slot ${this.slot}: first_page ${firstPage} is not a multiple of 64` };
    }
    if (
      firstPage > this.npages ||
      numPages > this.npages - firstPage ||
      (numPages < this.npages - firstPage && numPages % 64 !== 0)
    ) {
      return {
        ok: false,
        errno: 'EINVAL',
        message:
          `KVM_CLEAR_DIRTY_LOG on slot ${this.slot}: pages [${firstPage}, ${firstPage + numPages}) must lie in [0, ${this.npages}) ` +
          'and num_pages must be a multiple of 64 unless it reaches the end of the slot',
      };
    }
    const nWords64 = Math.ceil(numPages / 64);
    if (mask.byteLength < nWords64 * 8) {
      return { ok: false, errno: 'EFAULT', message: `KVM_CLEAR_DIRTY_LOG on slot ${this.slot}: mask holds ${mask.byteLength} bytes, ${numPages} pages need ${nWords64 * 8}` };
    }
    this.protector.syncDirtyLog?.(this.slot);
    const src = wordsOf(mask, nWords64 * 2);
    let flush = false;
    let pages = 0;
    for (let k = 0, i = firstPage / 32, offset = firstPage; k < nWords64 * 2; k += 2, i += 2, offset += 64) {
      const mLo = src[k] as number;
      const mHi = src[k + 1] as number;
      if ((mLo | mHi) === 0) continue;
      // atomic_long_fetch_andnot: the bits really cleared are mask & old.
      const lo = (mLo & (words[i] as number)) >>> 0;
      const hi = (mHi & (words[i + 1] as number)) >>> 0;
      words[i] = (words[i] as number) & ~mLo;
      words[i + 1] = (words[i + 1] as number) & ~mHi;
      if ((lo | hi) === 0) continue;
      flush = true;
      pages += popcount32(lo) + popcount32(hi);
      this.protector.protectMasked(this.slot, offset, lo, hi);
    }
    if (flush) this.protector.flushTlbs(this.slot);
    return { ok: true, pages };
  }

  private noLog(ioctl: string): KvmDirtyLogResult {
    return { ok: false, errno: 'ENOENT', message: `${ioctl} on slot ${this.slot}: dirty logging is not enabled on this memslot (enableLogging first)` };
  }
}

/** A u32 view of `buf`'s first `count` words (buffers here are always 8-byte multiples). */
function wordsOf(buf: Uint8Array | Uint32Array, count: number): Uint32Array {
  if (buf instanceof Uint32Array) return buf;
  if (buf.byteOffset % 4 !== 0) throw new RangeError('dirty bitmap buffer must be 4-byte aligned');
  return new Uint32Array(buf.buffer, buf.byteOffset, count);
}
