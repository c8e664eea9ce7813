/**
 * Xen HAP log-dirty, shared by every hardware-assisted mode (ept-wp, npt-wp,
 * ept-pml, arm-wp): the exit side extends DefaultPagingMode (recalc, PML-full
 * drain, populate, write fault on ram_logdirty → mark + change_type_one), the
 * toolstack side is Xen's LogDirty (paging.c) driving the HAP mechanism below
 * (hap.c hap_enable_log_dirty / hap_disable_log_dirty / hap_clean_dirty_bitmap).
 *
 * ```
 *   ENABLE  pause ─► [PML on] ─► global ram_rw → ram_logdirty (lazy: root marks) + TLB flush ─► unpause
 *   PEEK    pause ─► flush hardware/software-cached dirty gfns ─► copy trie ─► unpause
 *   CLEAN   pause ─► flush cached ─► copy + clear trie ─► global rw → logdirty (lazy) ─► unpause
 *   OFF     pause ─► [flush PML, PML off] ─► global logdirty → rw ─► free trie ─► unpause
 *   write fault on ram_logdirty: mark gfn, logdirty → rw at 4K (a superpage splits; the
 *   511 siblings stay logdirty), retry
 * ```
 * The global change only marks present top-level entries (≤ 512), so ENABLE and
 * CLEAN cost the same whatever the guest size; the vCPUs pay for the rewrite on
 * their next accesses, and the two x86 p2m implementations pay differently:
 *  - EPT (p2m-ept.c resolve_misconfig): one EPT misconfig per leaf table touched,
 *    recomputing all 512 entries;
 *  - NPT (p2m-pt.c do_recalc, from svm.c VMEXIT_NPF → p2m_pt_handle_deferred_changes):
 *    one #NPF per 4 KiB page touched — reads and fetches too — recomputing only that
 *    entry; a write to a page that is then ram_logdirty faults a second time, as a
 *    log-dirty write (a 2 MiB / 1 GiB leaf is recomputed whole when its range is
 *    uniform, as do_recalc does).
 * arm-wp replaces the three mechanism steps (startTracking / rearmTracking /
 * stopTracking) with the ARM dirty-tracing series' eager ones (arm-wp.ts).
 *
 * Costs: exit-side work is charged to the vCPU that took the exit (paging-mode.ts);
 * control-side work (pause/unpause, trie walk per leaf slot, recalc marks, PML and
 * list flushes under PEEK/CLEAN/OFF) is summed in `controlCycles` (cost-model.ts).
 *
 * Invariant: no write is lost. Every write either faults (and is marked before the
 * page becomes rw), is logged by PML (flushed under pause before any read), or
 * sits in the ARM list (copied into the trie under pause before any read).
 */
import type { Domain } from '../domain/domain.ts';
import { DefaultPagingMode } from '../domain/paging-mode.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import { PFNS_PER_L3_SLOT, PFNS_PER_L4_SLOT, PFNS_PER_LEAF } from '../logdirty/dirty-trie.ts';
import { LogDirty, SHADOW_LOGDIRTY_FINAL, type LogDirtyMechanism, type PausableDomain, type ShadowOpResult } from '../logdirty/log-dirty.ts';
import type { ExitAction, ExitInfo } from '../mmu/exit-info.ts';
import type { P2mFormatName } from '../p2m/p2m-format.ts';
import { P2mType } from '../p2m/p2m-type.ts';
import { ENTRIES_PER_TABLE, PAGE_SIZE } from '../units.ts';
import { pmlEntriesLogged, type DirtyMode, type HarvestResult, type ModeName, type ModeOptions } from './dirty-mode.ts';

/** A toolstack operation refused (wrong state, wrong format, Xen errno): user-facing. */
export class DirtyModeError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'DirtyModeError';
  }
}

/** domain_pause / domain_unpause that also count their cost in the mode's control cycles. */
class ChargedPause implements PausableDomain {
  constructor(private readonly domain: Domain, private readonly mode: HapLogDirtyMode) {}
  pause(): void {
    this.mode.controlCycles += this.domain.costs.domainPause;
    this.domain.pause();
  }
  unpause(): void {
    this.mode.controlCycles += this.domain.costs.domainUnpause;
    this.domain.unpause();
  }
  get pauseCount(): number {
    return this.domain.pauseCount;
  }
}

/**
 * The exits a HAP mode handled, by what they were for (on NPT and ARM every kind
 * shares one exit reason, so the reason alone cannot tell them apart). Plain
 * counters since the mode was made; sample and subtract per round.
 */
export interface HapFaultCounts {
  /** Write faults on ram_logdirty that recorded the page: log-dirty write faults, one per page first written in a window. */
  logDirtyWrites: number;
  /** Recalc exits: EPT misconfig, NPT #NPF on a U/S-cleared entry (do_recalc), ARM fault on an invalidated entry. */
  recalcs: number;
  /** Faults on a frame not populated yet, populated on demand (not log-dirty work). */
  populates: number;
}

export class HapLogDirtyMode extends DefaultPagingMode implements DirtyMode {
  override readonly name: ModeName;
  readonly format: P2mFormatName;
  /** Xen's per-domain log-dirty state: trie, counters, toolstack ops. */
  readonly logDirty: LogDirty;
  /** Xen's log_dirty.ops for HAP, plus the PML flush hook (called by LogDirty, domain paused). */
  readonly mechanism: LogDirtyMechanism;
  controlCycles = 0;
  /** Whether ENABLE turns Intel PML on (ept-pml). */
  protected readonly usesPml: boolean = false;
  /** Exits handled, by kind (see HapFaultCounts). */
  readonly faults: HapFaultCounts = { logDirtyWrites: 0, recalcs: 0, populates: 0 };
  /** Per-entry callback for PmlUnit.drain under PEEK/CLEAN/OFF (made once: no closure per flush). */
  private readonly drainMark: (gfn: number) => void;
  /** Whether the PEEK/CLEAN under way is a CLEAN (read by flushSoftwareCached, domain paused). */
  private cleaning = false;
  /** PML entries logged before this mode was made (the vCPUs' counters are per MMU). */
  private readonly pmlBase: number;

  constructor(readonly domain: Domain, name: ModeName, format: P2mFormatName, readonly options: ModeOptions = {}) {
    super();
    if (domain.format.name !== format) {
      throw new DirtyModeError(`mode ${name} needs a ${format} p2m, but domain ${domain.id} uses ${domain.format.name}`);
    }
    this.name = name;
    this.format = format;
    this.logDirty = new LogDirty({ domain: new ChargedPause(domain, this), domId: domain.id === 0 ? 1 : domain.id });
    this.mechanism = {
      enable: () => this.hapEnable(),
      disable: () => this.hapDisable(),
      clean: () => this.hapClean(),
      flushHardwareCached: () => this.flushCached(),
    };
    this.logDirty.bindMechanism(this.mechanism);
    this.pmlBase = pmlEntriesLogged(domain);
    const p2m = domain.p2m;
    this.drainMark = (gfn: number) => {
      p2m.changeTypeOne(gfn, P2mType.RamLogdirty, P2mType.RamRw);
      this.markDirty(gfn);
    };
  }

  attach(domain: Domain): void {
    if (domain !== this.domain) throw new DirtyModeError(`mode ${this.name} was made for domain ${this.domain.id}, not ${domain.id}`);
  }

  // ---------------------------------------------------------------- exit side

  override onDirty(_vcpu: Vcpu, gfn: number): void {
    this.markDirty(gfn);
  }

  markGuestWrite(vcpu: Vcpu, gfn: number): void {
    if (!this.enabled) return;
    this.markDirty(gfn);
    vcpu.chargeCycles(this.faultMarkCost());
  }

  /** Records gfn as dirty (Xen paging_mark_pfn_dirty); the ARM list variant overrides it. */
  protected markDirty(gfn: number): void {
    this.logDirty.markPfnDirty(gfn);
  }

  /** Cycles of recording one dirty gfn at fault time. */
  protected faultMarkCost(): number {
    return this.domain.costs.logdirtyMark;
  }

  override handleRecalc(vcpu: Vcpu, exit: ExitInfo): ExitAction {
    this.faults.recalcs++;
    return super.handleRecalc(vcpu, exit);
  }

  override handleViolation(vcpu: Vcpu, exit: ExitInfo): ExitAction {
    const frames = vcpu.domain.memory.populatedFrames;
    const action = super.handleViolation(vcpu, exit);
    if (vcpu.domain.memory.populatedFrames !== frames) this.faults.populates++;
    return action;
  }

  override logDirtyWrite(vcpu: Vcpu, gfn: number, order: number): ExitAction {
    const costs = vcpu.domain.costs;
    this.faults.logDirtyWrites++;
    this.onDirty(vcpu, gfn);
    vcpu.domain.p2m.changeTypeOne(gfn, P2mType.RamLogdirty, P2mType.RamRw);
    vcpu.chargeCycles(costs.writeFaultHandling + this.faultMarkCost() + (order > 0 ? costs.superpageSplit : 0));
    return 'retry';
  }

  // ---------------------------------------------------------------- toolstack side (DirtyMode)

  get enabled(): boolean {
    return this.logDirty.isEnabled;
  }

  /** Write faults that marked a page (faults.logDirtyWrites), plus PML entries logged (DirtyMode.writesLogged). */
  get writesLogged(): number {
    return this.faults.logDirtyWrites + pmlEntriesLogged(this.domain) - this.pmlBase;
  }

  enable(): void {
    check(this.logDirty.enableLogDirty(), 'ENABLE_LOGDIRTY', this);
  }

  peek(bitmap: Uint32Array | null): HarvestResult {
    return this.logDirtyOp(false, bitmap);
  }

  harvest(bitmap: Uint32Array | null, final = false): HarvestResult {
    return this.logDirtyOp(true, bitmap, final);
  }

  /** OFF. As in Xen, OFF when log-dirty is already off is accepted (the saver always ends with OFF). */
  disable(): void {
    check(this.logDirty.off(), 'OFF', this);
  }

  trackingBytes(): number {
    let pml = 0;
    for (const v of this.domain.vcpus) if (v.mmu.pml.enabled) pml += PAGE_SIZE;
    return this.logDirty.trie.allocs * PAGE_SIZE + pml + this.extraTrackingBytes();
  }

  /** Bytes of mode-specific tracking state (the ARM list). */
  protected extraTrackingBytes(): number {
    return 0;
  }

  private logDirtyOp(clean: boolean, bitmap: Uint32Array | null, final = false): HarvestResult {
    const op = clean ? 'CLEAN' : 'PEEK';
    if (!this.logDirty.isEnabled) {
      throw new DirtyModeError(`${this.name}: ${op} on domain ${this.domain.id}, but log-dirty is not enabled; ENABLE it first`);
    }
    const pages = this.domain.memory.pageCount;
    if (bitmap !== null && bitmap.length * 32 < pages) {
      throw new DirtyModeError(`${this.name}: ${op} bitmap holds ${bitmap.length * 32} bits, the guest has ${pages} pages`);
    }
    const mode = final ? SHADOW_LOGDIRTY_FINAL : 0;
    this.cleaning = clean;
    let r: ShadowOpResult;
    try {
      r = clean ? this.logDirty.clean(bitmap, pages, mode) : this.logDirty.peek(bitmap, pages, mode);
    } finally {
      this.cleaning = false;
    }
    check(r, op, this);
    this.chargeWalk(pages, bitmap !== null, clean);
    return { dirtyCount: r.stats.dirtyCount, faultCount: r.stats.faultCount };
  }

  /**
   * The PEEK/CLEAN walk visits every leaf slot in [0, pages). With a bitmap
   * each slot is copied (present) or zeroed in the caller's buffer (absent);
   * with a null handle (Xen's "peek = 0") nothing is copied: an absent slot
   * costs one loop step and CLEAN clears each present leaf.
   */
  private chargeWalk(pages: number, copying: boolean, clean: boolean): void {
    const costs = this.domain.costs;
    const slots = Math.ceil(pages / PFNS_PER_LEAF);
    const present = presentLeaves(this.logDirty, pages);
    this.controlCycles += copying
      ? present * costs.logdirtyLeafCopy + (slots - present) * costs.logdirtyLeafZero
      : (clean ? present * costs.logdirtyLeafZero : 0) + (slots - present) * costs.logdirtyLeafSkip;
  }

  // ---------------------------------------------------------------- mechanism (domain paused)

  /** hap_enable_log_dirty: PML on if this mode uses it, then start write tracking. */
  private hapEnable(): void {
    if (this.usesPml) {
      this.domain.enablePml();
      this.controlCycles += this.domain.vcpus.length * this.domain.costs.pmlVcpuToggle;
    }
    this.startTracking();
  }

  /** hap_disable_log_dirty: flush and turn off PML, then stop write tracking. */
  private hapDisable(): void {
    if (this.domain.pmlEnabled) {
      this.flushCached();
      this.domain.disablePml();
      this.controlCycles += this.domain.vcpus.length * this.domain.costs.pmlVcpuToggle;
    }
    this.dropSoftwareCached();
    this.stopTracking();
  }

  /** hap_clean_dirty_bitmap: re-arm write tracking. */
  private hapClean(): void {
    this.rearmTracking();
  }

  /** ENABLE's write protection: Xen HAP's lazy global rw → logdirty + TLB flush. */
  protected startTracking(): void {
    this.globalChange(P2mType.RamRw, P2mType.RamLogdirty);
  }

  /** CLEAN's re-arm (trie already read and cleared): the lazy global rw → logdirty, cost independent of guest size. */
  protected rearmTracking(): void {
    this.globalChange(P2mType.RamRw, P2mType.RamLogdirty);
  }

  /** OFF: the lazy global logdirty → rw. */
  protected stopTracking(): void {
    this.globalChange(P2mType.RamLogdirty, P2mType.RamRw);
  }

  /** p2m_flush_hardware_cached_dirty: every vCPU's PML log into the trie, then software-cached marks. */
  private flushCached(): void {
    const costs = this.domain.costs;
    for (const v of this.domain.vcpus) {
      const n = v.mmu.pml.drain(this.drainMark);
      this.controlCycles += n * costs.pmlFlushPerEntry;
    }
    this.flushSoftwareCached(this.cleaning);
  }

  /**
   * Marks recorded outside the trie (the ARM list) go into it; called under
   * pause before the trie is read. `clean`: the read is a CLEAN's (the trie is
   * cleared next, then rearmTracking runs).
   */
  protected flushSoftwareCached(_clean: boolean): void {}

  /** Forgets marks recorded outside the trie (OFF). */
  protected dropSoftwareCached(): void {}

  /** p2m_change_entry_type_global (marks only the root's entries), charging its fixed part and one mark per entry. */
  private globalChange(ot: P2mType, nt: P2mType): void {
    const p2m = this.domain.p2m;
    const fmt = p2m.fmt;
    const w = p2m.pool.wordsOf(p2m.rootMfn);
    const base = p2m.pool.wordOffset(p2m.rootMfn);
    let marks = 0;
    for (let k = 0; k < ENTRIES_PER_TABLE; k++) {
      const lo = w[base + 2 * k]!;
      const hi = w[base + 2 * k + 1]!;
      if ((lo | hi) !== 0 && fmt.canMark(lo, hi) && !fmt.isRecalc(lo, hi)) marks++;
    }
    p2m.changeTypeGlobal(ot, nt);
    const costs = this.domain.costs;
    this.controlCycles += costs.globalTypeChange + marks * costs.recalcMarkPerEntry;
  }
}

function check(r: ShadowOpResult, op: string, mode: HapLogDirtyMode): asserts r is ShadowOpResult & { ok: true } {
  if (!r.ok) throw new DirtyModeError(`${mode.name}: ${op} on domain ${mode.domain.id} failed (${r.errno}): ${r.message}`);
}

/** Trie leaves present below pfn `end` (control plane: walks interior slots only). */
export function presentLeaves(ld: LogDirty, end: number): number {
  const top = ld.trie.top;
  if (top === null) return 0;
  let n = 0;
  for (let i4 = 0; i4 * PFNS_PER_L4_SLOT < end && i4 < top.slots.length; i4++) {
    const l3 = top.slots[i4];
    if (l3 == null) continue;
    for (let i3 = 0; i3 < l3.slots.length; i3++) {
      const base3 = i4 * PFNS_PER_L4_SLOT + i3 * PFNS_PER_L3_SLOT;
      if (base3 >= end) break;
      const l2 = l3.slots[i3];
      if (l2 == null) continue;
      for (let i2 = 0; i2 < l2.slots.length; i2++) {
        if (base3 + i2 * PFNS_PER_LEAF >= end) break;
        if (l2.slots[i2] != null) n++;
      }
    }
  }
  return n;
}
