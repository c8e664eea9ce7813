/**
 * `shadow`: Xen shadow paging as a DirtyMode (xen/arch/x86/mm/shadow/*.c).
 * The CPU walks shadow tables (Mmu shadowMode); every shadow miss or missing
 * right is a `shadow_pf` exit handled by sh_page_fault (shadow/shadow-paging.ts);
 * log-dirty is Xen's LogDirty (paging.c) with the shadow mechanism:
 *
 * ```
 *   ENABLE  pause ─► shadow_blow_tables ─► PG_log_dirty on ─► unpause
 *   CLEAN   pause ─► copy + clear trie, fault_count = dirty_count = 0 ─► shadow_blow_tables ─► unpause
 *   fault   read of a clean page ⇒ mapped read-only; write ⇒ paging_mark_dirty + RW; fault_count++
 * ```
 *
 * p2m format: `npt`. In shadow mode Xen's p2m is its own software table
 * (p2m-pt.c: x86-64 long-mode entries, the same format AMD's nested paging
 * walks), read by the shadow code and never loaded into the CPU. So the
 * domain's p2m is an NPT-format table that no hardware walker ever visits.
 *
 * Addressing: `paged` (the guest OS model's tables are shadowed, written
 * tables are write-protected, writes emulated or out of sync) or `identity`
 * (guest paging off: Xen's unpaged identity map, shadow-paging.ts header).
 *
 * The guest OS model writes its tables through the software view; createGuest
 * routes those writes here (beforeGuestWrite / afterGuestWrite), where they
 * are what they would be on hardware: a write to an in-sync L1 page table
 * faults and unsyncs it (snapshot taken before the write), a write to any
 * other in-sync page table traps and is emulated (shadows updated), a write
 * to an OOS page or to a frame that is not a page table goes straight in.
 * Each trapped write counts as a `shadow_pf` exit of the writing vCPU.
 */
import type { Domain } from '../domain/domain.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import { PFNS_PER_LEAF } from '../logdirty/dirty-trie.ts';
import { LogDirty, SHADOW_LOGDIRTY_FINAL, type PausableDomain, type ShadowOpResult } from '../logdirty/log-dirty.ts';
import type { ExitAction, ExitInfo } from '../mmu/exit-info.ts';
import { STAT_GUEST_PF } from '../mmu/mmu-stats.ts';
import { ShadowPaging, ShadowPoolExhaustedError, ShadowUnsupportedError } from '../shadow/shadow-paging.ts';
import { libxlDefaultShadowPages, shMinAllocation, type ShadowPoolKind } from '../shadow/shadow-pool.ts';
import { PAGE_SIZE } from '../units.ts';
import { ExitReason } from '../vm-exit.ts';
import type { DirtyMode, HarvestResult, ModeOptions } from './dirty-mode.ts';
import { DirtyModeError } from './hap-log-dirty.ts';

export class ShadowMode implements DirtyMode {
  readonly name = 'shadow' as const;
  readonly format = 'npt' as const;
  readonly logDirty: LogDirty;
  readonly shadow: ShadowPaging;
  controlCycles = 0;
  private readonly cr3Hooks: ((gpa: number) => void)[];

  constructor(readonly domain: Domain, readonly options: ModeOptions = {}) {
    if (domain.format.name !== 'npt') {
      throw new DirtyModeError(`mode shadow needs an npt-format p2m (Xen's software p2m), but domain ${domain.id} uses ${domain.format.name}`);
    }
    const pause: PausableDomain = {
      pause: () => {
        this.controlCycles += domain.costs.domainPause;
        domain.pause();
      },
      unpause: () => {
        this.controlCycles += domain.costs.domainUnpause;
        domain.unpause();
      },
      get pauseCount() {
        return domain.pauseCount;
      },
    };
    this.logDirty = new LogDirty({ domain: pause, domId: domain.id === 0 ? 1 : domain.id });
    this.logDirty.bindMechanism({
      enable: () => this.blow(),
      disable: () => {},
      clean: () => this.blow(),
      flushHardwareCached: () => {},
    });
    const kind: ShadowPoolKind = options.shadowPool ?? 'xen';
    const vcpus = domain.vcpus.length;
    const want = options.shadowPoolPages ?? libxlDefaultShadowPages(vcpus, domain.memory.pageCount * PAGE_SIZE);
    // Xen raises any allocation to sh_min_allocation; the preallocated pool takes what it is given (at least one path).
    const poolPages = kind === 'xen'
      ? Math.max(want, shMinAllocation(vcpus, domain.memory.populatedFrames, domain.p2m.tableFrames))
      : Math.max(want, 4 + vcpus);
    this.shadow = new ShadowPaging(domain, { pool: kind, poolPages, logDirty: this.logDirty });
    this.cr3Hooks = domain.vcpus.map((v) => (gpa: number) => this.onCr3(v, gpa));
  }

  attach(domain: Domain): void {
    if (domain !== this.domain) throw new DirtyModeError(`mode shadow was made for domain ${this.domain.id}, not ${domain.id}`);
    for (const v of domain.vcpus) {
      v.mmu.shadowMode = true;
      v.mmu.onCr3Load = this.cr3Hooks[v.id]!;
      v.mmu.flush();
      if (this.shadow.unpaged) this.onCr3(v, 0);
    }
  }

  detach(domain: Domain): void {
    this.shadow.teardown();
    this.shadow.takeCycles();
    for (const v of domain.vcpus) {
      v.mmu.shadowMode = false;
      v.mmu.shadowRootMfn = 0;
      v.mmu.onCr3Load = null;
      v.mmu.flush();
    }
  }

  private onCr3(v: Vcpu, gpa: number): void {
    try {
      this.shadow.updateCr3(v, gpa);
    } catch (e) {
      this.crashOn(v, e);
      return;
    }
    v.chargeCycles(this.shadow.takeCycles());
  }

  // ---------------------------------------------------------------- exits

  handleExit(vcpu: Vcpu, exit: ExitInfo): ExitAction {
    if (exit.reason !== ExitReason.ShadowPf) return 'crash';
    let outcome: 'fixed' | 'guest' | 'skip' | 'access';
    try {
      outcome = this.shadow.fault(vcpu, exit.gva, exit.access);
    } catch (e) {
      this.crashOn(vcpu, e);
      return 'crash';
    }
    vcpu.chargeCycles(this.shadow.takeCycles());
    // 'access': mem_access took the fault (memaccess/mem-access-layer.ts says what the vCPU does next).
    if (outcome === 'fixed' || outcome === 'access') return 'retry';
    if (outcome === 'skip') return 'skip';
    // Reflect the #PF to the guest's own handler.
    vcpu.stats[STAT_GUEST_PF]!++;
    vcpu.chargeCycles(this.domain.costs.guestPageFault);
    const h = vcpu.guestFaultHandler;
    return h === null ? 'skip' : h.handleGuestFault(vcpu, exit.gva, this.shadow.guestErrorCode);
  }

  /** A pool exhaustion or an unmodelled guest mapping crashes the domain (Xen's domain_crash); anything else is a bug. */
  private crashOn(vcpu: Vcpu, e: unknown): void {
    if (!(e instanceof ShadowPoolExhaustedError || e instanceof ShadowUnsupportedError)) throw e;
    vcpu.chargeCycles(this.shadow.takeCycles());
    this.domain.crash(`vCPU ${vcpu.id}: ${e.message}`);
  }

  /** A write by the guest OS model is about to land at gpa (see the header). */
  beforeGuestWrite(vcpu: Vcpu | null, gpa: number): void {
    if (vcpu === null) return;
    let trapped: boolean;
    try {
      trapped = this.shadow.beforeGuestWrite(vcpu, gpa);
    } catch (e) {
      this.crashOn(vcpu, e);
      return;
    }
    if (trapped) this.chargeTrap(vcpu);
  }

  /** The guest OS model wrote [gpa, gpa + sizeBytes). */
  afterGuestWrite(vcpu: Vcpu | null, gpa: number, sizeBytes: number): void {
    const trapped = this.shadow.afterGuestWrite(gpa, sizeBytes);
    if (trapped && vcpu !== null) this.chargeTrap(vcpu);
    else this.controlCycles += this.shadow.takeCycles();
  }

  private chargeTrap(vcpu: Vcpu): void {
    vcpu.exits[ExitReason.ShadowPf]!++;
    vcpu.chargeCycles(this.domain.costs.vmexitRoundTripX86 + this.shadow.takeCycles());
  }

  markGuestWrite(vcpu: Vcpu, gfn: number): void {
    if (!this.enabled) return;
    this.logDirty.markPfnDirty(gfn);
    vcpu.chargeCycles(this.domain.costs.logdirtyMark);
  }

  // ---------------------------------------------------------------- toolstack

  get enabled(): boolean {
    return this.logDirty.isEnabled;
  }

  /** Write fetches on the fault path that marked their target (DirtyMode.writesLogged). */
  get writesLogged(): number {
    return this.shadow.stats.writeFaultMarks;
  }

  enable(): void {
    check(this.logDirty.enableLogDirty(), 'ENABLE_LOGDIRTY', this);
  }

  peek(bitmap: Uint32Array | null): HarvestResult {
    return this.op(false, bitmap);
  }

  harvest(bitmap: Uint32Array | null, final = false): HarvestResult {
    return this.op(true, bitmap, final);
  }

  disable(): void {
    check(this.logDirty.off(), 'OFF', this);
  }

  /** Trie pages, shadow pages in use, OOS snapshots and (prealloc) backlink arrays. */
  trackingBytes(): number {
    const s = this.shadow;
    return (this.logDirty.trie.allocs + s.usedPages + 3 * this.domain.vcpus.length) * PAGE_SIZE + (s.links?.bytes ?? 0);
  }

  /** shadow_blow_tables, domain paused (ENABLE and CLEAN). */
  private blow(): void {
    this.shadow.blowTables();
    this.controlCycles += this.shadow.takeCycles();
  }

  private op(clean: boolean, bitmap: Uint32Array | null, final = false): HarvestResult {
    const name = clean ? 'CLEAN' : 'PEEK';
    if (!this.enabled) throw new DirtyModeError(`shadow: ${name} on domain ${this.domain.id}, but log-dirty is not enabled; ENABLE it first`);
    const pages = this.domain.memory.pageCount;
    if (bitmap !== null && bitmap.length * 32 < pages) {
      throw new DirtyModeError(`shadow: ${name} bitmap holds ${bitmap.length * 32} bits, the guest has ${pages} pages`);
    }
    const mode = final ? SHADOW_LOGDIRTY_FINAL : 0;
    const r = clean ? this.logDirty.clean(bitmap, pages, mode) : this.logDirty.peek(bitmap, pages, mode);
    check(r, name, this);
    const costs = this.domain.costs;
    const slots = Math.ceil(pages / PFNS_PER_LEAF);
    this.controlCycles += bitmap !== null ? slots * costs.logdirtyLeafCopy : slots * costs.logdirtyLeafSkip;
    return { dirtyCount: r.stats.dirtyCount, faultCount: r.stats.faultCount };
  }
}

function check(r: ShadowOpResult, op: string, mode: ShadowMode): asserts r is ShadowOpResult & { ok: true } {
  if (!r.ok) throw new DirtyModeError(`shadow: ${op} on domain ${mode.domain.id} failed (${r.errno}): ${r.message}`);
}

/** Registry factory: makes the mode and installs it. */
export function createShadow(domain: Domain, opts: ModeOptions): ShadowMode {
  const m = new ShadowMode(domain, opts);
  domain.setPagingMode(m);
  return m;
}
