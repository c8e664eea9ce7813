/**
 * mem_access on the fault path: a PagingMode that wraps whatever paging mode
 * the domain runs (default HAP handling, any log-dirty mode, KVM modes) and
 * runs Xen's access check before it, as hvm_hap_nested_page_fault does
 * (xen/arch/x86/hvm/hvm.c) with p2m_mem_access_check
 * (xen/arch/x86/mm/mem_access.c). It also holds the domain's mem_access and
 * monitor state: access_required, the monitor ring (null when no listener),
 * the per-vCPU vm_event pause counts, HVM_PARAM_MONITOR_RING_PFN.
 *
 * ```
 *  violation exit (EPT violation / NPF / stage-2 abort), no recalc pending, mfn valid
 *    └─ access allows the access (npfec R/W/X vs access)? ── yes ─► inner mode (type handling)
 *       no ─► p2m_mem_access_check
 *             write on rx2rw ─► access rw, retry, no event
 *             n2rwx          ─► access rwx now; the event will be async
 *             no ring        ─► access_required ? domain_crash : access rwx, retry, no event
 *             ring           ─► request {MEM_ACCESS, gfn, offset, gla, R/W/X}
 *                 sync  (≠ n2rwx) ─► monitor_traps: vCPU paused (VCPU_PAUSED) ─► 'pause'
 *                 async (n2rwx)   ─► inner mode handles the fault too (e.g. log-dirty mark),
 *                                    then monitor_traps (maybe throttled) ─► 'retry' / 'pause'
 *  recalc exits, PML-full ─► inner mode unchanged
 *
 *  shadow mode (PV-style guests): no hardware second stage to fault, so the
 *  shadow fault path asks this layer (ShadowAccessGate) for each guest
 *  page-table read and A/D write of its guest walk (FAULT_IN_GPT, as the
 *  hardware walker's under HAP) and for the gfn the access reaches; the
 *  shadows carry the access rights (shadow-paging.ts), so a violating access
 *  always faults there. Same check, same events; n2rwx events go out from
 *  inside the fault, which goes on.
 * ```
 * Access flags in the request are the hardware's (npfec): on VMX a write sets
 * the read bit too (EPT qualification bit 0 with bit 1), on SVM every data
 * access is a read (read_access = !fetch); the violation test uses the same
 * flags, as Xen's does. gla is valid on EPT (qualification bit 7) and ARM, never
 * on NPT (Xen passes ~0).
 *
 * In shadow mode the request's flags are the access the shadow fault needed
 * (R, W or X) and gla is always valid (the faulting linear address). Today's
 * Xen refuses mem_access without HAP; this is the shadow path of the PV
 * mem_access work the brief asks for (shadow rights narrowed by the p2m
 * access, the check in sh_page_fault), not a transcription of Xen source.
 * When an access change narrows a gfn's rights, the shadows mapping it are
 * removed (a large change blows all shadow tables), so no stale right survives.
 *
 * Not modelled: the inguest_pagefault_disabled shortcut, altp2m views and #VE,
 * the "previous reply does not match" emulate reset.
 */
import type { Domain } from '../domain/domain.ts';
import type { PagingMode } from '../domain/paging-mode.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import {
  EPT_QUAL_FETCH, EPT_QUAL_GLA_VALID, EPT_QUAL_READ, EPT_QUAL_WRITE, type ExitAction, type ExitInfo, NPF_ID, NPF_RW,
} from '../mmu/exit-info.ts';
import { P2mLookup } from '../p2m/p2m.ts';
import { Access, P2mType, PERM_R, PERM_W, PERM_X, accessPerms } from '../p2m/p2m-type.ts';
import { ExitReason } from '../vm-exit.ts';
import {
  MEM_ACCESS_FAULT_IN_GPT, MEM_ACCESS_FAULT_WITH_GLA, MEM_ACCESS_GLA_VALID, MEM_ACCESS_R, MEM_ACCESS_W, MEM_ACCESS_X,
  VM_EVENT_REASON_MEM_ACCESS, type VmEvent,
} from './vm-event-abi.ts';
import { VcpuEventState, type VmEventDomain } from './vm-event-domain.ts';
import { GATE_ALLOW, GATE_ASYNC, GATE_STOP, type ShadowAccessGate, type ShadowPaging } from '../shadow/shadow-paging.ts';

/** Outcomes of p2m_mem_access_check (and of "no violation"). */
const CHECK_NO_VIOLATION = 0;
/** Handled without an event (rx2rw promotion, or no listener and access opened): retry. */
const CHECK_HANDLED = 1;
const CHECK_CRASHED = 2;
/** A request was built; the vCPU must pause for it. */
const CHECK_SYNC = 3;
/** A request was built for n2rwx: send it without pausing, after type handling. */
const CHECK_ASYNC = 4;

export interface MemAccessStats {
  /** Faults whose access violated the page's access type. */
  violations: number;
  /** rx2rw pages promoted to rw on a write. */
  rx2rwPromotions: number;
  /** n2rwx pages opened to rwx. */
  n2rwxPromotions: number;
  /** Pages opened to rwx because no listener was attached. */
  openedNoListener: number;
  syncEvents: number;
  asyncEvents: number;
  /** Domains crashed for a violation with access_required and no listener. */
  crashes: number;
}

/** Narrowed gfns beyond this many in one access operation blow every shadow table instead of unmapping each. */
const BLOW_AFTER_NARROWED = 64;

export class MemAccessLayer implements PagingMode, ShadowAccessGate {
  readonly name: string;
  /** p2m->access_required: a violation with no listener crashes the domain. */
  accessRequired = false;
  /** The monitor ring, or null when no listener is attached (d->vm_event_monitor). */
  monitor: VmEventDomain | null = null;
  /** HVM_PARAM_MONITOR_RING_PFN: the toolstack sets it at domain build; 0 refuses monitor enable (-EOPNOTSUPP). */
  monitorRingPfn: number;
  /** The shadow paging of a shadow-mode domain, whose faults come through `check` as a gate (null with HAP). */
  private readonly shadow: ShadowPaging | null;
  /** What stopped the shadow fault being handled (CHECK_NO_VIOLATION: nothing did). */
  private gateOutcome = CHECK_NO_VIOLATION;
  /** The shadow fault being handled sent an async (n2rwx) event. */
  private gateAsync = false;
  /** gfns whose rights narrowed since the last commitAccessChanges (shadow mode). */
  private narrowed: number[] = [];
  readonly vcpuState: VcpuEventState;
  readonly stats: MemAccessStats = {
    violations: 0, rx2rwPromotions: 0, n2rwxPromotions: 0, openedNoListener: 0, syncEvents: 0, asyncEvents: 0, crashes: 0,
  };
  /** Event-channel ports handed out so far (alloc_unbound_xen_event_channel). */
  nextPort = 1;

  private readonly r = new P2mLookup();
  private pending: VmEvent | null = null;

  constructor(readonly domain: Domain, readonly inner: PagingMode) {
    this.name = inner.name;
    this.shadow = inner.name === 'shadow' ? ((inner as { shadow?: ShadowPaging }).shadow ?? null) : null;
    this.vcpuState = new VcpuEventState(domain.vcpus.length);
    // Xen's toolstack reserves the monitor ring among the special pages past RAM.
    this.monitorRingPfn = domain.memory.pageCount;
  }

  /** Wraps the domain's current paging mode and installs the layer in its place. */
  static install(domain: Domain): MemAccessLayer {
    if (domain.pagingMode instanceof MemAccessLayer) return domain.pagingMode;
    const layer = new MemAccessLayer(domain, domain.pagingMode);
    domain.setPagingMode(layer);
    return layer;
  }

  attach(domain: Domain): void {
    this.inner.attach?.(domain);
    if (this.shadow) this.shadow.accessGate = this;
  }

  detach(domain: Domain): void {
    if (this.shadow && this.shadow.accessGate === this) this.shadow.accessGate = null;
    this.inner.detach?.(domain);
  }

  /**
   * Sets gfn's access (p2m_set_mem_access for one gfn at 4K order); true if
   * the gfn was mapped. In shadow mode a narrowing is remembered until
   * `commitAccessChanges`.
   */
  setAccess(gfn: number, access: Access): boolean {
    const p2m = this.domain.p2m;
    const r = this.r;
    const before = this.shadow !== null && p2m.lookup(gfn, r) ? accessPerms(r.access) : 0;
    const ok = p2m.setAccess(gfn, access);
    if (ok && this.shadow !== null && (before & ~accessPerms(access) & 7) !== 0) this.narrowed.push(gfn);
    return ok;
  }

  /** Shadow mode: drops the shadow mappings of every gfn whose rights narrowed (no-op with HAP). */
  commitAccessChanges(): void {
    const sh = this.shadow;
    if (sh === null || this.narrowed.length === 0) return;
    if (this.narrowed.length > BLOW_AFTER_NARROWED) sh.blowTables();
    else for (const gfn of this.narrowed) sh.removeAllMappings(gfn);
    this.narrowed = [];
  }

  /**
   * ShadowAccessGate: the shadow fault of vCPU v touches gfn needing `need`
   * (PERM_R/W/X) — its data page, or (`gptOffset` ≥ 0) a guest page-table
   * entry the guest walk reads or sets A/D in, as the hardware walker would
   * under HAP. An x86 PTE cannot map a page present but unreadable, so in
   * shadow mode access types without R (x, w, wx) forbid everything: any
   * access is a violation the listener hears about.
   */
  check(v: Vcpu, gfn: number, gva: number, need: number, gptOffset = -1): number {
    const r = this.r;
    if (!this.domain.p2m.lookup(gfn, r) || !mfnValid(r.type)) return GATE_ALLOW;
    const inGpt = gptOffset >= 0;
    const c = this.accessCheck(v, gfn, inGpt ? gptOffset : gva & 0xfff, need, gva, inGpt, x86Rights(r.access));
    if (c === CHECK_NO_VIOLATION) return GATE_ALLOW;
    if (c === CHECK_ASYNC) {
      // n2rwx: the page is open now; the event goes out without stopping the fault.
      this.stats.asyncEvents++;
      this.monitor!.trap(v, false, this.pending!);
      this.pending = null;
      this.gateAsync = true;
      return GATE_ASYNC;
    }
    this.gateOutcome = c;
    return GATE_STOP;
  }

  handleExit(vcpu: Vcpu, exit: ExitInfo): ExitAction {
    const reason = exit.reason;
    if (reason === ExitReason.ShadowPf && this.shadow !== null) {
      // The shadow fault path consults the gate (check above) mid-fault.
      this.gateOutcome = CHECK_NO_VIOLATION;
      this.gateAsync = false;
      const action = this.inner.handleExit(vcpu, exit);
      const c = this.gateOutcome;
      this.gateOutcome = CHECK_NO_VIOLATION;
      if (c !== CHECK_NO_VIOLATION) return this.conclude(vcpu, c, () => action);
      // An async event may have found the ring nearly full and throttled the vCPU.
      return this.gateAsync && action === 'retry' && vcpu.pauseCount > 0 ? 'pause' : action;
    }
    if (exit.isRecalc || (reason !== ExitReason.EptViolation && reason !== ExitReason.Npf && reason !== ExitReason.Stage2Abort)) {
      return this.inner.handleExit(vcpu, exit);
    }
    const c = this.hapCheck(vcpu, exit);
    if (c === CHECK_NO_VIOLATION) return this.inner.handleExit(vcpu, exit);
    return this.conclude(vcpu, c, () => this.inner.handleExit(vcpu, exit));
  }

  /**
   * After a violation: the vCPU's next step. Sync events pause it without type
   * handling; an async one (n2rwx) lets type handling run (`typeHandling`), then sends.
   */
  private conclude(vcpu: Vcpu, c: number, typeHandling: () => ExitAction): ExitAction {
    if (c === CHECK_HANDLED) return 'retry';
    if (c === CHECK_CRASHED) return 'crash';
    const req = this.pending!;
    this.pending = null;
    const monitor = this.monitor!;
    if (c === CHECK_SYNC) {
      // "Rights not promoted (aka. sync event), work here is done": no type handling this time.
      this.stats.syncEvents++;
      monitor.trap(vcpu, true, req);
      return 'pause';
    }
    // Async (n2rwx): fall through to type handling in the same fault, then send the event.
    let action = typeHandling();
    // hvm.c: a fault that fell through and that type handling did not claim is retried.
    if (action === 'crash' && !this.domain.crashed) action = 'retry';
    this.stats.asyncEvents++;
    monitor.trap(vcpu, false, req);
    if (action === 'retry' && vcpu.pauseCount > 0) action = 'pause';
    return action;
  }

  /** The access check of hvm_hap_nested_page_fault, then p2m_mem_access_check. */
  private hapCheck(vcpu: Vcpu, exit: ExitInfo): number {
    const p2m = this.domain.p2m;
    const gfn = exit.gfn;
    // A pending recalc is resolved by type handling first (resolve_misconfig / deferred changes).
    if (p2m.needsRecalc(gfn)) return CHECK_NO_VIOLATION;
    if (!p2m.lookup(gfn, this.r) || !mfnValid(this.r.type)) return CHECK_NO_VIOLATION;
    // NPT entries are x86 PTEs too: an access type without R is mapped not present (formats/npt.ts).
    const perms = this.domain.format.name === 'npt' ? x86Rights(this.r.access) : accessPerms(this.r.access);
    return this.accessCheck(vcpu, gfn, exit.gpa & 0xfff, this.npfecAccess(exit), this.glaValid(exit) ? exit.gva : -1, exit.isTableAccess, perms);
  }

  /**
   * Does the access (`npfec`: PERM_R/W/X) exceed `perms`, the rights of
   * gfn's access (whose p2m entry `this.r` holds)? If so,
   * p2m_mem_access_check: promotions, no listener, or a request left in
   * `pending`. gla −1: not valid.
   */
  private accessCheck(vcpu: Vcpu, gfn: number, offset: number, npfec: number, gla: number, inGpt: boolean, perms: number): number {
    const p2m = this.domain.p2m;
    const r = this.r;
    const a = r.access;
    if ((npfec & ~perms & 7) === 0) return CHECK_NO_VIOLATION;
    this.stats.violations++;
    vcpu.chargeCycles(this.domain.costs.writeFaultHandling);

    if ((npfec & PERM_W) !== 0 && a === Access.RX2RW) {
      this.setAccess(gfn, Access.RW);
      // rw drops X: shadow mode unmaps the gfn now, or an alias could still fetch from it.
      this.commitAccessChanges();
      this.stats.rx2rwPromotions++;
      return CHECK_HANDLED;
    }
    if (a === Access.N2RWX) {
      this.setAccess(gfn, Access.RWX);
      this.stats.n2rwxPromotions++;
    }
    if (this.monitor === null) {
      if (this.accessRequired) {
        this.stats.crashes++;
        this.domain.crash(`mem_access: vCPU ${vcpu.id} violated the access of gfn 0x${gfn.toString(16)} ` +
          `with access_required set and no vm_event listener`);
        return CHECK_CRASHED;
      }
      p2m.lookup(gfn, r);
      if (r.access !== Access.N2RWX && r.access !== Access.RWX) this.setAccess(gfn, Access.RWX);
      this.stats.openedNoListener++;
      return CHECK_HANDLED;
    }
    let flags = 0;
    if ((npfec & PERM_R) !== 0) flags |= MEM_ACCESS_R;
    if ((npfec & PERM_W) !== 0) flags |= MEM_ACCESS_W;
    if ((npfec & PERM_X) !== 0) flags |= MEM_ACCESS_X;
    if (gla >= 0) flags |= MEM_ACCESS_GLA_VALID | (inGpt ? MEM_ACCESS_FAULT_IN_GPT : MEM_ACCESS_FAULT_WITH_GLA);
    this.pending = {
      version: 0, flags: 0, reason: VM_EVENT_REASON_MEM_ACCESS, vcpuId: vcpu.id, altp2mIdx: 0,
      memAccess: { gfn, offset, gla, flags },
    };
    return a === Access.N2RWX ? CHECK_ASYNC : CHECK_SYNC;
  }

  /** The struct npfec access bits (as PERM_R/W/X) the hardware reported. */
  private npfecAccess(exit: ExitInfo): number {
    const fmt = this.domain.format.name;
    const q = exit.qualification;
    if (fmt === 'ept') {
      return ((q & EPT_QUAL_READ) !== 0 ? PERM_R : 0) | ((q & EPT_QUAL_WRITE) !== 0 ? PERM_W : 0) |
        ((q & EPT_QUAL_FETCH) !== 0 ? PERM_X : 0);
    }
    if (fmt === 'npt') {
      // svm_do_nested_pgfault: read_access = !insn_fetch.
      const fetch = (q & NPF_ID) !== 0;
      return (fetch ? PERM_X : PERM_R) | ((q & NPF_RW) !== 0 ? PERM_W : 0);
    }
    return exit.access & 7;
  }

  private glaValid(exit: ExitInfo): boolean {
    const fmt = this.domain.format.name;
    if (fmt === 'ept') return (exit.qualification & EPT_QUAL_GLA_VALID) !== 0 && exit.gva >= 0;
    if (fmt === 'npt') return false;
    return exit.gva >= 0;
  }
}

/**
 * The rights an access type leaves where the mapping is an x86 PTE (NPT,
 * shadow): no "present but unreadable", so x, w and wx allow nothing.
 */
function x86Rights(a: Access): number {
  const p = accessPerms(a);
  return (p & PERM_R) !== 0 ? p : 0;
}

/** Whether a type has a frame behind it (mfn_valid in the fault path). */
function mfnValid(t: P2mType): boolean {
  return t !== P2mType.Invalid && t !== P2mType.PopulateOnDemand && t !== P2mType.MmioDm && t !== P2mType.RamPaged;
}
