/**
 * The hypervisor side of the MMU: what runs when a vCPU takes a VM exit.
 * Every dirty-tracking mechanism (Xen HAP write protection on EPT/NPT/ARM,
 * PML, KVM bitmap/ring, shadow paging) and mem_access is one PagingMode, in
 * one file, installed with Domain.setPagingMode().
 *
 * DefaultPagingMode is what a domain runs with and what modes build on
 * (extend it and override the hooks, or delegate to it). It does what Xen's
 * HAP fault path does before and after the log-dirty / mem_access parts
 * (xen/arch/x86/hvm/hvm.c hvm_hap_nested_page_fault, mm/p2m-ept.c):
 *  - a recalc exit (EPT misconfig; NPT/ARM faults on a marked entry): resolveRecalc, retry;
 *  - a PML-full exit: drain that vCPU's log (logdirty→rw, onDirty per gfn), retry;
 *  - a violation on a gfn with no frame inside guest memory: populate it, retry;
 *  - a write to ram_logdirty: onDirty(gfn) then p2m_change_type_one(logdirty→rw), retry
 *    (Xen marks even if the type change fails);
 *  - a write to a discard-write type (ram_ro, grant_map_ro): dropped, skip;
 *  - anything else: crash the domain.
 */
import type { ExitAction, ExitInfo } from '../mmu/exit-info.ts';
import { P2mLookup } from '../p2m/p2m.ts';
import { P2M_DISCARD_WRITE_TYPES, P2mType, PERM_W, isType } from '../p2m/p2m-type.ts';
import { ExitReason } from '../vm-exit.ts';
import type { Domain } from './domain.ts';
import type { Vcpu } from './vcpu.ts';

export interface PagingMode {
  /** Mode name as the CLI spells it (ept-wp, ept-pml, ...), or 'default'. */
  readonly name: string;
  /** Called by Domain.setPagingMode when installed (e.g. enable PML, allocate state). */
  attach?(domain: Domain): void;
  /** Called when replaced. */
  detach?(domain: Domain): void;
  /**
   * Handles one VM exit. `exit` is the vCPU's reusable ExitInfo (valid only
   * during the call). Charge handler work with vcpu.chargeCycles().
   */
  handleExit(vcpu: Vcpu, exit: ExitInfo): ExitAction;
}

export class DefaultPagingMode implements PagingMode {
  readonly name: string = 'default';
  protected readonly r = new P2mLookup();

  /** Called for every gfn found written: the log-dirty hook (no-op here). */
  onDirty(_vcpu: Vcpu, _gfn: number): void {}

  handleExit(vcpu: Vcpu, exit: ExitInfo): ExitAction {
    if (exit.isRecalc) return this.handleRecalc(vcpu, exit);
    if (exit.reason === ExitReason.PmlFull) {
      this.flushPml(vcpu);
      return 'retry';
    }
    return this.handleViolation(vcpu, exit);
  }

  /** Xen's resolve_misconfig / p2m_pt_handle_deferred_changes / p2m_resolve_translation_fault. */
  handleRecalc(vcpu: Vcpu, exit: ExitInfo): ExitAction {
    const p2m = vcpu.domain.p2m;
    const before = p2m.stats.recalcEntries;
    p2m.resolveRecalc(exit.gfn);
    const costs = vcpu.domain.costs;
    vcpu.chargeCycles(costs.recalcHandling + (p2m.stats.recalcEntries - before) * costs.recalcPerEntry);
    return 'retry';
  }

  /**
   * ept_vcpu_flush_pml_buffer: each logged gfn goes logdirty→rw (so it is not
   * logged again) and is marked dirty even if the type change fails.
   */
  flushPml(vcpu: Vcpu): number {
    const p2m = vcpu.domain.p2m;
    const n = vcpu.mmu.pml.drain((gfn) => {
      p2m.changeTypeOne(gfn, P2mType.RamLogdirty, P2mType.RamRw);
      this.onDirty(vcpu, gfn);
    });
    vcpu.chargeCycles(n * vcpu.domain.costs.pmlFlushPerEntry);
    return n;
  }

  handleViolation(vcpu: Vcpu, exit: ExitInfo): ExitAction {
    const dom = vcpu.domain;
    const p2m = dom.p2m;
    const r = this.r;
    const gfn = exit.gfn;
    // A fault under a pending mark (e.g. a not-present marked entry): resolve and retry.
    if (p2m.needsRecalc(gfn)) return this.handleRecalc(vcpu, exit);
    const present = p2m.lookup(gfn, r);
    if (!present || r.type === P2mType.PopulateOnDemand || r.type === P2mType.Invalid) {
      if (gfn >= dom.memory.pageCount) return 'crash';
      if (present) p2m.remove(gfn, 0);
      dom.memory.populate(gfn);
      vcpu.chargeCycles(dom.costs.populate);
      return 'retry';
    }
    if ((exit.access & PERM_W) !== 0) {
      if (r.type === P2mType.RamLogdirty) return this.logDirtyWrite(vcpu, gfn, r.order);
      if (isType(P2M_DISCARD_WRITE_TYPES, r.type)) return 'skip';
    }
    return 'crash';
  }

  /** The HAP write fault on a logdirty page: mark, then logdirty→rw at 4K (splitting a superpage). */
  logDirtyWrite(vcpu: Vcpu, gfn: number, order: number): ExitAction {
    const costs = vcpu.domain.costs;
    this.onDirty(vcpu, gfn);
    vcpu.domain.p2m.changeTypeOne(gfn, P2mType.RamLogdirty, P2mType.RamRw);
    vcpu.chargeCycles(costs.writeFaultHandling + costs.logdirtyMark + (order > 0 ? costs.superpageSplit : 0));
    return 'retry';
  }
}
