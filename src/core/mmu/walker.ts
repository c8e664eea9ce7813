/**
 * The hardware MMU of one vCPU: TLB, page walker, A/D updates, PML, and the
 * VM exits a walk raises. Pure hardware: it never fixes anything, it fills
 * `exit` and says so; the vCPU hands the exit to the hypervisor (paging mode).
 *
 * 1-D (guest paging off, "identity" addressing): address = gpa; a TLB miss
 * walks the p2m (4 references).
 *
 * 2-D (x86-64 4-level guest paging, formats/x86-pte.ts): address = gva.
 *
 *   47    39 38    30 29    21 20    12 11        0
 *  +--------+--------+--------+--------+-----------+      CR3 (a gpa)
 *  | PML4 i | PDPT i |  PD i  |  PT i  |  offset   |        │ each guest table gpa → p2m → mfn
 *  +--------+--------+--------+--------+-----------+        ▼ (nested TLB first), then the PTE read
 *   PML4E → PDPTE(PS: 1 GiB) → PDE(PS: 2 MiB) → PTE → data gpa → p2m → mfn
 *
 * A full 2-D walk is 24 references (Bhargava et al., ASPLOS 2008). Like
 * hardware, we cache guest-physical translations (SDM Vol. 3C §29.4.1) in a
 * second, gfn-tagged TLB (`ntlb`), so a guest table reference usually costs one
 * nested-TLB hit plus the PTE read. Guest-physical mappings depend on the p2m
 * only, so a guest CR3 load keeps them (see Flushes).
 *
 * Accessed/dirty flags:
 *  - guest PTEs: A on every level used, D on the leaf for writes (SDM Vol. 3A §4.8);
 *    setting them is a write to the guest table page, so that page must be
 *    writable in the p2m or the write raises an exit on it;
 *  - p2m leaf: A/D when the format tracks them (EPT with A/D on, NPT); with EPT
 *    A/D on, guest paging-structure accesses are writes for EPT (SDM Vol. 3C
 *    §29.3.3.2), NPT treats them as user writes (APM Vol. 2 §15.25.5);
 *  - PML: before an EPT A or D 0→1 the PML index is checked; only D 0→1 is logged (pml.ts).
 *
 * Guest privilege is not modelled: every access is a supervisor access with
 * CR0.WP=1 (writes need R/W at every level; fetches need NX clear everywhere).
 *
 * Flushes — which caches, when:
 *  - flush() (INVEPT / INVLPGA / TLBI VMALLS12E1; the domain calls it on every
 *    vCPU from the p2m's onFlush hook, on any p2m change the CPU may have
 *    cached, as Xen's ept_sync_domain): the TLB, the nested TLB and the PDE
 *    cache, all three;
 *  - setCr3() (MOV to CR3, no PCIDs): the TLB and the PDE cache, which hold
 *    gva-tagged (linear / combined) translations; the nested TLB keeps its
 *    gfn-tagged guest-physical ones (SDM Vol. 3A §4.10.4.1: MOV to CR3
 *    invalidates linear and combined mappings; Vol. 3C §29.4.3.1: guest-physical
 *    mappings go only with INVEPT).
 *
 * Shadow paging (shadow/, modes/shadow.ts): when `shadowMode` is on, the CPU
 * runs with CR3 pointing at the hypervisor's shadow tables, so a TLB miss is a
 * 1-D walk of the gva over host frames (x86-64 4-level entries whose frame
 * field is an mfn; no nested translation, no A/D writes: shadow entries carry
 * A/D preset from the guest's). A not-present entry or a missing right is a
 * #PF that the hypervisor intercepts: a `shadow_pf` exit whose qualification
 * is the #PF error code. Guest CR3 loads are intercepted too (`onCr3Load`).
 */
import { DEFAULT_COSTS, type CostModel } from '../cost-model.ts';
import { PTE_A, PTE_D, PTE_HI_NX, PTE_P, PTE_PS, PTE_RW, pteGfn } from '../formats/x86-pte.ts';
import type { FramePool } from '../memory/frame-pool.ts';
import { HW_EPT_AD, LEVEL_SPANS, P2M_ROOT_LEVEL, type P2mFormat, levelIndex } from '../p2m/p2m-format.ts';
import type { P2m } from '../p2m/p2m.ts';
import { PERM_R, PERM_W, PERM_X } from '../p2m/p2m-type.ts';
import { ExitReason } from '../vm-exit.ts';
import {
  ARM_DFSC_PERMISSION, ARM_DFSC_TRANSLATION, ARM_ISS_S1PTW, ARM_ISS_WNR, EPT_QUAL_FETCH, EPT_QUAL_GLA_FINAL,
  EPT_QUAL_GLA_VALID, EPT_QUAL_PERM_SHIFT, EPT_QUAL_READ, EPT_QUAL_WRITE, ExitInfo, NPF_HI_FINAL, NPF_HI_TABLE, NPF_ID,
  NPF_P, NPF_RW, NPF_US,
} from './exit-info.ts';
import {
  STAT_CYCLES, STAT_GUEST_PF, STAT_NESTED_HITS, STAT_PML_LOGGED, STAT_TLB_FLUSHES, STAT_WALKS, STAT_WALK_REFS,
  STAT_COUNT,
} from './mmu-stats.ts';
import { PDE_W, PDE_X, PdeCache } from './pde-cache.ts';
import { PmlUnit } from './pml.ts';
import { TLB_R, TLB_W, TLB_WD, TLB_X, Tlb } from './tlb.ts';
import type { WalkTracer } from './walk-tracer.ts';

/** translate() outcomes. */
export const XLATE_OK = 0;
/** A VM exit: `exit` holds the details. */
export const XLATE_EXIT = 1;
/** The guest walk failed: a guest page fault (`guestPfAddr`, `guestPfCode`). */
export const XLATE_GUEST_PF = 2;

/** x86 #PF error code bits (SDM Vol. 3A §4.7). */
export const PFEC_PRESENT = 1 << 0;
export const PFEC_WRITE = 1 << 1;
export const PFEC_FETCH = 1 << 4;

export interface MmuOptions {
  tlbEntries?: number;
  nestedTlbEntries?: number;
  costs?: CostModel;
}

export class Mmu {
  readonly tlb: Tlb;
  /** Guest-physical mappings cache for 2-D walks (gfn → mfn, p2m flags). */
  readonly ntlb: Tlb;
  readonly pml: PmlUnit;
  /** Paging-structure cache for 2-D walks (pde-cache.ts). */
  readonly pde = new PdeCache();
  readonly exit = new ExitInfo();
  readonly fmt: P2mFormat;
  readonly pool: FramePool;
  readonly costs: CostModel;
  /** Guest paging on (2-D walks through CR3) or off (1-D). */
  twoD = false;
  /** Guest CR3: gpa of the PML4 table. */
  cr3 = 0;
  /** Result of a successful translate(): 4 KiB host frame and TLB_* flags. */
  resMfn = 0;
  resFlags = 0;
  /** Guest page fault details after XLATE_GUEST_PF. */
  guestPfAddr = 0;
  guestPfCode = 0;
  /** Shadow paging: TLB misses walk the shadow tables at `shadowRootMfn` (0: none yet, every miss exits). */
  shadowMode = false;
  shadowRootMfn = 0;
  /** Shadow paging intercepts MOV to CR3 (sh_update_cr3); called after the load. */
  onCr3Load: ((gpa: number) => void) | null = null;
  /** Walk instrumentation (walk-tracer.ts); null on every normal run, read once per walk. */
  tracer: WalkTracer | null = null;

  // p2m walk results (internal).
  private wMfn = 0;
  private wPerms = 0;
  private wDirtyOk = false;

  constructor(readonly p2m: P2m, readonly stats: Float64Array = new Float64Array(STAT_COUNT), opts: MmuOptions = {}) {
    this.fmt = p2m.fmt;
    this.pool = p2m.pool;
    this.costs = opts.costs ?? DEFAULT_COSTS;
    this.tlb = new Tlb(opts.tlbEntries ?? 4096);
    this.ntlb = new Tlb(opts.nestedTlbEntries ?? 1024);
    this.pml = new PmlUnit(p2m.pool);
  }

  /** Flushes both TLBs (INVEPT / INVLPGA / TLBI VMALLS12E1). */
  flush(): void {
    this.tlb.flush();
    this.ntlb.flush();
    this.pde.flush();
    this.stats[STAT_TLB_FLUSHES]!++;
    this.stats[STAT_CYCLES]! += this.costs.tlbFlush;
  }

  /** MOV to CR3: new guest tables, flush (no PCIDs modelled). */
  setCr3(gpa: number): void {
    this.cr3 = gpa - (gpa % 4096);
    this.tlb.flush();
    this.pde.flush();
    this.stats[STAT_TLB_FLUSHES]!++;
    if (this.onCr3Load !== null) this.onCr3Load(this.cr3);
  }

  /**
   * The TLB-miss path: translate `addr` (gpa in 1-D, gva in 2-D) for an access
   * needing `need` (PERM_R/W/X). On XLATE_OK the TLB holds the translation and
   * resMfn/resFlags are set.
   */
  translate(addr: number, need: number): number {
    this.stats[STAT_WALKS]!++;
    if (this.shadowMode) return this.walkShadow(addr, need);
    return this.twoD ? this.walk2d(addr, need) : this.walk1d(addr, need);
  }

  private walk1d(gpa: number, need: number): number {
    const gfn = Math.floor(gpa / 4096);
    const st = this.p2mWalk(gfn, gpa, need, gpa, true);
    if (st !== XLATE_OK) return st;
    const perms = this.wPerms;
    const flags = perms | ((perms & PERM_W) !== 0 && this.wDirtyOk ? TLB_WD : 0);
    this.tlb.fill(gfn, this.wMfn, flags);
    this.resMfn = this.wMfn;
    this.resFlags = flags;
    return XLATE_OK;
  }

  /** The 2-D walk (see the header). Public so the benchmark can time walks alone. */
  walk2d(gva: number, need: number): number {
    const pool = this.pool;
    const stats = this.stats;
    const vpn = Math.floor(gva / 4096);
    const tableNeed = PERM_R | (this.fmt.tableAccessIsWrite(this.p2m.hwFlags) ? PERM_W : 0);
    let tableGfn = Math.floor(this.cr3 / 4096);
    let guestW = true;
    let guestX = true;
    let dataGfn = 0;
    let leafDirty = false;
    let refs = 0;
    let top = 4;
    // PDE cache: gva bits 47:21 → page-table gfn, skipping three levels.
    const pde = this.pde;
    const pdeTag = Math.floor(vpn / 512);
    const ps = pdeTag & pde.mask;
    const tr = this.tracer;
    if (pde.tag[ps] === pdeTag) {
      tableGfn = pde.ptGfn[ps]!;
      const f = pde.flags[ps]!;
      guestW = (f & PDE_W) !== 0;
      guestX = (f & PDE_X) !== 0;
      top = 1;
      if (tr !== null) tr.pdeHit(tableGfn);
    }
    for (let level = top; level >= 1; level--) {
      const idx = level === 1 ? vpn & 511 : (vpn / LEVEL_SPANS[level - 1]!) & 511;
      const pteGpa = tableGfn * 4096 + idx * 8;
      let st = this.nested(tableGfn, pteGpa, tableNeed, gva, false);
      if (st !== XLATE_OK) return this.walkDone(refs, st);
      const w = pool.wordsOf(this.wMfn);
      const i = pool.wordOffset(this.wMfn) + 2 * idx;
      let lo = w[i]!;
      const hi = w[i + 1]!;
      refs++;
      if (tr !== null) tr.guestEntry(level, tableGfn, idx, w, i);
      if ((lo & PTE_P) === 0) return this.walkDone(refs, this.guestFault(gva, need, 0));
      if ((lo & PTE_RW) === 0) guestW = false;
      if ((hi & PTE_HI_NX) !== 0) guestX = false;
      const leaf = level === 1 || (level <= 3 && (lo & PTE_PS) !== 0);
      if (leaf) {
        if (((need & PERM_W) !== 0 && !guestW) || ((need & PERM_X) !== 0 && !guestX)) {
          return this.walkDone(refs, this.guestFault(gva, need, PFEC_PRESENT));
        }
      }
      const setD = leaf && (need & PERM_W) !== 0 && (lo & PTE_D) === 0;
      if ((lo & PTE_A) === 0 || setD) {
        // The CPU writes the guest entry: the table page must be writable in the p2m.
        st = this.nested(tableGfn, pteGpa, PERM_R | PERM_W, gva, false);
        if (st !== XLATE_OK) return this.walkDone(refs, st);
        lo |= PTE_A | (setD ? PTE_D : 0);
        pool.wordsOf(this.wMfn)[pool.wordOffset(this.wMfn) + 2 * idx] = lo >>> 0;
      }
      if (leaf) {
        const frame = pteGfn(lo, hi);
        dataGfn = level === 1 ? frame : level === 2 ? frame + (vpn & 511) : frame + (vpn & 262143);
        leafDirty = (lo & PTE_D) !== 0;
        break;
      }
      tableGfn = pteGfn(lo, hi);
      if (level === 2) {
        pde.tag[ps] = pdeTag;
        pde.ptGfn[ps] = tableGfn;
        pde.flags[ps] = (guestW ? PDE_W : 0) | (guestX ? PDE_X : 0);
      }
    }
    const gpa = dataGfn * 4096 + (gva - vpn * 4096);
    const st = this.nested(dataGfn, gpa, need, gva, true);
    if (st !== XLATE_OK) return this.walkDone(refs, st);
    let flags = this.resFlags;
    if (!guestW) flags &= ~(TLB_W | TLB_WD);
    if (!guestX) flags &= ~TLB_X;
    if (!leafDirty) flags &= ~TLB_WD;
    this.tlb.fill(vpn, this.wMfn, flags);
    this.resMfn = this.wMfn;
    this.resFlags = flags;
    stats[STAT_WALK_REFS]! += refs;
    stats[STAT_CYCLES]! += refs * this.costs.walkRef;
    return XLATE_OK;
  }

  /**
   * The shadow walk (see the header): gva → shadow L4..L1 → mfn, 4 references,
   * no superpages (Xen's shadows map guest superpages with fl1 shadows of 4 KiB
   * entries). Rights are the AND over the levels, as in a native walk.
   */
  private walkShadow(gva: number, need: number): number {
    const pool = this.pool;
    const vpn = Math.floor(gva / 4096);
    let table = this.shadowRootMfn;
    if (table === 0) return this.shadowFault(0, gva, need, 0);
    let w = true;
    let x = true;
    let refs = 0;
    const tr = this.tracer;
    for (let level = 4; level >= 1; level--) {
      const idx = level === 1 ? vpn & 511 : (vpn / LEVEL_SPANS[level - 1]!) & 511;
      const words = pool.wordsOf(table);
      const i = pool.wordOffset(table) + 2 * idx;
      const lo = words[i]!;
      const hi = words[i + 1]!;
      refs++;
      if (tr !== null) tr.shadowEntry(level, table, idx, words, i);
      if ((lo & PTE_P) === 0) return this.shadowFault(refs, gva, need, 0);
      if ((lo & PTE_RW) === 0) w = false;
      if ((hi & PTE_HI_NX) !== 0) x = false;
      table = pteGfn(lo, hi);
    }
    if (((need & PERM_W) !== 0 && !w) || ((need & PERM_X) !== 0 && !x)) return this.shadowFault(refs, gva, need, PFEC_PRESENT);
    const flags = TLB_R | (w ? TLB_W | TLB_WD : 0) | (x ? TLB_X : 0);
    this.tlb.fill(vpn, table, flags);
    this.resMfn = table;
    this.resFlags = flags;
    return this.walkDone(refs, XLATE_OK);
  }

  private shadowFault(refs: number, gva: number, need: number, code: number): number {
    this.walkDone(refs, 0);
    const e = this.exit;
    e.reason = ExitReason.ShadowPf;
    e.gpa = 0;
    e.gfn = 0;
    e.gva = gva;
    e.access = need;
    e.p2mPerms = 0;
    e.level = 0;
    e.isRecalc = false;
    e.isTableAccess = false;
    e.qualification = code | ((need & PERM_W) !== 0 ? PFEC_WRITE : 0) | ((need & PERM_X) !== 0 ? PFEC_FETCH : 0);
    e.qualificationHi = 0;
    return XLATE_EXIT;
  }

  private walkDone(refs: number, st: number): number {
    this.stats[STAT_WALK_REFS]! += refs;
    this.stats[STAT_CYCLES]! += refs * this.costs.walkRef;
    return st;
  }

  private guestFault(gva: number, need: number, code: number): number {
    this.guestPfAddr = gva;
    this.guestPfCode = code | ((need & PERM_W) !== 0 ? PFEC_WRITE : 0) | ((need & PERM_X) !== 0 ? PFEC_FETCH : 0);
    this.stats[STAT_GUEST_PF]!++;
    return XLATE_GUEST_PF;
  }

  /**
   * gfn → mfn through the nested TLB, else a p2m walk that fills it. Leaves the
   * frame in wMfn and the p2m's TLB_* flags in resFlags.
   */
  private nested(gfn: number, gpa: number, need: number, gva: number, final: boolean): number {
    const t = this.ntlb;
    const s = gfn & t.mask;
    const needFlags = (need & (PERM_R | PERM_X)) | ((need & PERM_W) !== 0 ? TLB_WD : 0);
    const hit = t.tag[s] === gfn && (t.flags[s]! & needFlags) === needFlags;
    const tr = this.tracer;
    if (tr !== null) tr.nested(gfn, need, final, hit);
    if (hit) {
      this.wMfn = t.mfn[s]!;
      this.resFlags = t.flags[s]!;
      this.stats[STAT_NESTED_HITS]!++;
      this.stats[STAT_CYCLES]! += this.costs.nestedTlbHit;
      return XLATE_OK;
    }
    const st = this.p2mWalk(gfn, gpa, need, gva, final);
    if (st !== XLATE_OK) return st;
    const perms = this.wPerms;
    const flags = perms | ((perms & PERM_W) !== 0 && this.wDirtyOk ? TLB_WD : 0);
    t.fill(gfn, this.wMfn, flags);
    this.resFlags = flags;
    return XLATE_OK;
  }

  /**
   * The hardware p2m walk for one gfn: faults on recalc marks, missing or
   * insufficient permissions; sets A/D (and logs to PML) on the leaf.
   */
  private p2mWalk(gfn: number, gpa: number, need: number, gva: number, final: boolean): number {
    const fmt = this.fmt;
    const pool = this.pool;
    const hwFlags = this.p2m.hwFlags;
    let table = this.p2m.rootMfn;
    let eff = PERM_R | PERM_W | PERM_X;
    let refs = 0;
    const tr = this.tracer;
    for (let level = P2M_ROOT_LEVEL; level >= 0; level--) {
      const w = pool.wordsOf(table);
      const i = pool.wordOffset(table) + 2 * levelIndex(gfn, level);
      const lo = w[i]!;
      const hi = w[i + 1]!;
      refs++;
      if (tr !== null) tr.p2mEntry(level, table, levelIndex(gfn, level), w, i);
      if ((lo | hi) === 0) return this.p2mFault(refs, gfn, gpa, gva, need, 0, level, final, false);
      if (fmt.isRecalc(lo, hi)) return this.p2mFault(refs, gfn, gpa, gva, need, eff, level, final, true);
      if (fmt.isLeaf(lo, hi, level)) {
        eff &= fmt.perms(lo, hi);
        if ((need & ~eff) !== 0) return this.p2mFault(refs, gfn, gpa, gva, need, eff, level, final, false);
        let dirtyOk = true;
        if (fmt.hwDirty(hwFlags)) {
          if ((need & PERM_W) !== 0) {
            if (!fmt.dirty(lo, hi)) {
              const pml = this.pml;
              if (pml.enabled && (hwFlags & HW_EPT_AD) !== 0) {
                if (pml.isFull()) return this.pmlFull(refs, gfn, gpa, gva, need, final);
                fmt.setDirty(w, i);
                pml.log(gfn);
                this.stats[STAT_PML_LOGGED]!++;
                this.stats[STAT_CYCLES]! += this.costs.pmlLogWrite;
              } else {
                fmt.setDirty(w, i);
              }
            }
          } else {
            if (!fmt.accessed(lo, hi)) {
              // SDM Vol. 3C §29.3.6: the PML index is checked before the CPU sets an EPT accessed
              // flag as well as a dirty one; a full log exits and the flag is not set. Only D 0→1
              // is logged. Xen presets A in every EPT leaf it writes (p2m-ept.c
              // ept_p2m_type_to_flags: entry->a = !!cpu_has_vmx_ept_ad), so this never fires on a
              // Xen-built p2m and the exit counts do not change.
              if (this.pml.enabled && (hwFlags & HW_EPT_AD) !== 0 && this.pml.isFull()) return this.pmlFull(refs, gfn, gpa, gva, need, final);
              fmt.setAccessed(w, i);
            }
            dirtyOk = fmt.dirty(lo, hi);
          }
        }
        this.wMfn = fmt.mfn(lo, hi) + (level === 0 ? 0 : gfn & (LEVEL_SPANS[level]! - 1));
        this.wPerms = eff;
        this.wDirtyOk = dirtyOk;
        this.stats[STAT_WALK_REFS]! += refs;
        this.stats[STAT_CYCLES]! += refs * this.costs.walkRef;
        return XLATE_OK;
      }
      const tp = fmt.tablePerms(lo, hi);
      if (tp === 0) return this.p2mFault(refs, gfn, gpa, gva, need, 0, level, final, false);
      eff &= tp;
      table = fmt.mfn(lo, hi);
    }
    // Unreachable: level 0 entries are always leaves.
    return this.p2mFault(refs, gfn, gpa, gva, need, 0, 0, final, false);
  }

  private pmlFull(refs: number, gfn: number, gpa: number, gva: number, need: number, final: boolean): number {
    this.walkDone(refs, 0);
    const e = this.exit;
    e.reason = ExitReason.PmlFull;
    e.gpa = gpa;
    e.gfn = gfn;
    e.gva = gva;
    e.access = need;
    e.p2mPerms = PERM_R | PERM_W | PERM_X;
    e.level = 0;
    e.isRecalc = false;
    e.isTableAccess = !final;
    e.qualification = 0;
    e.qualificationHi = 0;
    return XLATE_EXIT;
  }

  private p2mFault(refs: number, gfn: number, gpa: number, gva: number, need: number, eff: number, level: number,
    final: boolean, recalc: boolean): number {
    this.walkDone(refs, 0);
    const e = this.exit;
    const fmt = this.fmt;
    e.reason = recalc ? fmt.recalcExit : fmt.violationExit;
    e.gpa = gpa;
    e.gfn = gfn;
    e.gva = gva;
    e.access = need;
    e.p2mPerms = eff;
    e.level = level;
    e.isRecalc = recalc;
    e.isTableAccess = !final;
    e.qualificationHi = 0;
    const write = (need & PERM_W) !== 0;
    const fetch = (need & PERM_X) !== 0;
    if (fmt.name === 'ept') {
      e.qualification = recalc ? 0 :
        ((need & PERM_R) !== 0 || write ? EPT_QUAL_READ : 0) | (write ? EPT_QUAL_WRITE : 0) |
        (fetch ? EPT_QUAL_FETCH : 0) | (eff << EPT_QUAL_PERM_SHIFT) | EPT_QUAL_GLA_VALID |
        (final ? EPT_QUAL_GLA_FINAL : 0);
    } else if (fmt.name === 'npt') {
      e.qualification = (eff !== 0 || recalc ? NPF_P : 0) | (write ? NPF_RW : 0) | NPF_US | (fetch ? NPF_ID : 0);
      e.qualificationHi = final ? NPF_HI_FINAL : NPF_HI_TABLE;
    } else {
      // ARM levels are 3 - ours; a cleared valid bit (recalc or missing) is a translation fault.
      const dfsc = (eff !== 0 && !recalc ? ARM_DFSC_PERMISSION : ARM_DFSC_TRANSLATION) | (3 - level);
      e.qualification = dfsc | (write ? ARM_ISS_WNR : 0) | (final ? 0 : ARM_ISS_S1PTW);
    }
    return XLATE_EXIT;
  }
}

export { TLB_R, TLB_W, TLB_X, TLB_WD };
