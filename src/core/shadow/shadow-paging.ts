/**
 * Shadow paging for one domain (Xen xen/arch/x86/mm/shadow/{common,multi}.c):
 * the hypervisor builds, on #PF, shadows of the guest's x86-64 4-level page
 * tables whose entries hold host frames, and the CPU walks those (Mmu
 * shadowMode: a 1-D walk of the gva). What the CPU never sees is the guest's
 * own tables: the guest walk below reads them through the p2m, Xen's software
 * table in shadow mode.
 *
 *   guest CR3 → gL4 → gL3 → gL2 → gL1 → gfn ──p2m──► mfn
 *       │        │      │      │
 *   shadow:   sL4 ─► sL3 ─► sL2 ─► sL1 ──────────────► mfn   (hash: (level, gfn) → shadow)
 *
 * A shadow of guest table page G at level L is keyed (L, G). Guest frames
 * that have a shadow are page tables: every writable mapping of them is
 * removed when they are first shadowed, so the guest's writes to them trap and
 * are emulated (sh_validate_guest_entry re-propagates the entry), unless the
 * page is an out-of-sync L1 (oos.ts), which the guest writes freely until it
 * is resynced from its snapshot.
 *
 * Unpaged guests (identity addressing, CR0.PG clear): Xen gives the guest an
 * identity map of the p2m made of superpages (d->arch.paging.shadow
 * .unpaged_pagetable) and shadows it; shadows of superpage entries are fl1
 * shadows keyed by the virtual range they cover. Here the identity map is
 * implicit (gva = gpa, every right, A and D set), its shadows are keyed
 * (level, gva >> (12 + 9·level)), and there are no guest tables to protect.
 *
 * Propagation (_sh_propagate), guest entry → shadow L1 entry:
 *  - copy P/RW/US/A/D and NX; guest P or A clear ⇒ not present;
 *  - guest D clear ⇒ RW cleared; read-only p2m types ⇒ RW cleared;
 *  - target is a shadowed page table not out of sync ⇒ RW cleared;
 *  - log-dirty: a write fetch marks the target dirty, otherwise RW is cleared
 *    unless the target is already dirty in the bitmap;
 *  - mem_access: the target's p2m access narrows the rights (no R ⇒ not
 *    present, no W ⇒ RW cleared, no X ⇒ NX), so a violating access faults
 *    here, where the access gate (mem_access, memaccess/) sees it once the
 *    guest walk has said which gfn it reaches.
 *
 * Costs accumulate in `cycles` during an operation; the caller charges them.
 * Guest superpages (PS in a guest L2/L3) are not modelled (the guest OS model
 * never writes them): a fault through one crashes the domain with a message.
 */
import type { CostModel } from '../cost-model.ts';
import type { Domain } from '../domain/domain.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import { PTE_A, PTE_D, PTE_HI_NX, PTE_P, PTE_PS, PTE_RW, PTE_US, pteGfn, pteHi, pteLo } from '../formats/x86-pte.ts';
import type { LogDirty } from '../logdirty/log-dirty.ts';
import type { FramePool } from '../memory/frame-pool.ts';
import { P2mLookup } from '../p2m/p2m.ts';
import { P2M_DISCARD_WRITE_TYPES, P2M_RO_TYPES, P2mType, PERM_R, PERM_W, PERM_X, accessPerms, isType } from '../p2m/p2m-type.ts';
import { OosSlots, SHADOW_OOS_FIXUPS, SHADOW_OOS_PAGES } from './oos.ts';
import { SHADOW_ENTRIES, ShadowBacklinks, type ShadowPoolKind } from './shadow-pool.ts';

/** What the mem_access gate decided about an access (MemAccessLayer implements it). */
export const GATE_ALLOW = 0;
/** Allowed now, the event goes out once the fault is fixed (n2rwx). */
export const GATE_ASYNC = 1;
/** Handled without fixing the fault (promotion, page opened, vCPU paused, domain crashed): retry. */
export const GATE_STOP = 2;

/**
 * mem_access in shadow mode: consulted on every shadow fault for the guest
 * page tables the guest walk reads (R) and sets A/D in (W), with
 * `gptOffset` the entry's byte offset in its page, as the hardware walker's
 * accesses are checked under HAP; then for the gfn the access reaches, with
 * the rights it needs (PERM_R/W/X).
 */
export interface ShadowAccessGate {
  check(v: Vcpu, gfn: number, gva: number, need: number, gptOffset?: number): number;
}

/** guestWalk outcomes. */
const WALK_OK = 0;
const WALK_GUEST_FAULT = 1;
const WALK_ACCESS = 2;

/** The pool ran dry and recycling could not help: Xen crashes the domain. */
export class ShadowPoolExhaustedError extends Error {
  override readonly name = 'ShadowPoolExhaustedError';
}

/** A guest mapping the model does not shadow (guest superpages). */
export class ShadowUnsupportedError extends Error {
  override readonly name = 'ShadowUnsupportedError';
}

/** One shadow page-table page (Xen's struct page_info of a shadow; an SPTI in the prealloc pool). */
export class ShadowPage {
  /** Host frame holding the 512 shadow entries. */
  smfn = 0;
  /** 4 (L4) .. 1 (L1). */
  level = 0;
  /** Guest table gfn shadowed (paged), or the gva range index (unpaged). */
  id = 0;
  /** Parent entries pointing here + pin + vCPUs using it as top level. */
  refs = 0;
  pinned = false;
  live = false;
  /** Present entries (for statistics and cheap checks). */
  present = 0;
  /**
   * Xen's up-pointer (sp->up, L1–L3 shadows of a 64-bit HVM guest, which are
   * not pinnable): the parent entry (parent sid · 512 + index) that took the
   * first reference while none was recorded, −1 when none. Set by sh_get_ref,
   * cleared by sh_put_ref when that same entry lets go (private.h).
   */
  up = -1;
  constructor(readonly sid: number) {}
}

/** Integer counters, sampled by tests and reports. */
export interface ShadowStats {
  /** sh_page_fault fixed path (fault_count increments). */
  fixed: number;
  /** Write fetches whose _sh_propagate marked the target dirty (log-dirty on). */
  writeFaultMarks: number;
  /** Guest #PFs reflected to the guest (the guest walk failed). */
  reflected: number;
  /** Guest writes to write-protected page tables, emulated. */
  emulated: number;
  unsyncs: number;
  /** OOS pages brought back in sync (_sh_resync). */
  resyncs: number;
  /** Another vCPU's OOS page whose shadow was updated and left out of sync (sh_resync_all, skip). */
  resyncsLeftOos: number;
  /** Another vCPU's OOS page skipped because sh_safe_not_to_sync allowed it. */
  oosSkips: number;
  /** OOS pages crushed to make room for another. */
  oosEvictions: number;
  /** Writable mappings revoked because a third fixup came in. */
  fixupEvictions: number;
  shadowsMade: number;
  shadowsDestroyed: number;
  /** Pages unshadowed because a write could not be emulated (hardware writes to in-sync PTs). */
  unshadows: number;
  /** Times the pool had to recycle (Xen: unpin/unhook; prealloc: evict). */
  recycles: number;
  /** Xen stage two: every vCPU's top-level shadows unhooked. */
  unhookAlls: number;
  /** Shadows evicted one by one (prealloc). */
  evictions: number;
  /** shadow_blow_tables runs. */
  blows: number;
  /** L1 shadow entries scanned by brute-force write-access removal (xen). */
  scannedEntries: number;
  /** Backlinks followed (prealloc). */
  backlinkSteps: number;
  /** Highest number of shadow pages in use at once. */
  peakPages: number;
}

export interface ShadowPagingOptions {
  readonly pool: ShadowPoolKind;
  /** Shadow pages the pool may hold. */
  readonly poolPages: number;
  readonly logDirty: LogDirty;
}

const L1_BIT = 1 << 1;
/** Flags an upper shadow entry takes from the guest's. */
const UPPER_FLAGS = PTE_P | PTE_RW | PTE_US | PTE_A;
const LEAF_FLAGS = PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D;

export class ShadowPaging {
  readonly stats: ShadowStats = {
    fixed: 0, writeFaultMarks: 0, reflected: 0, emulated: 0, unsyncs: 0, resyncs: 0, resyncsLeftOos: 0, oosSkips: 0, oosEvictions: 0, fixupEvictions: 0, shadowsMade: 0,
    shadowsDestroyed: 0, unshadows: 0, recycles: 0, unhookAlls: 0, evictions: 0, blows: 0, scannedEntries: 0,
    backlinkSteps: 0, peakPages: 0,
  };
  /** Cycles of hypervisor work done since the caller last took them (takeCycles). */
  cycles = 0;
  readonly kind: ShadowPoolKind;
  readonly poolPages: number;
  /** Shadow pages in use. */
  usedPages = 0;
  /** Guest paging off: the implicit identity map (see header). */
  readonly unpaged: boolean;
  /** Per vCPU OOS slots. */
  readonly oos: OosSlots[];
  readonly links: ShadowBacklinks | null;

  private readonly pool: FramePool;
  private readonly costs: CostModel;
  private readonly ld: LogDirty;
  private readonly r = new P2mLookup();
  private readonly pages: ShadowPage[] = [];
  private readonly freeSids: number[] = [];
  private readonly hash = new Map<number, ShadowPage>();
  private readonly bySmfn = new Map<number, ShadowPage>();
  /** Guest frame → bit L set when it has a shadow at level L (sh_mfn_is_a_page_table). */
  private readonly shadowedAs = new Map<number, number>();
  /** Guest frame → writable shadow L1 mappings of it (Xen's PGT_writable_page type count). */
  private readonly writable = new Map<number, number>();
  /** Host frame → gfn for frames shadow L1 entries map (Xen's M2P). */
  private readonly m2p = new Map<number, number>();
  /** OOS guest frame → owning vCPU. */
  private readonly oosOwner = new Map<number, number>();
  /** Pinned top-level shadows, oldest first (Xen's pinned list, LRU at the front). */
  private readonly pinned = new Set<ShadowPage>();
  /** Prealloc: shadows in use order, least recent first. */
  private readonly lru = new Set<ShadowPage>();
  /** Per vCPU: top-level shadow in use, and guest CR3 gfn. */
  private readonly roots: (ShadowPage | null)[];
  private readonly cr3Gfn: number[];
  private needFlush = false;
  private readonly tmpLinks: number[] = [];
  /** mem_access, when installed over this domain (null: every access allowed). */
  accessGate: ShadowAccessGate | null = null;
  // Guest walk results (levels 4..1): table gfn, entry words.
  private readonly gwTable = new Float64Array(5);
  private readonly gwLo = new Uint32Array(5);
  private readonly gwHi = new Uint32Array(5);
  private gwLeafGfn = 0;
  private gwCode = 0;

  constructor(readonly domain: Domain, opts: ShadowPagingOptions) {
    this.kind = opts.pool;
    this.poolPages = opts.poolPages;
    this.pool = domain.pool;
    this.costs = domain.costs;
    this.ld = opts.logDirty;
    this.unpaged = !domain.vcpus[0]!.mmu.twoD;
    this.links = opts.pool === 'prealloc' ? new ShadowBacklinks() : null;
    this.oos = domain.vcpus.map(() => new OosSlots());
    this.roots = domain.vcpus.map(() => null);
    this.cr3Gfn = domain.vcpus.map(() => -1);
  }

  /** Returns and resets the accumulated cycles. */
  takeCycles(): number {
    const c = this.cycles;
    this.cycles = 0;
    return c;
  }

  /** Shadow pages live now. */
  get liveShadows(): number {
    return this.hash.size;
  }

  /** Whether gfn has a shadow (is a guest page table as far as Xen knows). */
  isPageTable(gfn: number): boolean {
    return this.shadowedAs.has(gfn);
  }

  /** Whether gfn is an out-of-sync L1 (on any vCPU). */
  isOutOfSync(gfn: number): boolean {
    return this.oosOwner.has(gfn);
  }

  /** Writable shadow mappings of gfn. */
  writableMappings(gfn: number): number {
    return this.writable.get(gfn) ?? 0;
  }

  /** The shadow of (level, id), if any (tests). */
  shadowOf(level: number, id: number): ShadowPage | undefined {
    return this.hash.get(id * 8 + level);
  }

  /** Shadow entry `idx` of `sp` as [lo, hi] (tests). */
  entry(sp: ShadowPage, idx: number): [number, number] {
    const w = this.pool.wordsOf(sp.smfn);
    const i = this.pool.wordOffset(sp.smfn) + 2 * idx;
    return [w[i]!, w[i + 1]!];
  }

  // ---------------------------------------------------------------- CR3

  /**
   * sh_update_cr3 for vCPU v (a guest CR3 load, or attach for unpaged guests),
   * as shadow/multi.c orders it: first shadow_resync_current_vcpu (v's OOS
   * pages back in sync, "so that the VA hint is still valid"), then get or make
   * the top-level shadow, pin it, point the CPU at it; last
   * shadow_sync_other_vcpus (the other vCPUs' OOS pages get their shadows
   * updated and stay OOS, except those sh_safe_not_to_sync says v cannot reach).
   */
  updateCr3(v: Vcpu, cr3Gpa: number): void {
    this.resyncAllVcpus(v.id, false, true, false);
    const gfn = this.unpaged ? 0 : Math.floor(cr3Gpa / 4096);
    this.cr3Gfn[v.id] = gfn;
    const old = this.roots[v.id];
    if (old && old.live && old.id === gfn) {
      this.pin(old);
      v.mmu.shadowRootMfn = old.smfn;
    } else {
      this.ensureFree(1);
      const root = this.getOrMake(4, gfn);
      root.refs++;
      this.roots[v.id] = root;
      this.pin(root);
      if (old && old.live) this.unref(old);
      v.mmu.shadowRootMfn = root.smfn;
    }
    this.resyncAllVcpus(v.id, true, false, true);
    this.flushIfNeeded();
  }

  // ---------------------------------------------------------------- the fault

  /**
   * sh_page_fault for a shadow #PF at gva (the CPU needed `need`, PERM_*).
   * Returns 'fixed' (retry; fault_count++), 'guest' (the guest walk failed:
   * the caller reflects a #PF with `guestErrorCode`), or 'skip' (a write to a
   * discard-write type, emulated and dropped), or 'access' (the mem_access
   * gate took the fault: the vCPU retries, or is paused, or the domain crashed).
   */
  fault(v: Vcpu, gva: number, need: number): 'fixed' | 'guest' | 'skip' | 'access' {
    const costs = this.costs;
    this.cycles += costs.shadowFaultFixed;
    const write = (need & PERM_W) !== 0;
    // 1. Walk the guest's tables (or the implicit identity map).
    if (this.unpaged) {
      this.gwLeafGfn = Math.floor(gva / 4096);
    } else {
      const walk = this.guestWalk(v, gva, need);
      if (walk === WALK_ACCESS) {
        this.flushIfNeeded();
        return 'access';
      }
      if (walk === WALK_GUEST_FAULT) {
        this.stats.reflected++;
        return 'guest';
      }
    }
    const gfn = this.gwLeafGfn;
    if (gfn >= this.domain.memory.pageCount) throw new ShadowUnsupportedError(`gfn 0x${gfn.toString(16)} (gva 0x${gva.toString(16)}) is outside guest memory`);
    // 2. shadow_prealloc: levels − 1 pages for a 4-level guest.
    this.ensureFree(3);
    // 3. Top level (the CPU's current one).
    let root = this.roots[v.id];
    if (!root || !root.live) {
      this.updateCr3(v, this.cr3Gfn[v.id]! * 4096);
      root = this.roots[v.id]!;
    }
    // 4. Upper levels: find or make the shadow of each next guest table, link it
    // (shadow_get_and_create_l3e / _l2e / _l1e).
    let sp = root;
    this.touch(sp);
    let resync = false;
    for (let level = 4; level >= 2; level--) {
      const idx = index(gva, level);
      const childId = this.unpaged ? Math.floor(gva / 2 ** (12 + 9 * (level - 1))) : pteGfn(this.gwLo[level]!, this.gwHi[level]!);
      // An L4 or L3 shadow entry installed where none was present (shadow_set_l4e / shadow_set_l3e
      // in shadow_get_and_create_l3e / _l2e) sets their `*resync |= 1`.
      if (level >= 3 && !this.entryPresent(sp, idx)) resync = true;
      const child = this.getOrMake(level - 1, childId);
      const gLo = this.unpaged ? UPPER_FLAGS : this.gwLo[level]!;
      const nx = !this.unpaged && (this.gwHi[level]! & PTE_HI_NX) !== 0;
      this.setEntry(sp, idx, pteLo(child.smfn, gLo & UPPER_FLAGS), pteHi(child.smfn, nx), -(child.sid + 1));
      this.cycles += costs.shadowPropagate;
      sp = child;
      this.touch(sp);
    }
    // shadow_get_and_create_l1e, once the sl2e is in: "All pages walked are now pagetables. Safe to
    // resync pages in case level 4 or 3 shadows were set." — shadow_resync_all: every vCPU's OOS
    // pages back in sync (skip = 0: none is left out of sync).
    if (resync) this.resyncAllVcpus(v.id, false, true, true);
    // 5. The leaf. Populate on demand (get_gfn with P2M_ALLOC).
    const r = this.r;
    const p2m = this.domain.p2m;
    if (!p2m.lookup(gfn, r) || r.type === P2mType.PopulateOnDemand || r.type === P2mType.Invalid) {
      if (r.present) p2m.remove(gfn, 0);
      this.domain.memory.populate(gfn);
      this.cycles += costs.populate;
    }
    // 6. mem_access (the frame is valid now): a violation may end the fault here.
    if (this.accessGate !== null && this.accessGate.check(v, gfn, gva, need & 7) === GATE_STOP) {
      this.flushIfNeeded();
      return 'access';
    }
    if (write) {
      p2m.lookup(gfn, r);
      if (isType(P2M_DISCARD_WRITE_TYPES, r.type)) return 'skip';
      // A write to a page table: unsync an L1, else unshadow it (no instruction emulator here).
      if (!this.unpaged && this.shadowedAs.has(gfn) && !this.oosOwner.has(gfn) && !this.unsync(v, gfn)) this.removeAllShadows(gfn);
    }
    const gLo = this.unpaged ? LEAF_FLAGS : this.gwLo[1]!;
    const gHi = this.unpaged ? 0 : this.gwHi[1]!;
    const idx1 = index(gva, 1);
    this.propagateL1(sp, idx1, gLo, gHi, gfn, write);
    this.cycles += costs.shadowPropagate;
    if (!this.unpaged) this.updateSnapshotEntry(sp.id, idx1);
    this.flushIfNeeded();
    this.stats.fixed++;
    this.ld.incrementFaultCount();
    return 'fixed';
  }

  /** The #PF error code of the last failed guest walk. */
  get guestErrorCode(): number {
    return this.gwCode;
  }

  /**
   * guest_walk_tables through the p2m: fills gw*; sets A (and D on a write
   * leaf) in the guest entries once the walk succeeds, marking each table
   * page so written dirty, as Xen does. Returns WALK_GUEST_FAULT on a guest
   * fault, WALK_ACCESS when mem_access stopped it at a table page.
   */
  private guestWalk(v: Vcpu, gva: number, need: number): number {
    const gate = this.accessGate;
    const pool = this.pool;
    const r = this.r;
    const p2m = this.domain.p2m;
    let table = this.cr3Gfn[v.id]!;
    let w = true;
    let x = true;
    const write = (need & PERM_W) !== 0;
    const code = (write ? 2 : 0) | ((need & PERM_X) !== 0 ? 16 : 0);
    for (let level = 4; level >= 1; level--) {
      if (!p2m.lookup(table, r)) {
        this.gwCode = code;
        return WALK_GUEST_FAULT;
      }
      if (gate !== null && gate.check(v, table, gva, PERM_R, 8 * index(gva, level)) === GATE_STOP) return WALK_ACCESS;
      const words = pool.wordsOf(r.mfn);
      const i = pool.wordOffset(r.mfn) + 2 * index(gva, level);
      const lo = words[i]!;
      const hi = words[i + 1]!;
      this.cycles += this.costs.walkRef;
      if ((lo & PTE_P) === 0) {
        this.gwCode = code;
        return WALK_GUEST_FAULT;
      }
      if (level > 1 && (lo & PTE_PS) !== 0) throw new ShadowUnsupportedError(`guest superpage at level ${level} (gva 0x${gva.toString(16)}): fl1 shadows of guest superpages are not modelled`);
      if ((lo & PTE_RW) === 0) w = false;
      if ((hi & PTE_HI_NX) !== 0) x = false;
      this.gwTable[level] = table;
      this.gwLo[level] = lo;
      this.gwHi[level] = hi;
      table = pteGfn(lo, hi);
    }
    if ((write && !w) || ((need & PERM_X) !== 0 && !x)) {
      this.gwCode = code | 1;
      return WALK_GUEST_FAULT;
    }
    this.gwLeafGfn = table;
    for (let level = 4; level >= 1; level--) {
      const lo = this.gwLo[level]!;
      const set = PTE_A | (level === 1 && write ? PTE_D : 0);
      if ((lo & set) === set) continue;
      const tgfn = this.gwTable[level]!;
      if (gate !== null && gate.check(v, tgfn, gva, PERM_W, 8 * index(gva, level)) === GATE_STOP) return WALK_ACCESS;
      p2m.lookup(tgfn, r);
      const nlo = (lo | set) >>> 0;
      pool.wordsOf(r.mfn)[pool.wordOffset(r.mfn) + 2 * index(gva, level)] = nlo;
      this.gwLo[level] = nlo;
      this.ld.markPfnDirty(tgfn);
      this.cycles += this.costs.logdirtyMark;
    }
    return WALK_OK;
  }

  // ---------------------------------------------------------------- propagation

  /** _sh_propagate for an L1 entry + shadow_set_l1e (see header). `write`: a demand write fetch. */
  private propagateL1(sp: ShadowPage, idx: number, gLo: number, gHi: number, gfn: number, write: boolean): void {
    if ((gLo & PTE_P) === 0 || (gLo & PTE_A) === 0) {
      this.setEntry(sp, idx, 0, 0, 0);
      return;
    }
    const r = this.r;
    if (!this.domain.p2m.lookup(gfn, r) || !isRam(r.type)) {
      this.setEntry(sp, idx, 0, 0, 0);
      return;
    }
    const mfn = r.mfn;
    const rights = accessPerms(r.access);
    if ((rights & PERM_R) === 0) {
      this.setEntry(sp, idx, 0, 0, 0);
      return;
    }
    let flags = gLo & LEAF_FLAGS;
    if ((rights & PERM_W) === 0) flags &= ~PTE_RW;
    if ((gLo & PTE_D) === 0) flags &= ~PTE_RW;
    if (isType(P2M_RO_TYPES, r.type)) flags &= ~PTE_RW;
    if (!this.unpaged && this.shadowedAs.has(gfn) && !this.oosOwner.has(gfn)) flags &= ~PTE_RW;
    if ((flags & PTE_RW) !== 0 && this.ld.isEnabled) {
      if (write) {
        this.ld.markPfnDirty(gfn);
        this.stats.writeFaultMarks++;
        this.cycles += this.costs.logdirtyMark;
      } else if (!this.ld.isPfnDirty(gfn)) {
        flags &= ~PTE_RW;
      }
    }
    this.m2p.set(mfn, gfn);
    this.setEntry(sp, idx, pteLo(mfn, flags), pteHi(mfn, (gHi & PTE_HI_NX) !== 0 || (rights & PERM_X) === 0), gfn);
    if ((flags & PTE_RW) !== 0 && this.oosOwner.has(gfn)) this.addFixup(gfn, sp, idx);
  }

  /** Re-propagates guest entry idx of page table gfn into each of its shadows (sh_validate_guest_entry). */
  private validate(gfn: number, idx: number): void {
    const mask = this.shadowedAs.get(gfn) ?? 0;
    if (mask === 0 || !this.domain.p2m.lookup(gfn, this.r)) return;
    const w = this.pool.wordsOf(this.r.mfn);
    const i = this.pool.wordOffset(this.r.mfn) + 2 * idx;
    const lo = w[i]!;
    const hi = w[i + 1]!;
    for (let level = 1; level <= 4; level++) {
      if ((mask & (1 << level)) === 0) continue;
      const sp = this.hash.get(gfn * 8 + level)!;
      if (level === 1) {
        this.propagateL1(sp, idx, lo, hi, pteGfn(lo, hi), false);
      } else {
        // validate_gl4e / validate_gl3e: a present guest entry whose target already has a shadow of
        // the level below ⇒ shadow_resync_all before the shadow entry is set (skip = 0: all vCPUs).
        if (level >= 3 && (lo & PTE_P) !== 0 && this.hash.has(pteGfn(lo, hi) * 8 + level - 1)) this.resyncEveryOos();
        const child = (lo & PTE_P) !== 0 && (lo & PTE_A) !== 0 ? this.hash.get(pteGfn(lo, hi) * 8 + level - 1) : undefined;
        if (child === undefined) this.setEntry(sp, idx, 0, 0, 0);
        else this.setEntry(sp, idx, pteLo(child.smfn, lo & UPPER_FLAGS), pteHi(child.smfn, (hi & PTE_HI_NX) !== 0), -(child.sid + 1));
      }
      this.cycles += this.costs.shadowPropagate;
    }
  }

  // ---------------------------------------------------------------- guest writes to page tables

  /**
   * Before the guest (OS model) writes at gpa: if gfn is an in-sync L1 page
   * table, the write faults and Xen unsyncs it (the snapshot is taken before
   * the write lands). Returns true when that fault happened (fixed path).
   */
  beforeGuestWrite(v: Vcpu, gpa: number): boolean {
    const gfn = Math.floor(gpa / 4096);
    if (this.unpaged || !this.shadowedAs.has(gfn) || this.oosOwner.has(gfn)) return false;
    if (!this.unsync(v, gfn)) return false;
    this.stats.fixed++;
    this.ld.incrementFaultCount();
    this.cycles += this.costs.shadowFaultFixed;
    return true;
  }

  /**
   * After the guest wrote [gpa, gpa + sizeBytes): a write-protected (in-sync)
   * page table's write is emulated, its shadows updated. Returns true when it
   * was (one trapped write).
   */
  afterGuestWrite(gpa: number, sizeBytes: number): boolean {
    const gfn = Math.floor(gpa / 4096);
    if (this.unpaged || !this.shadowedAs.has(gfn) || this.oosOwner.has(gfn)) return false;
    const first = Math.floor((gpa % 4096) / 8);
    const last = Math.floor(((gpa % 4096) + sizeBytes - 1) / 8);
    for (let k = first; k <= last && k < SHADOW_ENTRIES; k++) this.validate(gfn, k);
    this.stats.emulated++;
    this.cycles += this.costs.shadowEmulateWrite;
    this.flushIfNeeded();
    return true;
  }

  // ---------------------------------------------------------------- out of sync

  /** sh_unsync: gfn must be shadowed as an L1 only; returns whether it is OOS now. */
  private unsync(v: Vcpu, gfn: number): boolean {
    if (this.unpaged || this.shadowedAs.get(gfn) !== L1_BIT) return false;
    if (this.oosOwner.has(gfn)) return true;
    if (!this.domain.p2m.lookup(gfn, this.r)) return false;
    const mfn = this.r.mfn;
    const slots = this.oos[v.id]!;
    const victim = slots.victimFor(mfn);
    if (victim >= 0) {
      this.resyncSlot(v.id, victim);
      this.stats.oosEvictions++;
    }
    const slot = slots.insert(gfn, mfn);
    const w = this.pool.wordsOf(mfn);
    const o = this.pool.wordOffset(mfn);
    slots.snapshot[slot]!.set(w.subarray(o, o + 1024));
    this.oosOwner.set(gfn, v.id);
    this.stats.unsyncs++;
    this.cycles += this.costs.shadowUnsync;
    return true;
  }

  /** _sh_resync of slot `slot` of vCPU `vid`: write-protect, re-propagate changed entries, back in sync. */
  private resyncSlot(vid: number, slot: number): void {
    const slots = this.oos[vid]!;
    const gfn = slots.gfn[slot]!;
    // Revoke write access: the fixups first, then a full search.
    for (let f = 0; f < SHADOW_OOS_FIXUPS; f++) {
      const k = slot * SHADOW_OOS_FIXUPS + f;
      const smfn = slots.fixSmfn[k]!;
      if (smfn >= 0) this.revokeWrite(smfn, slots.fixIdx[k]!, gfn);
    }
    this.oosOwner.delete(gfn);
    this.removeWriteAccess(gfn);
    this.resyncL1(gfn, slots.snapshot[slot]!);
    slots.clear(slot);
    this.stats.resyncs++;
    this.flushIfNeeded();
  }

  /** sh_resync_l1: re-propagate shadow-present entries whose guest value differs from the snapshot. */
  private resyncL1(gfn: number, snap: Uint32Array): void {
    const sp = this.hash.get(gfn * 8 + 1);
    if (sp === undefined || !this.domain.p2m.lookup(gfn, this.r)) return;
    const gw = this.pool.wordsOf(this.r.mfn);
    const go = this.pool.wordOffset(this.r.mfn);
    const sw = this.pool.wordsOf(sp.smfn);
    const so = this.pool.wordOffset(sp.smfn);
    for (let k = 0; k < SHADOW_ENTRIES; k++) {
      if ((sw[so + 2 * k]! & PTE_P) === 0) continue;
      const lo = gw[go + 2 * k]!;
      const hi = gw[go + 2 * k + 1]!;
      this.cycles += this.costs.shadowResyncPerEntry;
      if (lo === snap[2 * k] && hi === snap[2 * k + 1]) continue;
      this.propagateL1(sp, k, lo, hi, pteGfn(lo, hi), false);
      snap[2 * k] = lo;
      snap[2 * k + 1] = hi;
    }
  }

  /**
   * sh_resync_all(v, skip, this, others) (shadow/oos.c), for vCPU vid:
   *  - `self`: vid's OOS pages are write-protected, resynced, back in sync;
   *  - `others`: every other vCPU's OOS pages are resynced and back in sync
   *    (skip = false), or only get their shadows updated and stay out of sync
   *    (skip = true), where sh_safe_not_to_sync does not let them be skipped.
   * The wrappers in shadow/private.h: shadow_resync_all = (0, 1, 1),
   * shadow_resync_current_vcpu = (0, 1, 0), shadow_sync_other_vcpus = (1, 0, 1).
   */
  resyncAllVcpus(vid: number, skip: boolean, self: boolean, others: boolean): void {
    for (let u = 0; u < this.oos.length; u++) {
      if (u === vid ? !self : !others) continue;
      const slots = this.oos[u]!;
      for (let s = 0; s < SHADOW_OOS_PAGES; s++) {
        const gfn = slots.gfn[s]!;
        if (gfn < 0) continue;
        if (u === vid || !skip) {
          this.resyncSlot(u, s);
        } else if (!this.safeNotToSync(vid, gfn)) {
          this.resyncL1(gfn, slots.snapshot[s]!);
          this.stats.resyncsLeftOos++;
        } else {
          this.stats.oosSkips++;
        }
      }
    }
  }

  /** shadow_resync_all from a context with no vCPU to name (skip = 0 treats every vCPU alike). */
  private resyncEveryOos(): void {
    this.resyncAllVcpus(-1, false, false, true);
  }

  /**
   * sh_safe_not_to_sync (shadow/multi.c) for vCPU vid and OOS L1 gfn: true
   * when the L1's shadow, its L2 and its L3 each have exactly one reference,
   * held through their up-pointers, and the L4 at the top of that chain is not
   * vid's top-level shadow: vid cannot reach the page, so leaving its shadow
   * stale is safe.
   */
  safeNotToSync(vid: number, gfn: number): boolean {
    let sp = this.hash.get(gfn * 8 + 1);
    if (sp === undefined) return false;
    for (let level = 1; level <= 3; level++) {
      if (sp.refs !== 1 || sp.up < 0) return false;
      sp = this.pages[Math.floor(sp.up / SHADOW_ENTRIES)]!;
    }
    return vid < 0 || this.roots[vid] !== sp;
  }

  private entryPresent(sp: ShadowPage, idx: number): boolean {
    return (this.pool.wordsOf(sp.smfn)[this.pool.wordOffset(sp.smfn) + 2 * idx]! & PTE_P) !== 0;
  }

  /** Snapshot entry of an OOS L1 after the fault path propagated it (Xen keeps them equal). */
  private updateSnapshotEntry(gfn: number, idx: number): void {
    const vid = this.oosOwner.get(gfn);
    if (vid === undefined || !this.domain.p2m.lookup(gfn, this.r)) return;
    const slots = this.oos[vid]!;
    const slot = slots.find(gfn, this.r.mfn);
    if (slot < 0) return;
    const w = this.pool.wordsOf(this.r.mfn);
    const o = this.pool.wordOffset(this.r.mfn) + 2 * idx;
    slots.snapshot[slot]![2 * idx] = w[o]!;
    slots.snapshot[slot]![2 * idx + 1] = w[o + 1]!;
  }

  /** oos_fixup_add: remember a writable mapping of an OOS page (evicting one revokes it). */
  private addFixup(gfn: number, sp: ShadowPage, idx: number): void {
    const vid = this.oosOwner.get(gfn)!;
    if (!this.domain.p2m.lookup(gfn, this.r)) return;
    const slots = this.oos[vid]!;
    const slot = slots.find(gfn, this.r.mfn);
    if (slot < 0) return;
    const ev = slots.addFixup(slot, sp.smfn, idx);
    if (ev >= 0) {
      this.revokeWrite(slots.fixSmfn[ev]!, slots.fixIdx[ev]!, gfn);
      this.stats.fixupEvictions++;
    }
    slots.storeFixup(slot, sp.smfn, idx);
  }

  // ---------------------------------------------------------------- write access

  /** Clears RW in shadow L1 entry (smfn, idx) if it still maps gfn writable. */
  private revokeWrite(smfn: number, idx: number, gfn: number): void {
    const sp = this.bySmfn.get(smfn);
    if (sp === undefined || sp.level !== 1) return;
    const w = this.pool.wordsOf(smfn);
    const i = this.pool.wordOffset(smfn) + 2 * idx;
    const lo = w[i]!;
    if ((lo & (PTE_P | PTE_RW)) !== (PTE_P | PTE_RW) || this.m2p.get(pteGfn(lo, w[i + 1]!)) !== gfn) return;
    w[i] = (lo & ~PTE_RW) >>> 0;
    this.decWritable(gfn);
    this.needFlush = true;
  }

  /**
   * sh_remove_write_access: no writable mapping left to gfn. Xen checks the
   * frame's writable type count first; then (no linear-map heuristic fits
   * this guest) scans every L1 shadow. The prealloc pool follows gfn's backlinks.
   */
  private removeWriteAccess(gfn: number): void {
    if ((this.writable.get(gfn) ?? 0) === 0) return;
    if (this.links !== null) {
      for (const id of this.links.linksOf(gfn, this.tmpLinks)) {
        const sp = this.pages[Math.floor(id / SHADOW_ENTRIES)]!;
        this.revokeWrite(sp.smfn, id % SHADOW_ENTRIES, gfn);
        this.stats.backlinkSteps++;
        this.cycles += this.costs.shadowBacklink;
      }
      return;
    }
    for (const sp of this.hash.values()) {
      if (sp.level !== 1) continue;
      const w = this.pool.wordsOf(sp.smfn);
      const o = this.pool.wordOffset(sp.smfn);
      for (let k = 0; k < SHADOW_ENTRIES; k++) {
        const lo = w[o + 2 * k]!;
        if ((lo & (PTE_P | PTE_RW)) === (PTE_P | PTE_RW) && this.m2p.get(pteGfn(lo, w[o + 2 * k + 1]!)) === gfn) this.revokeWrite(sp.smfn, k, gfn);
      }
      this.stats.scannedEntries += SHADOW_ENTRIES;
      this.cycles += SHADOW_ENTRIES * this.costs.shadowScanPerEntry;
      if ((this.writable.get(gfn) ?? 0) === 0) return;
    }
  }

  /**
   * sh_remove_all_mappings: no shadow L1 entry maps gfn any more (mem_access
   * narrowed its rights); the next access faults and propagates the new
   * rights. The prealloc pool follows gfn's backlinks; Xen's pool scans every
   * L1 shadow. TLBs are flushed if anything was removed.
   */
  removeAllMappings(gfn: number): void {
    if (this.links !== null) {
      for (const id of this.links.linksOf(gfn, this.tmpLinks)) {
        this.setEntry(this.pages[Math.floor(id / SHADOW_ENTRIES)]!, id % SHADOW_ENTRIES, 0, 0, 0);
        this.stats.backlinkSteps++;
        this.cycles += this.costs.shadowBacklink;
      }
    } else {
      for (const sp of this.hash.values()) {
        if (sp.level !== 1 || sp.present === 0) continue;
        const w = this.pool.wordsOf(sp.smfn);
        const o = this.pool.wordOffset(sp.smfn);
        for (let k = 0; k < SHADOW_ENTRIES; k++) {
          const lo = w[o + 2 * k]!;
          if ((lo & PTE_P) !== 0 && this.m2p.get(pteGfn(lo, w[o + 2 * k + 1]!)) === gfn) this.setEntry(sp, k, 0, 0, 0);
        }
        this.stats.scannedEntries += SHADOW_ENTRIES;
        this.cycles += SHADOW_ENTRIES * this.costs.shadowScanPerEntry;
      }
    }
    this.flushIfNeeded();
  }

  private decWritable(gfn: number): void {
    const n = (this.writable.get(gfn) ?? 0) - 1;
    if (n <= 0) this.writable.delete(gfn);
    else this.writable.set(gfn, n);
  }

  // ---------------------------------------------------------------- shadow pages

  /** Finds or makes the shadow of (level, id) (sh_make_shadow + sh_promote). */
  private getOrMake(level: number, id: number): ShadowPage {
    const key = id * 8 + level;
    const have = this.hash.get(key);
    if (have !== undefined) return have;
    const sid = this.freeSids.length > 0 ? this.freeSids.pop()! : this.pages.length;
    let sp = this.pages[sid];
    if (sp === undefined) {
      sp = new ShadowPage(sid);
      this.pages[sid] = sp;
    }
    this.links?.ensure(sid);
    sp.smfn = this.pool.alloc();
    sp.level = level;
    sp.id = id;
    sp.refs = 0;
    sp.pinned = false;
    sp.present = 0;
    sp.up = -1;
    sp.live = true;
    this.usedPages++;
    if (this.usedPages > this.stats.peakPages) this.stats.peakPages = this.usedPages;
    this.hash.set(key, sp);
    this.bySmfn.set(sp.smfn, sp);
    if (this.links !== null) this.lru.add(sp);
    this.stats.shadowsMade++;
    this.cycles += this.kind === 'xen' ? this.costs.shadowAllocXen : this.costs.shadowAllocPrealloc;
    if (!this.unpaged) {
      const mask = this.shadowedAs.get(id) ?? 0;
      this.shadowedAs.set(id, mask | (1 << level));
      // Promotion: an OOS L1 shadowed at another level must be back in sync.
      const owner = this.oosOwner.get(id);
      if (owner !== undefined && level !== 1) {
        this.domain.p2m.lookup(id, this.r);
        this.resyncSlot(owner, this.oos[owner]!.find(id, this.r.mfn));
      }
      if (mask === 0) this.removeWriteAccess(id);
    }
    return sp;
  }

  /**
   * Writes shadow entry idx of sp, keeping refcounts, writable counts and
   * backlinks; `target` is the gfn (L1) or −(child sid + 1) (upper levels).
   */
  private setEntry(sp: ShadowPage, idx: number, lo: number, hi: number, target: number): void {
    const w = this.pool.wordsOf(sp.smfn);
    const i = this.pool.wordOffset(sp.smfn) + 2 * idx;
    const olo = w[i]!;
    const ohi = w[i + 1]!;
    if (olo === lo && ohi === hi) return;
    let oldChild: ShadowPage | undefined;
    if ((olo & PTE_P) !== 0) {
      if (sp.level > 1) oldChild = this.bySmfn.get(pteGfn(olo, ohi));
      else if ((olo & PTE_RW) !== 0) {
        const og = this.m2p.get(pteGfn(olo, ohi));
        if (og !== undefined) this.decWritable(og);
      }
      this.links?.unlink(sp.sid, idx);
      if ((lo & PTE_P) === 0 || pteGfn(lo, hi) !== pteGfn(olo, ohi) || ((olo & PTE_RW) !== 0 && (lo & PTE_RW) === 0) ||
        ((ohi & PTE_HI_NX) === 0 && (hi & PTE_HI_NX) !== 0)) this.needFlush = true;
      sp.present--;
    }
    w[i] = lo >>> 0;
    w[i + 1] = hi >>> 0;
    if ((lo & PTE_P) !== 0) {
      sp.present++;
      if (sp.level > 1) {
        const child = this.pages[-target - 1]!;
        child.refs++;
        if (child.up < 0 && child.level < 4) child.up = sp.sid * SHADOW_ENTRIES + idx;
      }
      else if ((lo & PTE_RW) !== 0) this.writable.set(target, (this.writable.get(target) ?? 0) + 1);
      this.links?.link(sp.sid, idx, target);
      if (this.links !== null) this.cycles += this.costs.shadowBacklink;
    }
    if (oldChild !== undefined) {
      if (oldChild.up === sp.sid * SHADOW_ENTRIES + idx) oldChild.up = -1;
      this.unref(oldChild);
    }
  }

  private unref(sp: ShadowPage): void {
    if (--sp.refs <= 0 && sp.live) this.destroy(sp);
  }

  /** sh_destroy_shadow: clear every entry (children lose a ref), demote, free. */
  private destroy(sp: ShadowPage): void {
    if (sp.present > 0) {
      for (let k = 0; k < SHADOW_ENTRIES && sp.present > 0; k++) {
        const w = this.pool.wordsOf(sp.smfn);
        if ((w[this.pool.wordOffset(sp.smfn) + 2 * k]! & PTE_P) !== 0) this.setEntry(sp, k, 0, 0, 0);
      }
    }
    this.cycles += SHADOW_ENTRIES * this.costs.shadowTearPerEntry;
    sp.live = false;
    this.hash.delete(sp.id * 8 + sp.level);
    this.bySmfn.delete(sp.smfn);
    this.lru.delete(sp);
    this.pinned.delete(sp);
    if (!this.unpaged) {
      const mask = (this.shadowedAs.get(sp.id) ?? 0) & ~(1 << sp.level);
      if (mask === 0) this.shadowedAs.delete(sp.id);
      else this.shadowedAs.set(sp.id, mask);
      // shadow_demote: an OOS page that is no longer shadowed leaves the OOS hash (no resync).
      if (sp.level === 1) this.oosRemove(sp.id);
    }
    this.pool.free(sp.smfn);
    this.usedPages--;
    this.freeSids.push(sp.sid);
    this.stats.shadowsDestroyed++;
    this.needFlush = true;
  }

  private oosRemove(gfn: number): void {
    const vid = this.oosOwner.get(gfn);
    if (vid === undefined) return;
    const slots = this.oos[vid]!;
    for (let s = 0; s < SHADOW_OOS_PAGES; s++) if (slots.gfn[s] === gfn) slots.clear(s);
    this.oosOwner.delete(gfn);
  }

  /** sh_remove_shadows: gfn is no longer a page table (every parent entry cleared). */
  private removeAllShadows(gfn: number): void {
    for (let level = 1; level <= 4; level++) {
      const sp = this.hash.get(gfn * 8 + level);
      if (sp === undefined) continue;
      this.unhookParents(sp);
    }
    this.stats.unshadows++;
  }

  /** Clears every entry pointing at sp (backlinks, or a scan of the level above). */
  private unhookParents(sp: ShadowPage): void {
    if (!sp.live) return;
    if (this.links !== null) {
      for (const id of this.links.linksOf(-(sp.sid + 1), this.tmpLinks)) {
        const p = this.pages[Math.floor(id / SHADOW_ENTRIES)]!;
        this.stats.backlinkSteps++;
        this.cycles += this.costs.shadowBacklink;
        if (p.live) this.setEntry(p, id % SHADOW_ENTRIES, 0, 0, 0);
        if (!sp.live) return;
      }
      return;
    }
    for (const p of [...this.hash.values()]) {
      if (!sp.live) return;
      if (p.level !== sp.level + 1 || !p.live) continue;
      const w = this.pool.wordsOf(p.smfn);
      const o = this.pool.wordOffset(p.smfn);
      for (let k = 0; k < SHADOW_ENTRIES; k++) {
        if ((w[o + 2 * k]! & PTE_P) !== 0 && pteGfn(w[o + 2 * k]!, w[o + 2 * k + 1]!) === sp.smfn) this.setEntry(p, k, 0, 0, 0);
      }
      this.stats.scannedEntries += SHADOW_ENTRIES;
      this.cycles += SHADOW_ENTRIES * this.costs.shadowScanPerEntry;
    }
  }

  private pin(sp: ShadowPage): void {
    if (!sp.pinned) {
      sp.pinned = true;
      sp.refs++;
    }
    this.pinned.delete(sp);
    this.pinned.add(sp);
  }

  private unpin(sp: ShadowPage): void {
    if (!sp.pinned) return;
    sp.pinned = false;
    this.pinned.delete(sp);
    this.unref(sp);
  }

  private touch(sp: ShadowPage): void {
    if (this.links !== null) {
      this.lru.delete(sp);
      this.lru.add(sp);
    }
  }

  /** Unhooks a top-level shadow: every entry cleared (all shadows below go when unreferenced). */
  private unhook(root: ShadowPage): void {
    const w = this.pool.wordsOf(root.smfn);
    const o = this.pool.wordOffset(root.smfn);
    for (let k = 0; k < SHADOW_ENTRIES && root.present > 0; k++) if ((w[o + 2 * k]! & PTE_P) !== 0) this.setEntry(root, k, 0, 0, 0);
    this.cycles += SHADOW_ENTRIES * this.costs.shadowTearPerEntry;
  }

  /**
   * shadow_prealloc: make sure `n` pages are free. Xen: unpin top-level
   * shadows from the LRU end, then unhook every vCPU's top levels. Prealloc:
   * evict the least recently used shadows one by one through their backlinks.
   */
  private ensureFree(n: number): void {
    if (this.poolPages - this.usedPages >= n) return;
    this.stats.recycles++;
    if (this.links === null) {
      for (const sp of [...this.pinned]) {
        this.unpin(sp);
        if (this.poolPages - this.usedPages >= n) return this.flushIfNeeded();
      }
      for (const root of this.roots) {
        if (root === null || !root.live) continue;
        this.unhook(root);
        this.stats.unhookAlls++;
        if (this.poolPages - this.usedPages >= n) return this.flushIfNeeded();
      }
    } else {
      while (this.poolPages - this.usedPages < n) {
        let victim: ShadowPage | undefined;
        for (const sp of this.lru) {
          if (sp.level < 4) {
            victim = sp;
            break;
          }
        }
        if (victim === undefined) break;
        this.unhookParents(victim);
        if (victim.live) this.destroy(victim);
        this.stats.evictions++;
      }
      if (this.poolPages - this.usedPages >= n) return this.flushIfNeeded();
    }
    throw new ShadowPoolExhaustedError(`shadow pool exhausted: ${this.usedPages} of ${this.poolPages} pages in use and nothing left to recycle`);
  }

  /** shadow_blow_tables: unpin all, unhook all, flush every TLB. */
  blowTables(): void {
    for (const sp of [...this.pinned]) if (!this.roots.includes(sp)) this.unpin(sp);
    for (const root of new Set(this.roots)) if (root !== null && root.live) this.unhook(root);
    this.stats.blows++;
    this.needFlush = true;
    this.flushIfNeeded();
  }

  /** Drops every shadow (detach): the vCPUs have no shadow tables afterwards. */
  teardown(): void {
    this.blowTables();
    for (let k = 0; k < this.roots.length; k++) {
      const root = this.roots[k];
      this.roots[k] = null;
      if (root && root.live) this.unref(root);
    }
    for (const sp of [...this.pinned]) this.unpin(sp);
    this.flushIfNeeded();
  }

  private flushIfNeeded(): void {
    if (!this.needFlush) return;
    this.needFlush = false;
    this.domain.flushTlbs();
  }
}

function index(gva: number, level: number): number {
  return Math.floor(gva / 2 ** (12 + 9 * (level - 1))) & 511;
}

function isRam(t: P2mType): boolean {
  return t === P2mType.RamRw || t === P2mType.RamLogdirty || t === P2mType.RamRo || t === P2mType.RamShared ||
    t === P2mType.GrantMapRw || t === P2mType.GrantMapRo || t === P2mType.IoreqServer;
}
