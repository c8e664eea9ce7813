/**
 * kvm-ring: KVM's per-vCPU dirty ring (KVM_CAP_DIRTY_LOG_RING), on EPT write
 * protection (kvm-tdp-mmu.ts), with QEMU as the VMM that reaps it. One memslot
 * covers guest memory with KVM_MEM_LOG_DIRTY_PAGES; with the ring there is no
 * bitmap in KVM.
 *
 * ```
 *   enable     write-protect every present SPTE, one TLB flush
 *   fault      push (slot 0, gfn) on the faulting vCPU's ring, SPTE writable;
 *              ring soft-full ⇒ before re-entry the vCPU exits to the VMM with
 *              dirty_ring_full (KVM_EXIT_DIRTY_RING_FULL), and the VMM's vCPU
 *              thread reaps every ring into its pending set and issues
 *              KVM_RESET_DIRTY_RINGS (QEMU kvm_dirty_ring_reap), then KVM_RUN
 *              again — all charged to that vCPU; the faulting write re-executes
 *              against its re-protected page and is logged once more
 *   harvest    reap every ring's DIRTY entries into the pending set, report and
 *              empty it, KVM_RESET_DIRTY_RINGS (re-protect the reaped pages)
 *   peek       reap into the pending set and report it, no reset
 *   disable    reap (discarded) and reset; SPTEs still protected go writable on
 *              their next write, unlogged
 * ```
 * No entry is lost: the reaper runs on every soft-full exit, so a ring never
 * reaches hard-full (KVM_DIRTY_RING_RSVD_ENTRIES of slack; one push per exit).
 *
 * `dirtyCount` = distinct pages in the pending set: a page written by several
 * vCPUs, or reaped at a ring-full exit and written again, counts once.
 *
 * Ring size: ModeOptions.ringEntries, default 4096 (QEMU's `-accel
 * kvm,dirty-ring-size=N` has no default but 0 = off; its documentation
 * suggests 4096 as a starting value). Reserved entries: 64 (no PML: the MMU
 * write-protects, kvm_cpu_dirty_log_size() = 0), so soft_limit = size − 64.
 * Bytes: 16 per entry per vCPU (struct kvm_dirty_gfn); the VMM's pending set
 * is not counted.
 */
import type { Domain } from '../domain/domain.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import { KvmDirtyRing, resetDirtyRings } from '../logdirty/kvm-dirty-ring.ts';
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
    super(domain, 'kvm-ring');
    const entries = opts.ringEntries ?? KVM_RING_DEFAULT_ENTRIES;
    try {
      this.rings = domain.vcpus.map((v) => new KvmDirtyRing({ sizeEntries: entries, vcpu: v.id }, this));
    } catch (e) {
      if (e instanceof RangeError) throw new DirtyModeError(`kvm-ring: ${e.message}`);
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
    this.protectSlot(KVM_LOG_SLOT);
    this.flushTlbs(KVM_LOG_SLOT);
    this.armNewFrames();
    this.logging = true;
  }

  peek(bitmap: Uint32Array | null): HarvestResult {
    this.requireLogging('peek');
    this.checkBitmap('peek', bitmap);
    this.reapAll();
    if (bitmap !== null) this.copyOut(bitmap);
    return { dirtyCount: this.pending.size, faultCount: 0 };
  }

  harvest(bitmap: Uint32Array | null): HarvestResult {
    this.requireLogging('harvest');
    this.checkBitmap('harvest', bitmap);
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
    this.disarmNewFrames();
  }

  /** The rings exist from vCPU creation (the capability is enabled on the VM before any vCPU). */
  trackingBytes(): number {
    return this.rings.length * this.ringEntries * KVM_DIRTY_GFN_BYTES;
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
