/**
 * KVM's per-vCPU dirty ring, as a comparison point for bitmaps (Linux
 * `virt/kvm/dirty_ring.c`, `include/linux/kvm_dirty_ring.h`,
 * `include/uapi/linux/kvm.h` struct kvm_dirty_gfn;
 * `Documentation/virt/kvm/api.rst` KVM_CAP_DIRTY_LOG_RING,
 * KVM_RESET_DIRTY_RINGS).
 *
 * ```
 *  entry (struct kvm_dirty_gfn, 16 bytes) = 4 u32 here:
 *   [0] flags   bit0 DIRTY (set by KVM on push), bit1 RESET (set by userspace on harvest)
 *   [1] slot    as_id << 16 | id
 *   [2] offset  low 32 bits   (page offset in the memslot)
 *   [3] offset  high 32 bits
 *
 *  free-running u32 indices, slot = index & (size - 1):
 *   reset_index ──(harvested, awaiting reset)── fetch_index ──(DIRTY)── dirty_index
 *   used = dirty_index − reset_index
 * ```
 *
 * - push (KVM, on a write fault / PML flush of this vCPU): write slot and
 *   offset, set DIRTY, dirty_index++. Once used ≥ soft_limit the vCPU gets
 *   KVM_REQ_DIRTY_RING_SOFT_FULL and, on its next entry, exits to userspace
 *   with KVM_EXIT_DIRTY_RING_FULL (`dirty_ring_full` here) until a reset
 *   brings `used` back under the limit.
 * - soft_limit = size − reserved, reserved = KVM_DIRTY_RING_RSVD_ENTRIES (64)
 *   + kvm_cpu_dirty_log_size() (the PML buffer, 512 entries on VMX with PML,
 *   0 otherwise): room for the pushes that can still land after the request
 *   is raised — a PML buffer flushed on the way out, and the accesses of an
 *   exit already in flight — so the ring never overflows (hard full is a
 *   KVM WARN).
 * - harvest (userspace, e.g. QEMU's kvm_dirty_ring_reap_one): from its fetch
 *   index, while an entry has DIRTY: collect (slot, offset), set flags to
 *   RESET, fetch index++.
 * - reset (KVM_RESET_DIRTY_RINGS): from reset_index, while an entry has
 *   RESET: clear its flags, reset_index++, and re-protect its page; entries
 *   of the same slot within 64 pages are coalesced into one masked call,
 *   as `kvm_dirty_ring_reset` does.
 *
 * The fetch index belongs to userspace; it is kept here for the model.
 */
import type { KvmWriteProtector } from './kvm-write-protect.ts';

export const KVM_DIRTY_GFN_F_DIRTY = 1 << 0;
export const KVM_DIRTY_GFN_F_RESET = 1 << 1;
/** Entries KVM always keeps free beyond the soft limit (include/linux/kvm_dirty_ring.h). */
export const KVM_DIRTY_RING_RSVD_ENTRIES = 64;
/** Entries of the PML buffer KVM reserves on VMX with PML (kvm_cpu_dirty_log_size). */
export const KVM_PML_DIRTY_LOG_SIZE = 512;
/** Largest ring (KVM_DIRTY_RING_MAX_ENTRIES). */
export const KVM_DIRTY_RING_MAX_ENTRIES = 65536;
/** Smallest ring: one 4 KiB page of 16-byte entries. */
export const KVM_DIRTY_RING_MIN_ENTRIES = 4096 / 16;
/** u32 words per entry. */
const ENTRY_WORDS = 4;

/** Outcome of {@link KvmDirtyRing.push}. */
export const enum RingPush {
  /** Logged. */
  Ok = 0,
  /** Logged, and the ring is now soft-full: the vCPU must exit with dirty_ring_full. */
  SoftFull = 1,
  /** Not logged: the ring is hard full (a KVM WARN; the reserve was too small). */
  Full = 2,
}

export interface KvmDirtyRingConfig {
  /** Entries; a power of two in [256, 65536] and ≥ the reserved entries. */
  readonly sizeEntries: number;
  /** kvm_cpu_dirty_log_size(): KVM_PML_DIRTY_LOG_SIZE with PML, else 0 (default). */
  readonly cpuDirtyLogSize?: number;
  /** The vCPU index owning the ring. */
  readonly vcpu?: number;
}

export class KvmDirtyRing {
  readonly size: number;
  readonly reservedEntries: number;
  /** used ≥ softLimit ⇒ soft-full. */
  readonly softLimit: number;
  readonly vcpu: number;
  /** The mmap'ed array of struct kvm_dirty_gfn. */
  readonly entries: Uint32Array;
  /** Next slot KVM pushes to (free-running u32). */
  dirtyIndex = 0;
  /** Next slot KVM resets (free-running u32). */
  resetIndex = 0;
  /** Userspace's next slot to harvest (free-running u32). */
  fetchIndex = 0;
  /** KVM_REQ_DIRTY_RING_SOFT_FULL pending on the vCPU. */
  softFullRequest = false;
  /** Pushes refused because the ring was hard full. */
  droppedPushes = 0;
  private readonly mask: number;

  constructor(
    config: KvmDirtyRingConfig,
    private readonly protector: KvmWriteProtector,
  ) {
    const size = config.sizeEntries;
    const reserved = KVM_DIRTY_RING_RSVD_ENTRIES + (config.cpuDirtyLogSize ?? 0);
    if (!Number.isInteger(size) || size <= 0 || (size & (size - 1)) !== 0) {
      throw new RangeError(`dirty ring size ${size} must be a power of two`);
    }
    if (size < KVM_DIRTY_RING_MIN_ENTRIES || size < reserved || size > KVM_DIRTY_RING_MAX_ENTRIES) {
      throw new RangeError(
        `dirty ring size ${size} must be in [${Math.max(KVM_DIRTY_RING_MIN_ENTRIES, reserved)}, ${KVM_DIRTY_RING_MAX_ENTRIES}] entries ` +
          `(${reserved} are reserved)`,
      );
    }
    this.size = size;
    this.mask = size - 1;
    this.reservedEntries = reserved;
    this.softLimit = size - reserved;
    this.vcpu = config.vcpu ?? 0;
    this.entries = new Uint32Array(size * ENTRY_WORDS);
  }

  /** Entries pushed and not yet reset. */
  get used(): number {
    return (this.dirtyIndex - this.resetIndex) >>> 0;
  }

  get isSoftFull(): boolean {
    return this.used >= this.softLimit;
  }

  /**
   * `kvm_dirty_ring_push`: logs page `offset` of memslot `slot`. Returns
   * RingPush.SoftFull when the vCPU must now exit with dirty_ring_full.
   */
  push(slot: number, offset: number): RingPush {
    if (this.used >= this.size) {
      this.droppedPushes++;
      return RingPush.Full;
    }
    const e = (this.dirtyIndex & this.mask) * ENTRY_WORDS;
    const entries = this.entries;
    entries[e + 1] = slot;
    entries[e + 2] = offset >>> 0;
    entries[e + 3] = Math.floor(offset / 0x100000000);
    entries[e] = KVM_DIRTY_GFN_F_DIRTY; // published last (smp_wmb in KVM)
    this.dirtyIndex = (this.dirtyIndex + 1) >>> 0;
    if (this.used >= this.softLimit) {
      this.softFullRequest = true;
      return RingPush.SoftFull;
    }
    return RingPush.Ok;
  }

  /**
   * `kvm_dirty_ring_check_request`, before entering the guest: true means
   * the vCPU exits to userspace with dirty_ring_full instead (the request
   * stays pending while the ring is soft-full).
   */
  checkRequest(): boolean {
    if (!this.softFullRequest) return false;
    if (this.isSoftFull) return true;
    this.softFullRequest = false;
    return false;
  }

  /**
   * Userspace harvest: calls `visit(slot, offset)` for each DIRTY entry from
   * the fetch index on, marks it RESET (collected), and returns the count.
   */
  harvest(visit: (slot: number, offset: number) => void): number {
    const entries = this.entries;
    let n = 0;
    for (;;) {
      const e = (this.fetchIndex & this.mask) * ENTRY_WORDS;
      if (((entries[e] as number) & KVM_DIRTY_GFN_F_DIRTY) === 0) break;
      visit(entries[e + 1] as number, (entries[e + 3] as number) * 0x100000000 + (entries[e + 2] as number));
      entries[e] = KVM_DIRTY_GFN_F_RESET;
      this.fetchIndex = (this.fetchIndex + 1) >>> 0;
      n++;
    }
    return n;
  }

  /**
   * `kvm_dirty_ring_reset` (this ring's share of KVM_RESET_DIRTY_RINGS):
   * frees every harvested entry and re-protects its page, coalescing runs
   * within 64 pages of one slot. Returns the entries reset. The caller
   * flushes TLBs once if any ring reset something ({@link resetDirtyRings}).
   */
  reset(): number {
    const entries = this.entries;
    let n = 0;
    let curSlot = 0;
    let curOffset = 0;
    let maskLo = 0; // 64-bit mask of pages curOffset + i, as two u32
    let maskHi = 0;
    for (;;) {
      const e = (this.resetIndex & this.mask) * ENTRY_WORDS;
      if (((entries[e] as number) & KVM_DIRTY_GFN_F_RESET) === 0) break;
      const nextSlot = entries[e + 1] as number;
      const nextOffset = (entries[e + 3] as number) * 0x100000000 + (entries[e + 2] as number);
      entries[e] = 0; // kvm_dirty_gfn_set_invalid
      this.resetIndex = (this.resetIndex + 1) >>> 0;
      n++;
      if ((maskLo | maskHi) !== 0) {
        if (nextSlot === curSlot) {
          const delta = nextOffset - curOffset;
          if (delta >= 0 && delta < 64) {
            if (delta < 32) maskLo = (maskLo | (1 << delta)) >>> 0;
            else maskHi = (maskHi | (1 << (delta - 32))) >>> 0;
            continue;
          }
          // Backwards within 64 pages: shift the mask up if no bit falls off.
          if (delta > -64 && delta < 0 && fls64(maskLo, maskHi) - delta < 64) {
            const s = -delta;
            if (s >= 32) {
              maskHi = (maskLo << (s - 32)) >>> 0;
              maskLo = 0;
            } else {
              maskHi = ((maskHi << s) | (maskLo >>> (32 - s))) >>> 0;
              maskLo = (maskLo << s) >>> 0;
            }
            maskLo = (maskLo | 1) >>> 0;
            curOffset = nextOffset;
            continue;
          }
        }
        this.protector.protectMasked(curSlot, curOffset, maskLo, maskHi);
      }
      curSlot = nextSlot;
      curOffset = nextOffset;
      maskLo = 1;
      maskHi = 0;
    }
    if ((maskLo | maskHi) !== 0) this.protector.protectMasked(curSlot, curOffset, maskLo, maskHi);
    return n;
  }
}

/**
 * KVM_RESET_DIRTY_RINGS over every vCPU's ring: resets each, then one
 * remote TLB flush if anything was reset. Returns the entries reset.
 */
export function resetDirtyRings(rings: readonly KvmDirtyRing[], protector: KvmWriteProtector): number {
  let cleared = 0;
  for (const ring of rings) cleared += ring.reset();
  if (cleared > 0) protector.flushTlbs();
  return cleared;
}

/** Index of the highest set bit of a non-zero 64-bit value given as (lo, hi). */
function fls64(lo: number, hi: number): number {
  return hi !== 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(lo);
}
