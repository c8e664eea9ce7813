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
 *  recalc exits, PML-full, shadow faults ─► inner mode unchanged
 * ```
 * Access flags in the request are the hardware's (npfec): on VMX a write sets
 * the read bit too (EPT qualification bit 0 with bit 1), on SVM every data
 * access is a read (read_access = !fetch); the violation test uses the same
 * flags, as Xen's does. gla is valid on EPT (qualification bit 7) and ARM, never
 * on NPT (Xen passes ~0).
 *
 * Not modelled: the inguest_pagefault_disabled shortcut, altp2m views and #VE,
 * the "previous reply does not match" emulate reset; mem_access in shadow mode
 * (the access operation refuses a domain without HAP, as Xen's sanity check does).
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

export class MemAccessLayer implements PagingMode {
  readonly name: string;
  /** p2m->access_required: a violation with no listener crashes the domain. */
  accessRequired = false;
  /** The monitor ring, or null when no listener is attached (d->vm_event_monitor). */
  monitor: VmEventDomain | null = null;
  /** HVM_PARAM_MONITOR_RING_PFN: the toolstack sets it at domain build; 0 refuses monitor enable (-EOPNOTSUPP). */
  monitorRingPfn: number;
  /** Whether the domain runs with HAP (the access operation refuses otherwise). */
  readonly hap: boolean;
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
    this.hap = inner.name !== 'shadow';
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
  }

  detach(domain: Domain): void {
    this.inner.detach?.(domain);
  }

  handleExit(vcpu: Vcpu, exit: ExitInfo): ExitAction {
    const reason = exit.reason;
    if (exit.isRecalc || (reason !== ExitReason.EptViolation && reason !== ExitReason.Npf && reason !== ExitReason.Stage2Abort)) {
      return this.inner.handleExit(vcpu, exit);
    }
    const c = this.check(vcpu, exit);
    if (c === CHECK_NO_VIOLATION) return this.inner.handleExit(vcpu, exit);
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
    let action = this.inner.handleExit(vcpu, exit);
    // hvm.c: a fault that fell through and that type handling did not claim is retried.
    if (action === 'crash' && !this.domain.crashed) action = 'retry';
    this.stats.asyncEvents++;
    monitor.trap(vcpu, false, req);
    if (action === 'retry' && vcpu.pauseCount > 0) action = 'pause';
    return action;
  }

  /** The access check of hvm_hap_nested_page_fault plus p2m_mem_access_check. */
  private check(vcpu: Vcpu, exit: ExitInfo): number {
    const p2m = this.domain.p2m;
    const gfn = exit.gfn;
    // A pending recalc is resolved by type handling first (resolve_misconfig / deferred changes).
    if (p2m.needsRecalc(gfn)) return CHECK_NO_VIOLATION;
    const r = this.r;
    if (!p2m.lookup(gfn, r) || !mfnValid(r.type)) return CHECK_NO_VIOLATION;
    const npfec = this.npfecAccess(exit);
    const a = r.access;
    if ((npfec & ~accessPerms(a) & 7) === 0) return CHECK_NO_VIOLATION;
    this.stats.violations++;
    vcpu.chargeCycles(this.domain.costs.writeFaultHandling);

    if ((npfec & PERM_W) !== 0 && a === Access.RX2RW) {
      p2m.setAccess(gfn, Access.RW);
      this.stats.rx2rwPromotions++;
      return CHECK_HANDLED;
    }
    if (a === Access.N2RWX) {
      p2m.setAccess(gfn, Access.RWX);
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
      if (r.access !== Access.N2RWX && r.access !== Access.RWX) p2m.setAccess(gfn, Access.RWX);
      this.stats.openedNoListener++;
      return CHECK_HANDLED;
    }
    let flags = 0;
    if ((npfec & PERM_R) !== 0) flags |= MEM_ACCESS_R;
    if ((npfec & PERM_W) !== 0) flags |= MEM_ACCESS_W;
    if ((npfec & PERM_X) !== 0) flags |= MEM_ACCESS_X;
    const glaValid = this.glaValid(exit);
    if (glaValid) flags |= MEM_ACCESS_GLA_VALID | (exit.isTableAccess ? MEM_ACCESS_FAULT_IN_GPT : MEM_ACCESS_FAULT_WITH_GLA);
    this.pending = {
      version: 0, flags: 0, reason: VM_EVENT_REASON_MEM_ACCESS, vcpuId: vcpu.id, altp2mIdx: 0,
      memAccess: { gfn, offset: exit.gpa & 0xfff, gla: glaValid ? exit.gva : -1, flags },
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

/** Whether a type has a frame behind it (mfn_valid in the fault path). */
function mfnValid(t: P2mType): boolean {
  return t !== P2mType.Invalid && t !== P2mType.PopulateOnDemand && t !== P2mType.MmioDm && t !== P2mType.RamPaged;
}
