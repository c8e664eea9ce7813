/**
 * DirtyMode: the one interface every dirty-tracking mechanism implements —
 * Xen HAP write protection on EPT / NPT / ARM stage-2, Intel PML, KVM's dirty
 * bitmap and dirty ring (and shadow paging later). A mode is a PagingMode (it
 * handles the VM exits its tracking causes) plus the toolstack side: enable,
 * peek, harvest, disable. One file (or folder) per mode; registry.ts maps CLI
 * names to factories; dirty-mode.contract.test.ts runs every mode.
 *
 * Bitmaps handed to peek/harvest: bit `gfn & 31` of word `gfn >>> 5`, at least
 * ceil(pageCount / 32) words; null ⇒ no copy (Xen CLEAN with a null handle).
 *
 * Semantics of `harvest` per family (the trace contract's rounds[i].dirty):
 *  - Xen modes: CLEAN (pause, flush PML, read and clear the trie, re-arm, unpause);
 *    dirtyCount is stats.dirty_count, faultCount stats.fault_count.
 *  - KVM modes: GET_DIRTY_LOG (+ CLEAR in manual-protect) or ring harvest + reset;
 *    dirtyCount is the number of distinct pages that harvest returned, faultCount 0.
 */
import type { Domain } from '../domain/domain.ts';
import type { PagingMode } from '../domain/paging-mode.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import type { P2mFormatName } from '../p2m/p2m-format.ts';

export const MODE_NAMES = ['ept-wp', 'ept-pml', 'npt-wp', 'arm-wp', 'kvm-bitmap', 'kvm-ring', 'shadow'] as const;
export type ModeName = (typeof MODE_NAMES)[number];

export interface HarvestResult {
  /** Distinct pages newly dirtied that this harvest reports (see header). */
  readonly dirtyCount: number;
  /** Xen stats.fault_count (shadow only; 0 in HAP and KVM modes). */
  readonly faultCount: number;
}

/** Knobs some modes take; each mode ignores what does not apply to it. */
export interface ModeOptions {
  /** ept-pml: flush the PML buffer only when needed (Xen) or on every VM exit. */
  readonly pmlFlush?: 'on-demand' | 'every-exit';
  /** arm-wp: keep the dirty set as a bitmap, or as the list of faulting addresses. */
  readonly armDirtySet?: 'bitmap' | 'list';
  /**
   * kvm-bitmap, kvm-ring: KVM on Intel with PML (kvm_intel.pml=1, the default: true) or
   * without it (false: kvm_intel.pml=0, or an AMD host without PML), see kvm-tdp-mmu.ts.
   */
  readonly kvmPml?: boolean;
  /** kvm-bitmap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (GET, then CLEAR chunk by chunk as QEMU does). */
  readonly kvmManualProtect?: boolean;
  /** kvm-bitmap with manual protect: KVM_DIRTY_LOG_INITIALLY_SET. */
  readonly kvmInitiallySet?: boolean;
  /**
   * kvm-bitmap with manual protect: pages per KVM_CLEAR_DIRTY_LOG call, a power of two in
   * [2^6, 2^31] (QEMU's 1 << clear_bmap_shift); default 2^18 (CLEAR_BITMAP_SHIFT_DEFAULT).
   */
  readonly kvmClearChunkPages?: number;
  /** kvm-ring: entries per vCPU ring (power of two). */
  readonly ringEntries?: number;
  /** shadow: Xen's shadow pool (min sizing, pin/LRU recycling) or an XI-style preallocated pool with backlinks. */
  readonly shadowPool?: 'xen' | 'prealloc';
  /** shadow: pool size in 4 KiB pages (default: libxl's default; Xen raises it to sh_min_allocation). */
  readonly shadowPoolPages?: number;
}

export interface DirtyMode extends PagingMode {
  /** The name it is registered under: a built-in ModeName, or a plugin's (registry.ts registerMode). */
  readonly name: string;
  /** p2m format this mode runs on. */
  readonly format: P2mFormatName;
  /** Starts tracking (ENABLE_LOGDIRTY / KVM_MEM_LOG_DIRTY_PAGES). Throws a user-facing error if refused. */
  enable(): void;
  /** Reads the dirty set without resetting it (Xen PEEK; KVM: GET in manual-protect, else a copy). */
  peek(bitmap: Uint32Array | null): HarvestResult;
  /**
   * Reads and resets the dirty set and re-arms tracking (see header).
   * `final`: the saver's last harvest — Xen modes pass
   * XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL (paging_log_dirty_op: frames Xen holds
   * write-mapped are marked dirty first) and count it in the op log; KVM has
   * no such flag and ignores it.
   */
  harvest(bitmap: Uint32Array | null, final?: boolean): HarvestResult;
  /**
   * A write the guest made to gfn without the hardware path seeing it (the
   * guest OS model writes its page tables through the software view): record
   * it as Xen's paging_mark_dirty / KVM's mark_page_dirty would. No-op when
   * tracking is off.
   */
  markGuestWrite(vcpu: Vcpu, gfn: number): void;
  /**
   * Optional (shadow): the guest OS model is about to write at gpa through the
   * software view, / has written [gpa, gpa + sizeBytes). A mode that
   * write-protects guest page tables sees here what the hardware would trap.
   * vcpu is null for writes made outside any vCPU's fault (set-up).
   */
  beforeGuestWrite?(vcpu: Vcpu | null, gpa: number): void;
  afterGuestWrite?(vcpu: Vcpu | null, gpa: number, sizeBytes: number): void;
  /**
   * Optional (kvm-bitmap with manual protect): a migration sender takes over
   * KVM_CLEAR_DIRTY_LOG as QEMU's does. From this call on, harvest only GETs
   * and marks each clear chunk holding a returned bit; `beforeSend(gfn)`
   * clears gfn's chunk, if marked, before the page is read to be sent
   * (QEMU migration_bitmap_clear_dirty). Without it the clears run at
   * harvest: a trace replay sends nothing between two harvests.
   */
  deferClearsToSender?(): void;
  /** Optional: the sender is about to read gfn to send it (see deferClearsToSender). */
  beforeSend?(gfn: number): void;
  /** Stops tracking (Xen OFF / clear KVM_MEM_LOG_DIRTY_PAGES); hardware-cached state is flushed first. */
  disable(): void;
  readonly enabled: boolean;
  /** Host bytes held by the tracking structures now (trie pages, bitmaps, rings, PML pages, address lists). */
  trackingBytes(): number;
  /** Cycles the toolstack and hypervisor spent in peek/harvest/enable/disable so far (not charged to vCPUs). */
  readonly controlCycles: number;
  /**
   * The mechanism's own count of page writes it recorded as the guest ran,
   * cumulative since the mode was made: PML entries the CPU logged
   * (pmlEntriesLogged), plus writes recorded on the write-fault path — a
   * log-dirty write fault that marked the page (ept-wp, npt-wp, arm-wp, a
   * superpage under ept-pml), a write fetch that marked it (shadow), a KVM
   * write fault that set the bitmap bit or pushed the ring entry. Not counted:
   * recalc and read faults, PML / list / ring flushes (they move records
   * already counted), the guest OS model's software-view writes
   * (markGuestWrite). A faithful mechanism records each page once per tracking
   * window, at its first write there; dirty-mode.contract.test.ts checks each
   * window's delta against the naive model's count of first writes, so a
   * mechanism that logs more (every write, every walk) fails it.
   */
  readonly writesLogged: number;
}

/** PML entries the CPUs of `domain` have written to their logs since they were made (PmlUnit.logged). */
export function pmlEntriesLogged(domain: Domain): number {
  let n = 0;
  for (const v of domain.vcpus) n += v.mmu.pml.logged;
  return n;
}

/**
 * Creates a mode for `domain` and installs it (`domain.setPagingMode(mode)`);
 * `opts` carries the knobs of ModeOptions, each mode ignoring what does not apply.
 */
export type ModeFactory = (domain: Domain, opts: ModeOptions) => DirtyMode;
