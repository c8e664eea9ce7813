/**
 * KVM's x86 TDP MMU as the KVM comparison modes (kvm-bitmap, kvm-ring) see it:
 * the exit side (write faults on write-protected SPTEs) and the
 * KvmWriteProtector the memslot bitmap and the dirty rings call to re-arm
 * tracking. The toolstack side (GET/CLEAR, ring harvest/reset) is in each
 * mode's file.
 *
 * Model, on the EPT format (Linux arch/x86/kvm/mmu/{mmu.c,tdp_mmu.c,spte.c}):
 *  - one memslot (id 0, KVM_LOG_SLOT) covers guest memory [0, pageCount);
 *  - a write-protected SPTE is a p2m entry of type ram_logdirty (read/execute
 *    only), re-protected *eagerly*, page by page, with p2m_change_type_one
 *    (never the p2m's lazy recalc marks: KVM has no EPT-misconfig re-arm, so
 *    these modes take no ept_misconfig exits);
 *  - KVM_MEM_LOG_DIRTY_PAGES on (without INITIALLY_SET):
 *    kvm_mmu_slot_remove_write_access over every present SPTE;
 *  - the write fault (fast_page_fault): log the gfn (the mode's logWrite: bitmap
 *    bit or ring push), make that 4K SPTE writable, retry. Relaxing a permission
 *    needs no TLB flush (a stale read-only TLB entry only makes the CPU walk
 *    again), so none is done;
 *  - re-protection by mask (kvm_arch_mmu_enable_log_dirty_pt_masked) from
 *    GET/CLEAR/ring reset, then one remote TLB flush per batch;
 *  - superpages: eager split (KVM's default eager_page_split=Y). A superpage is
 *    split when tracking first covers it: at enable (kvm_mmu_slot_try_split_huge_pages),
 *    or, with INITIALLY_SET, at the first CLEAR over it (KVM splits the cleared
 *    range, kvm_mmu_try_split_huge_pages). Frames populated while tracking is
 *    armed come in write-protected (the p2m's logdirty_ranges covers the slot:
 *    used only as the type of new entries, no entry is ever marked), a 2 MiB
 *    block as one write-protected superpage, split on its first write as KVM's
 *    fault path does (tdp_mmu_split_huge_page); its 511 siblings stay protected;
 *  - a write fault on a page not yet populated populates it and logs it in the
 *    same exit (make_spte → mark_page_dirty_in_slot); a read maps it protected.
 *
 * With PML (ModeOptions.kvmPml, default true: kvm_intel.pml=1, as KVM runs on
 * Intel by default; false = kvm_intel.pml=0, or an AMD host without PML):
 *  - enabling dirty logging turns PML on in every vCPU (vmx_update_cpu_dirty_logging)
 *    and, instead of write-protecting 4K SPTEs, clears their D bits
 *    (x86.c kvm_mmu_slot_apply_flags → kvm_mmu_slot_leaf_clear_dirty); only
 *    huge SPTEs are write-protected (kvm_mmu_slot_remove_write_access at
 *    PG_LEVEL_2M). In the p2m's terms a 4K ram_logdirty entry under HW_PML is
 *    writable with D=0 and a ram_rw entry writable with D=1 (p2mTypeToFlags),
 *    so "clear D" and "write-protect" are the same type change, rw → logdirty:
 *    the hardware flags make the difference;
 *  - the first write to a clean page sets D and logs its GPA in the vCPU's PML
 *    buffer, with no exit (walker.ts). __vmx_handle_exit flushes the buffer on
 *    *every* VM exit, before handling it (vmx_flush_pml_buffer →
 *    kvm_vcpu_mark_page_dirty: bitmap bit or ring push); a PML-full exit then has
 *    nothing left to do (handle_pml_full). KVM leaves the SPTE as the CPU left
 *    it (writable, D=1): here the entry is retyped logdirty → rw, which changes
 *    no hardware bit, so no TLB flush;
 *  - GET and CLEAR first call kvm_arch_sync_dirty_log, which kicks every vCPU
 *    (an exit each, flushing its buffer); modelled as synchronous: the kicked
 *    vCPUs' entries are in the log before it is read (KVM does not wait for
 *    the IPI, so a few might land in the next round instead; no write is lost
 *    either way). The ring's harvester kicks the vCPUs itself (QEMU
 *    kvm_dirty_ring_flush), see kvm-ring.ts;
 *  - re-protection by mask (GET, CLEAR, ring reset) clears D
 *    (kvm_arch_mmu_enable_log_dirty_pt_masked → kvm_mmu_clear_dirty_pt_masked,
 *    "if PML is enabled ... clear the Dirty bit, otherwise clear the Writable bit");
 *  - so a first write in a window costs an EPT violation only where a fault
 *    was needed anyway: populating a frame, or a write-protected huge SPTE.
 * Without PML every first write to a page in a window is one EPT violation.
 * Kept as this mode's model: EPT A/D follow PML (on while PML is on); KVM keeps
 * A/D on whenever the CPU has them (eptad=1), which matters only with paged
 * addressing (the CPU's guest page-table accesses count as writes for EPT D).
 *
 * Costs: exit-side work is charged to the faulting vCPU; re-protection, GET/CLEAR
 * and ring resets done by the toolstack go to `controlCycles` (cost-model.ts).
 *
 * Invariant: no write is lost. A page is made writable only in the fault that
 * logs it; it is logged again only after its log entry was harvested and the
 * page re-protected (the bitmap bit cleared, or the ring entry reset).
 */
import type { Domain } from '../domain/domain.ts';
import { DefaultPagingMode } from '../domain/paging-mode.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import { popcount32 } from '../logdirty/dirty-trie.ts';
import type { KvmWriteProtector } from '../logdirty/kvm-write-protect.ts';
import type { ExitAction, ExitInfo } from '../mmu/exit-info.ts';
import { STAT_TLB_FLUSHES } from '../mmu/mmu-stats.ts';
import type { P2mLookup } from '../p2m/p2m.ts';
import { P2M_ROOT_LEVEL, levelIndex, levelSpan } from '../p2m/p2m-format.ts';
import { P2mType, PERM_W } from '../p2m/p2m-type.ts';
import { PAGE_SIZE } from '../units.ts';
import { ExitReason } from '../vm-exit.ts';
import { pmlEntriesLogged, type DirtyMode, type HarvestResult, type ModeName, type ModeOptions } from './dirty-mode.ts';
import { DirtyModeError } from './hap-log-dirty.ts';

/** The one memslot the KVM modes register (as_id 0, id 0). */
export const KVM_LOG_SLOT = 0;

/**
 * Counters of the KVM MMU side, sampled by tests and reports. With logging on,
 * every first write to a page since its last re-protection is logged exactly
 * once: by a write fault (writeFaults) or by the CPU in a PML buffer, then
 * flushed (pmlEntriesFlushed); guest-OS table writes (markGuestWrite) aside.
 */
export interface KvmMmuStats {
  /** Write faults on a protected page (fast_page_fault, or a populating write) handled. */
  writeFaults: number;
  /** PML entries moved from the vCPUs' buffers into the log (every exit, kicks, disable). */
  pmlEntriesFlushed: number;
  /** vCPU kicks that made a vCPU exit to flush its PML buffer (kvm_arch_sync_dirty_log). */
  kicks: number;
  /** Pages write-protected again (by mask or slot-wide). */
  pagesProtected: number;
  /** Superpages split (eager, or on a write). */
  superpageSplits: number;
  /** Remote TLB flushes after a re-protection batch. */
  tlbFlushes: number;
}

export abstract class KvmTdpMode extends DefaultPagingMode implements DirtyMode, KvmWriteProtector {
  override readonly name: ModeName;
  readonly format = 'ept' as const;
  /** Pages in the memslot (= guest pages). */
  readonly npages: number;
  controlCycles = 0;
  readonly mmuStats: KvmMmuStats = { writeFaults: 0, pmlEntriesFlushed: 0, kicks: 0, pagesProtected: 0, superpageSplits: 0, tlbFlushes: 0 };
  /** KVM runs with PML (ModeOptions.kvmPml, default true). */
  readonly pml: boolean;
  /** KVM_MEM_LOG_DIRTY_PAGES is set on the slot. */
  protected logging = false;
  /** Writes logged (bitmap bit set, ring entry pushed) from the write-fault path. */
  protected faultWritesLogged = 0;
  /** Writes logged for the guest OS model's software-view writes (markGuestWrite). */
  protected softwareViewLogs = 0;
  /** PML entries logged before this mode was made (the vCPUs' counters are per MMU). */
  private readonly pmlBase: number;
  /** Whether new frames come in write-protected (tracking armed on the slot). */
  private armed = false;
  // Mask being applied by protectMasked (read by protectVisit: no closure per call).
  private maskOffset = 0;
  private maskLo = 0;
  private maskHi = 0;
  private readonly protectVisit: (gfn: number, r: P2mLookup) => void;
  private readonly protectAllVisit: (gfn: number, r: P2mLookup) => void;
  /** Per-entry callback for PmlUnit.drain (made once: no closure per flush). */
  private readonly pmlFlushVisit: (gfn: number) => void;
  /** The vCPU whose buffer pmlFlushVisit is draining. */
  private flushVcpu: Vcpu | null = null;
  private savedHook: (() => void) | null = null;
  private savedFlushes = 0;
  private savedSplits = 0;
  /** A page was write-protected since the last TLB flush. */
  private protectedSinceFlush = false;
  // The last region found unmapped by unmapped(), and the p2m shape it was found under.
  private emptyFrom = 0;
  private emptyTo = 0;
  private emptyKeyTables = -1;
  private emptyKeyMax = -1;
  private emptyKeyPopulated = -1;

  constructor(readonly domain: Domain, name: ModeName, opts: ModeOptions) {
    super();
    if (domain.format.name !== 'ept') {
      throw new DirtyModeError(`mode ${name} needs an ept p2m, but domain ${domain.id} uses ${domain.format.name}`);
    }
    this.name = name;
    this.pml = opts.kvmPml ?? true;
    this.pmlBase = pmlEntriesLogged(domain);
    this.npages = domain.memory.pageCount;
    const p2m = domain.p2m;
    this.protectVisit = (gfn, r) => {
      const i = gfn - this.maskOffset;
      const bit = i < 32 ? (this.maskLo >>> i) & 1 : (this.maskHi >>> (i - 32)) & 1;
      if (bit === 0 || r.type !== P2mType.RamRw) return;
      if (p2m.changeTypeOne(gfn, P2mType.RamRw, P2mType.RamLogdirty)) {
        this.mmuStats.pagesProtected++;
        this.protectedSinceFlush = true;
      }
    };
    this.protectAllVisit = (gfn, r) => {
      this.controlCycles += this.domain.costs.kvmSlotProtectPerEntry;
      if (r.type !== P2mType.RamRw) return;
      if (p2m.changeTypeOne(gfn, P2mType.RamRw, P2mType.RamLogdirty)) {
        this.mmuStats.pagesProtected++;
        this.protectedSinceFlush = true;
      }
    };
    this.pmlFlushVisit = (gfn) => {
      // The SPTE stays writable with D=1 (KVM does not touch it): retype logdirty → rw, no hardware bit changes.
      p2m.changeTypeOne(gfn, P2mType.RamLogdirty, P2mType.RamRw);
      // mark_page_dirty_in_slot does nothing once the slot stopped logging.
      if (this.logging) this.logWrite(this.flushVcpu!, gfn);
    };
  }

  attach(domain: Domain): void {
    if (domain !== this.domain) throw new DirtyModeError(`mode ${this.name} was made for domain ${this.domain.id}, not ${domain.id}`);
  }

  get enabled(): boolean {
    return this.logging;
  }

  abstract enable(): void;
  abstract peek(bitmap: Uint32Array | null): HarvestResult;
  abstract harvest(bitmap: Uint32Array | null): HarvestResult;
  abstract disable(): void;
  abstract trackingBytes(): number;

  // ---------------------------------------------------------------- exit side

  /** Records a write to gfn in the mode's log (bitmap bit, ring entry), charging the vCPU. */
  protected abstract logWrite(vcpu: Vcpu, gfn: number): void;

  /** mark_page_dirty from a write the hardware path did not see (the guest OS model's table writes). */
  markGuestWrite(vcpu: Vcpu, gfn: number): void {
    if (!this.logging) return;
    this.logWrite(vcpu, gfn);
    this.softwareViewLogs++;
  }

  /**
   * DirtyMode.writesLogged: writes logged from the write-fault path, plus the
   * PML entries the CPUs logged since this mode was made (kvm-ring counts its
   * ring pushes instead, which the PML flushes feed).
   */
  get writesLogged(): number {
    return this.faultWritesLogged + pmlEntriesLogged(this.domain) - this.pmlBase;
  }

  /** Requests checked before VM entry (vcpu_enter_guest); the ring's soft-full exit. */
  protected beforeReentry(_vcpu: Vcpu): void {}

  /**
   * __vmx_handle_exit: with PML, the buffer is flushed first, whatever the
   * exit; a PML-full exit then needs nothing more (handle_pml_full). Pending
   * requests are checked before re-entry.
   */
  override handleExit(vcpu: Vcpu, exit: ExitInfo): ExitAction {
    if (this.pml) this.flushPmlBuffer(vcpu);
    const action = exit.reason === ExitReason.PmlFull ? 'retry' : super.handleExit(vcpu, exit);
    if (this.logging) this.beforeReentry(vcpu);
    return action;
  }

  /**
   * vmx_flush_pml_buffer: each GPA the CPU logged since the last flush goes to
   * the dirty log (kvm_vcpu_mark_page_dirty), charged to that vCPU. Returns the entries.
   */
  protected flushPmlBuffer(vcpu: Vcpu): number {
    const pml = vcpu.mmu.pml;
    if (!pml.enabled || pml.pending() === 0) return 0;
    this.flushVcpu = vcpu;
    this.quietBegin();
    const n = pml.drain(this.pmlFlushVisit);
    this.quietEnd();
    this.flushVcpu = null;
    this.mmuStats.pmlEntriesFlushed += n;
    vcpu.chargeCycles(n * vcpu.domain.costs.kvmPmlFlushPerEntry);
    return n;
  }

  /**
   * Kicks every vCPU out of the guest: each takes an exit (charged to it, plus
   * `extraCycles` each, e.g. a return to the VMM) and flushes its PML buffer on
   * the way out. Returns the entries flushed.
   */
  protected kickAllVcpus(extraCycles: number): number {
    const costs = this.domain.costs;
    let n = 0;
    for (const v of this.domain.vcpus) {
      this.mmuStats.kicks++;
      v.chargeCycles(costs.vmexitRoundTripX86 + extraCycles);
      if (this.pml) n += this.flushPmlBuffer(v);
    }
    return n;
  }

  override handleViolation(vcpu: Vcpu, exit: ExitInfo): ExitAction {
    const mem = vcpu.domain.memory;
    const before = mem.populatedFrames;
    const action = super.handleViolation(vcpu, exit);
    if (action !== 'retry' || mem.populatedFrames === before || (exit.access & PERM_W) === 0) return action;
    // A write fault on a fresh frame maps it and logs it in the same exit.
    const r = this.r;
    if (vcpu.domain.p2m.lookup(exit.gfn, r) && r.type === P2mType.RamLogdirty) return this.logDirtyWrite(vcpu, exit.gfn, r.order);
    return action;
  }

  /** fast_page_fault on a write-protected SPTE (the default path's write to ram_logdirty). */
  override logDirtyWrite(vcpu: Vcpu, gfn: number, order: number): ExitAction {
    const costs = vcpu.domain.costs;
    if (this.logging) {
      this.logWrite(vcpu, gfn);
      this.faultWritesLogged++;
    }
    const p2m = vcpu.domain.p2m;
    if (order === 0) {
      this.quietBegin();
      p2m.changeTypeOne(gfn, P2mType.RamLogdirty, P2mType.RamRw);
      this.quietEnd();
    } else {
      // Huge SPTE: split (children keep write protection), then the 4K page goes writable; flushed.
      p2m.changeTypeOne(gfn, P2mType.RamLogdirty, P2mType.RamRw);
      this.mmuStats.superpageSplits++;
    }
    this.mmuStats.writeFaults++;
    vcpu.chargeCycles(costs.kvmWriteFault + (order > 0 ? costs.superpageSplit : 0));
    return 'retry';
  }

  // ---------------------------------------------------------------- KvmWriteProtector

  protectMasked(slot: number, offset: number, maskLo: number, maskHi: number): void {
    if (slot !== KVM_LOG_SLOT || (maskLo | maskHi) === 0) return;
    const last = offset + (maskHi !== 0 ? 63 - Math.clz32(maskHi) : 31 - Math.clz32(maskLo));
    if (last >= this.npages) return; // kvm_reset_dirty_gfn ignores a mask past the slot's end
    const p2m = this.domain.p2m;
    this.controlCycles += (popcount32(maskLo) + popcount32(maskHi)) * this.domain.costs.kvmProtectPerPage;
    if (offset > p2m.maxMappedGfn || this.unmapped(offset)) return;
    this.maskOffset = offset;
    this.maskLo = maskLo;
    this.maskHi = maskHi;
    this.quietBegin();
    p2m.forEachMapped(offset, last + 1, this.protectVisit);
    this.quietEnd();
  }

  /**
   * kvm_mmu_slot_apply_flags, logging on: without PML write-protect every
   * SPTE; with PML clear every 4K SPTE's D bit and write-protect huge ones —
   * the same type change here, under the hardware flags PML set (header).
   */
  protectSlot(slot: number): void {
    if (slot !== KVM_LOG_SLOT) return;
    const p2m = this.domain.p2m;
    this.quietBegin();
    p2m.forEachMapped(0, Math.min(this.npages, p2m.maxMappedGfn + 1), this.protectAllVisit);
    this.quietEnd();
  }

  /** kvm_arch_sync_dirty_log (x86.c): with PML, kick every vCPU so its buffer lands in the log; else nothing. */
  syncDirtyLog(slot: number): void {
    if (slot !== KVM_LOG_SLOT || !this.pml) return;
    this.kickAllVcpus(0);
  }

  /**
   * kvm_flush_remote_tlbs(_memslot). KVM flushes after every batch that cleared
   * a bit, even when no SPTE changed (e.g. CLEARs over unpopulated memory); the
   * vCPUs are charged the same either way, but the TLB arrays are only wiped
   * when a page was re-protected since the last flush (nothing else can be stale).
   */
  flushTlbs(_slot?: number): void {
    this.mmuStats.tlbFlushes++;
    const p2m = this.domain.p2m;
    if (this.protectedSinceFlush) {
      this.protectedSinceFlush = false;
      p2m.flush();
      return;
    }
    p2m.stats.flushes++;
    const cost = this.domain.costs.tlbFlush;
    for (const v of this.domain.vcpus) {
      v.stats[STAT_TLB_FLUSHES]!++;
      v.chargeCycles(cost);
    }
  }

  /**
   * Whether no entry maps `gfn`'s region above the leaf tables (a sparse guest's
   * unpopulated 2 MiB / 1 GiB / 512 GiB regions): re-protecting a mask there has
   * nothing to do. The last empty region found is remembered while the p2m's
   * shape (tables, highest gfn, populated frames) is unchanged, so a CLEAR over
   * a large unpopulated range costs O(1) per 64-page mask.
   */
  private unmapped(gfn: number): boolean {
    const p2m = this.domain.p2m;
    const populated = this.domain.memory.populatedFrames;
    if (p2m.tableFrames !== this.emptyKeyTables || p2m.maxMappedGfn !== this.emptyKeyMax || populated !== this.emptyKeyPopulated) {
      this.emptyKeyTables = p2m.tableFrames;
      this.emptyKeyMax = p2m.maxMappedGfn;
      this.emptyKeyPopulated = populated;
      this.emptyFrom = 0;
      this.emptyTo = 0;
    }
    if (gfn >= this.emptyFrom && gfn < this.emptyTo) return true;
    const fmt = p2m.fmt;
    const pool = p2m.pool;
    let table = p2m.rootMfn;
    for (let level = P2M_ROOT_LEVEL; level > 0; level--) {
      const w = pool.wordsOf(table);
      const i = pool.wordOffset(table) + 2 * levelIndex(gfn, level);
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) === 0) {
        const span = levelSpan(level);
        this.emptyFrom = gfn - (gfn % span);
        this.emptyTo = this.emptyFrom + span;
        return true;
      }
      if (fmt.isLeaf(lo, hi, level)) return false;
      table = fmt.mfn(lo, hi);
    }
    return false;
  }

  // ---------------------------------------------------------------- helpers for the modes

  /**
   * Dirty logging goes on in the vCPUs: with PML, vmx_update_cpu_dirty_logging
   * sets the PML enable control in each VMCS. Call before protecting the slot,
   * so that re-typed entries take PML's flags.
   */
  protected startCpuDirtyLogging(): void {
    if (this.pml && !this.domain.pmlEnabled) this.domain.enablePml();
  }

  /**
   * Dirty logging goes off: the buffers' last entries are drained (discarded:
   * the slot no longer logs) and PML is turned off.
   */
  protected stopCpuDirtyLogging(): void {
    if (!this.domain.pmlEnabled) return;
    for (const v of this.domain.vcpus) this.flushPmlBuffer(v);
    this.domain.disablePml();
  }

  /** Bytes of the vCPUs' PML pages: KVM allocates one per vCPU at creation when PML is on (vmx_vcpu_create). */
  protected pmlBytes(): number {
    return this.pml ? this.domain.vcpus.length * PAGE_SIZE : 0;
  }

  /** New frames in the slot come in write-protected from now on (tracking armed). */
  protected armNewFrames(): void {
    if (this.armed) return;
    this.domain.p2m.logdirtyRanges.add(0, this.npages - 1);
    this.armed = true;
  }

  /** New frames come in writable again (logging off). Pages still protected unprotect on their next write, unlogged. */
  protected disarmNewFrames(): void {
    if (!this.armed) return;
    this.domain.p2m.logdirtyRanges.remove(0, this.npages - 1);
    this.armed = false;
  }

  protected requireLogging(op: string): void {
    if (!this.logging) {
      throw new DirtyModeError(`${this.name}: ${op} on domain ${this.domain.id}, but dirty logging is not enabled; enable it first`);
    }
  }

  protected checkBitmap(op: string, bitmap: Uint32Array | null): void {
    if (bitmap !== null && bitmap.length * 32 < this.npages) {
      throw new DirtyModeError(`${this.name}: ${op} bitmap holds ${bitmap.length * 32} bits, the guest has ${this.npages} pages`);
    }
  }

  /**
   * Batches p2m rewrites without a TLB flush per entry (the caller flushes once,
   * as KVM does per batch): the p2m's flush hook is held and its counter restored;
   * superpage splits made meanwhile are counted and charged.
   */
  private quietBegin(): void {
    const p2m = this.domain.p2m;
    this.savedHook = p2m.onFlush;
    this.savedFlushes = p2m.stats.flushes;
    this.savedSplits = p2m.stats.superpageSplits;
    p2m.onFlush = null;
  }

  private quietEnd(): void {
    const p2m = this.domain.p2m;
    p2m.onFlush = this.savedHook;
    p2m.stats.flushes = this.savedFlushes;
    this.savedHook = null;
    const splits = p2m.stats.superpageSplits - this.savedSplits;
    if (splits > 0) {
      this.mmuStats.superpageSplits += splits;
      this.controlCycles += splits * this.domain.costs.superpageSplit;
    }
  }
}
