/**
 * kvm-ring: KVM's per-vCPU dirty ring (KVM_CAP_DIRTY_LOG_RING), on the TDP
 * MMU (kvm-tdp-mmu.ts: PML by default, or write protection), with QEMU as the
 * VMM that reaps it. One memslot covers guest memory with
 * KVM_MEM_LOG_DIRTY_PAGES; with the ring there is no bitmap in KVM.
 *
 * ```
 *   enable     PML on and every 4K SPTE's D cleared (without PML: every SPTE
 *              write-protected), one TLB flush
 *   write      PML: the CPU logs the gpa; at the vCPU's next exit the buffer is
 *              flushed, one push per entry on that vCPU's ring
 *   fault      (no PML, populate, huge SPTE) push (slot 0, gfn) on the faulting
 *              vCPU's ring, SPTE writable;
 *   either     ring soft-full ⇒ before re-entry the vCPU exits to the VMM with
 *              dirty_ring_full (KVM_EXIT_DIRTY_RING_FULL), and the VMM's vCPU
 *              thread reaps every ring into its pending set and issues
 *              KVM_RESET_DIRTY_RINGS (QEMU kvm_dirty_ring_reap), then KVM_RUN
 *              again — all charged to that vCPU; the faulting write re-executes
 *              against its re-protected page and is logged once more
 *   harvest    QEMU's kvm_dirty_ring_flush: kick every vCPU out to the VMM
 *              (kvm_cpu_synchronize_kick_all; each exit flushes its PML buffer
 *              into its ring), reap every ring's DIRTY entries into the pending
 *              set, report and empty it, KVM_RESET_DIRTY_RINGS (re-protect the
 *              reaped pages: clear D with PML, write-protect without)
 *   peek       kick, reap into the pending set and report it, no reset
 *   disable    reap (discarded) and reset; SPTEs still protected go writable on
 *              their next write, unlogged
 * ```
 * No entry is lost: the reaper runs on every soft-full exit, so a ring never
 * reaches hard-full: KVM reserves KVM_DIRTY_RING_RSVD_ENTRIES (64) plus, with
 * PML, the 512 entries one buffer flush can push in a single exit
 * (kvm_cpu_dirty_log_size), and checks the soft limit before every re-entry.
 * The ring-full reaper (QEMU's vCPU thread) reaps without kicking the other
 * vCPUs: entries still in their PML buffers wait for their next exit.
 *
 * `dirtyCount` = distinct pages in the pending set: a page written by several
 * vCPUs, or reaped at a ring-full exit and written again, counts once.
 *
 * Ring size: ModeOptions.ringEntries, default 4096 (QEMU's `-accel
 * kvm,dirty-ring-size=N` has no default but 0 = off; its documentation
 * suggests 4096 as a starting value). Reserved entries: 64 + 512 with PML
 * (so the smallest ring KVM accepts is 1024 entries), 64 without; soft_limit
 * = size − reserved. Bytes: 16 per entry per vCPU (struct kvm_dirty_gfn),
 * plus the PML pages; the VMM's pending set is not counted.
 */
import type { Domain } from '../domain/domain.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import { KVM_PML_DIRTY_LOG_SIZE, KvmDirtyRing, resetDirtyRings } from '../logdirty/kvm-dirty-ring.ts';
import { ExitReason } from '../vm-exit.ts';
import type { HarvestResult, ModeFactory, ModeOptions } from './dirty-mode.ts';
import { DirtyModeError } from './hap-log-dirty.ts';
import { KVM_LOG_SLOT, KvmTdpMode } from './kvm-tdp-mmu.ts';

/** Entries per vCPU ring when none is given (QEMU's suggested dirty-ring-size). */
export const KVM_RING_DEFAULT_ENTRIES = 4096;
/** sizeof(struct kvm_dirty_gfn). */
export const KVM_DIRTY_GFN_BYTES = 16;

export interface KvmRingStats {
  /** dirty_ring_full exits (all vCPUs). */
  ringFullExits: number;
  /** Entries the VMM reaped. */
  entriesReaped: number;
  /** KVM_RESET_DIRTY_RINGS ioctls. */
  resetIoctls: number;
  /** Entries reset (pages re-protected). */
  entriesReset: number;
}

export class KvmRingMode extends KvmTdpMode {
  /** One ring per vCPU, indexed by vCPU id. */
  readonly rings: readonly KvmDirtyRing[];
  readonly ringEntries: number;
  readonly reportsAllOnFirstHarvest = false;
  readonly kvmStats: KvmRingStats = { ringFullExits: 0, entriesReaped: 0, resetIoctls: 0, entriesReset: 0 };
  /** The VMM's set of reaped dirty gfns not yet reported by a harvest. */
  private readonly pending = new Set<number>();
  private readonly reapVisit: (slot: number, offset: number) => void;

  constructor(domain: Domain, opts: ModeOptions = {}) {
    super(domain, 'kvm-ring', opts);
    const entries = opts.ringEntries ?? KVM_RING_DEFAULT_ENTRIES;
    const cpuDirtyLogSize = this.pml ? KVM_PML_DIRTY_LOG_SIZE : 0;
    try {
      this.rings = domain.vcpus.map((v) => new KvmDirtyRing({ sizeEntries: entries, vcpu: v.id, cpuDirtyLogSize }, this));
    } catch (e) {
      if (e instanceof RangeError) throw new DirtyModeError(`kvm-ring: ${e.message}${this.pml ? ' with PML (without it, 64)' : ''}`);
      throw e;
    }
    this.ringEntries = entries;
    this.reapVisit = (slot, offset) => {
      if (slot === KVM_LOG_SLOT && offset < this.npages) this.pending.add(offset);
    };
  }

  /** DirtyMode.writesLogged: entries pushed onto the rings (free-running dirty indices), less the guest OS model's. */
  override get writesLogged(): number {
    let pushed = 0;
    for (const ring of this.rings) pushed += ring.dirtyIndex;
    return pushed - this.softwareViewLogs;
  }

  // ---------------------------------------------------------------- exit side

  protected logWrite(vcpu: Vcpu, gfn: number): void {
    this.rings[vcpu.id]!.push(KVM_LOG_SLOT, gfn); // RingPush.SoftFull raises the request beforeReentry checks
    vcpu.chargeCycles(vcpu.domain.costs.kvmRingPush);
  }

  /** kvm_dirty_ring_check_request before VM entry: a soft-full ring exits to the VMM, which reaps and resets. */
  protected override beforeReentry(vcpu: Vcpu): void {
    const ring = this.rings[vcpu.id]!;
    if (!ring.checkRequest()) return;
    vcpu.exits[ExitReason.DirtyRingFull]!++;
    this.kvmStats.ringFullExits++;
    const costs = vcpu.domain.costs;
    // The VMM's vCPU thread does the reaping and the reset: the guest waits, so the vCPU pays.
    const c0 = this.controlCycles;
    this.reapAll();
    this.resetAll();
    const work = this.controlCycles - c0;
    this.controlCycles = c0;
    vcpu.chargeCycles(costs.kvmUserspaceExit + work);
    ring.checkRequest(); // no longer soft-full: the request is dropped
  }

  // ---------------------------------------------------------------- toolstack side

  enable(): void {
    if (this.logging) throw new DirtyModeError(`${this.name}: dirty logging is already enabled on domain ${this.domain.id}`);
    this.controlCycles += this.domain.costs.kvmIoctl; // KVM_SET_USER_MEMORY_REGION with KVM_MEM_LOG_DIRTY_PAGES
    this.startCpuDirtyLogging();
    this.protectSlot(KVM_LOG_SLOT);
    this.flushTlbs(KVM_LOG_SLOT);
    this.armNewFrames();
    this.logging = true;
  }

  peek(bitmap: Uint32Array | null): HarvestResult {
    this.requireLogging('peek');
    this.checkBitmap('peek', bitmap);
    this.flushHardwareBuffers();
    this.reapAll();
    if (bitmap !== null) this.copyOut(bitmap);
    return { dirtyCount: this.pending.size, faultCount: 0 };
  }

  harvest(bitmap: Uint32Array | null): HarvestResult {
    this.requireLogging('harvest');
    this.checkBitmap('harvest', bitmap);
    this.flushHardwareBuffers();
    this.reapAll();
    const dirtyCount = this.pending.size;
    if (bitmap !== null) this.copyOut(bitmap);
    this.pending.clear();
    this.resetAll();
    return { dirtyCount, faultCount: 0 };
  }

  disable(): void {
    this.requireLogging('disable');
    this.reapAll();
    this.pending.clear();
    this.resetAll();
    this.controlCycles += this.domain.costs.kvmIoctl;
    this.logging = false;
    this.stopCpuDirtyLogging();
    this.disarmNewFrames();
  }

  /** The rings (and PML pages) exist from vCPU creation (the capability is enabled on the VM before any vCPU). */
  trackingBytes(): number {
    return this.rings.length * this.ringEntries * KVM_DIRTY_GFN_BYTES + this.pmlBytes();
  }

  /**
   * QEMU's kvm_dirty_ring_flush, first half: kvm_cpu_synchronize_kick_all
   * makes every vCPU return to QEMU once (run_on_cpu), PML or not; with PML
   * each exit flushes that vCPU's buffer into its ring. Each vCPU pays an
   * exit and a trip to userspace.
   */
  private flushHardwareBuffers(): void {
    this.kickAllVcpus(this.domain.costs.kvmUserspaceExit);
  }

  /** Pushes refused on a hard-full ring, over all rings (lost writes: stays 0, see the header). */
  get droppedPushes(): number {
    let n = 0;
    for (const r of this.rings) n += r.droppedPushes;
    return n;
  }

  /** Entries pushed and not yet reset, over all rings. */
  get ringsUsed(): number {
    let n = 0;
    for (const r of this.rings) n += r.used;
    return n;
  }

  /** The VMM's reaper: every ring's DIRTY entries into the pending set (marked RESET in the ring). */
  private reapAll(): number {
    let n = 0;
    for (const ring of this.rings) n += ring.harvest(this.reapVisit);
    this.kvmStats.entriesReaped += n;
    this.controlCycles += n * this.domain.costs.kvmRingReapPerEntry;
    return n;
  }

  /** KVM_RESET_DIRTY_RINGS: re-protect every reaped entry's page, one TLB flush. */
  private resetAll(): void {
    this.kvmStats.resetIoctls++;
    this.controlCycles += this.domain.costs.kvmIoctl;
    this.kvmStats.entriesReset += resetDirtyRings(this.rings, this);
  }

  private copyOut(bitmap: Uint32Array): void {
    bitmap.fill(0, 0, Math.ceil(this.npages / 32));
    for (const gfn of this.pending) bitmap[gfn >>> 5] = bitmap[gfn >>> 5]! | (1 << (gfn & 31));
  }
}

export const createKvmRing: ModeFactory = (domain, opts) => {
  const mode = new KvmRingMode(domain, opts);
  domain.setPagingMode(mode);
  return mode;
};
