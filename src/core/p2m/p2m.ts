/**
 * The p2m: a 4-level second-stage translation (gfn → mfn, type, access) whose
 * tables live in host frames from the FramePool, in one hardware format
 * (EPT, NPT or ARM stage-2; see p2m-format.ts). The hardware walker
 * (mmu/walker.ts) reads the same frames.
 *
 * Xen behaviours reproduced (xen/arch/x86/mm/p2m.c, p2m-ept.c, p2m-pt.c; xen/arch/arm/mm/p2m.c):
 *  - set() first resolves pending recalc marks on the gfn's path (ept_set_entry
 *    calls resolve_misconfig), splits a covering superpage, frees tables a new
 *    superpage replaces;
 *  - lookup() returns the *recalculated* type of a changeable entry under a
 *    recalc mark, before hardware entries are rewritten (ept_get_entry);
 *  - changeTypeGlobal / changeTypeRange on changeable types are lazy: they only
 *    mark entries (top-level ones for the global change) and record
 *    global_logdirty / logdirty_ranges; resolveRecalc(gfn) — what Xen's
 *    resolve_misconfig (EPT) and do_recalc (NPT, p2m-pt.c) do — pushes the mark
 *    down one level per step along gfn's path; at the leaf table the EPT format
 *    recomputes every marked entry of the 512, the NPT format only gfn's own
 *    entry (P2mFormat.recalcScope); a marked superpage becomes logdirty (range
 *    all logdirty), rw (none) or is split (mixed) in both;
 *  - changeTypeOne works at 4K: splits superpages (the 511 siblings keep their
 *    type) and resets access to defaultAccess (p2m_change_type_one).
 *
 * Units: gfn/mfn in 4 KiB frames; order 0/9/18 = 4 KiB / 2 MiB / 1 GiB; levels
 * as in p2m-format.ts. Guest-physical space: 2^36 frames (48-bit gpa).
 *
 * Invariants: tableFrames counts the frames holding tables (root included);
 * every table frame is reachable from the root exactly once; the TLB flush hook
 * (onFlush) runs after any change to an entry the CPU may have cached.
 */
import type { FramePool } from '../memory/frame-pool.ts';
import { ORDER_1G, ORDER_2M, ORDER_4K } from '../units.ts';
import { GfnRangeSet } from './gfn-range-set.ts';
import { P2M_ROOT_LEVEL, type P2mFormat, levelIndex, levelSpan } from './p2m-format.ts';
import { Access, P2M_CHANGEABLE_TYPES, P2mType, isType } from './p2m-type.ts';

/** Guest-physical frames a 4-level p2m covers (48-bit gpa). */
export const P2M_MAX_GFN = 2 ** 36 - 1;

/** Reusable result of P2m.lookup (no allocation per lookup). */
export class P2mLookup {
  present = false;
  /** The 4 KiB host frame backing the looked-up gfn. */
  mfn = 0;
  type: P2mType = P2mType.Invalid;
  access: Access = Access.N;
  /** Order of the mapping that holds the gfn (0, 9, 18). */
  order = 0;
  /** Whether a recalc mark is pending on the path (the hardware entry is stale). */
  recalcPending = false;
}

export class P2mError extends Error {}

export interface P2mOptions {
  /** p2m->default_access (what Access.Default resolves to). */
  defaultAccess?: Access;
  /** HW_EPT_AD / HW_PML bits. */
  hwFlags?: number;
}

/** Control-plane counters (sampled by whoever watches). */
export interface P2mStats {
  /** Leaf tables whose 512 entries were recomputed by resolveRecalc (recalcScope 'table'). */
  recalcLeafTables: number;
  /** Leaf entries whose recalc mark was resolved (type recomputed or kept). */
  recalcEntries: number;
  /** Table entries whose mark was pushed one level down. */
  recalcPushDowns: number;
  superpageSplits: number;
  /** Times the onFlush hook ran (Xen: ept_sync_domain / flush_tlb_mask). */
  flushes: number;
}

export class P2m {
  readonly rootMfn: number;
  /** Frames holding p2m tables (root included): the p2m's memory cost is tableFrames × 4 KiB. */
  tableFrames = 1;
  /** HW_EPT_AD / HW_PML; read by writeLeaf and by the walker. */
  hwFlags: number;
  /** p2m->global_logdirty. */
  globalLogdirty = false;
  /** p2m->logdirty_ranges. */
  readonly logdirtyRanges = new GfnRangeSet();
  defaultAccess: Access;
  /** Highest gfn ever mapped (p2m->max_mapped_pfn); -1 when empty. */
  maxMappedGfn = -1;
  /** Access rights kept beside the p2m when the format has no room for them (ARM: Xen's mem_access_settings radix tree). Keyed by the mapping's first gfn; absent ⇒ rwx. */
  readonly accessMap: Map<number, Access> | null;
  /** Called after entries the CPU may have cached changed: flush every vCPU's TLB. */
  onFlush: (() => void) | null = null;
  readonly stats: P2mStats = { recalcLeafTables: 0, recalcEntries: 0, recalcPushDowns: 0, superpageSplits: 0, flushes: 0 };

  private readonly tmp = new P2mLookup();
  /** Present leaf entries changeRangeEager visited since it was last reset. */
  private eagerLeaves = 0;

  constructor(readonly pool: FramePool, readonly fmt: P2mFormat, opts: P2mOptions = {}) {
    this.rootMfn = pool.alloc();
    this.defaultAccess = opts.defaultAccess ?? Access.RWX;
    this.hwFlags = opts.hwFlags ?? 0;
    this.accessMap = fmt.accessInEntry ? null : new Map();
  }

  /** Host bytes the p2m's tables occupy. */
  get tableBytes(): number {
    return this.tableFrames * 4096;
  }

  // ---------------------------------------------------------------- lookup

  /**
   * Software view of gfn (what Xen's get_entry returns): fills `out`, returns
   * out.present. The type is the recalculated one when a mark is pending.
   */
  lookup(gfn: number, out: P2mLookup): boolean {
    const fmt = this.fmt;
    const pool = this.pool;
    let table = this.rootMfn;
    let recalc = false;
    for (let level = P2M_ROOT_LEVEL; level >= 0; level--) {
      const w = pool.wordsOf(table);
      const i = pool.wordOffset(table) + 2 * levelIndex(gfn, level);
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) === 0) break;
      if (fmt.isRecalc(lo, hi)) recalc = true;
      if (fmt.isLeaf(lo, hi, level)) {
        let t = fmt.type(lo, hi);
        if (recalc) t = this.recalcType(t, gfn, gfn);
        const off = level === 0 ? 0 : gfn & (levelSpan(level) - 1);
        out.present = true;
        out.mfn = fmt.mfn(lo, hi) + off;
        out.type = t;
        out.access = this.accessOf(gfn - off, lo, hi);
        out.order = 9 * level;
        out.recalcPending = recalc;
        return true;
      }
      table = fmt.mfn(lo, hi);
    }
    out.present = false;
    out.mfn = 0;
    out.type = P2mType.Invalid;
    out.access = Access.N;
    out.order = 0;
    out.recalcPending = false;
    return false;
  }

  /** Whether a recalc mark is pending anywhere on gfn's path. */
  needsRecalc(gfn: number): boolean {
    this.lookup(gfn, this.tmp);
    return this.tmp.recalcPending;
  }

  /**
   * Xen's p2m_is_logdirty_range over [first, last]: 1 all logdirty, 0 none, -1 mixed.
   */
  isLogdirtyRange(first: number, last: number): number {
    if (this.globalLogdirty || this.logdirtyRanges.containsRange(first, last)) return 1;
    return this.logdirtyRanges.overlaps(first, last) ? -1 : 0;
  }

  /** Type a newly populated RAM frame gets: ram_logdirty while gfn is tracked, else ram_rw. */
  ramTypeFor(gfn: number): P2mType {
    return this.isLogdirtyRange(gfn, gfn) === 1 ? P2mType.RamLogdirty : P2mType.RamRw;
  }

  // ---------------------------------------------------------------- set / remove

  /**
   * Maps gfn (aligned to `order`) to mfn with type and access
   * (Access.Default ⇒ defaultAccess). Xen's p2m_set_entry.
   */
  set(gfn: number, mfn: number, order: number, type: P2mType, access: Access = Access.Default): void {
    const level = orderToLevel(order);
    const span = levelSpan(level);
    if (gfn < 0 || gfn > P2M_MAX_GFN || gfn % span !== 0) {
      throw new P2mError(`p2m set: gfn ${gfn} is not a valid order-${order} frame`);
    }
    if (mfn % span !== 0) throw new P2mError(`p2m set: mfn ${mfn} is not aligned to order ${order}`);
    if (access === Access.Default) access = this.defaultAccess;
    this.resolveRecalc(gfn);
    const fmt = this.fmt;
    const pool = this.pool;
    let table = this.rootMfn;
    let flush = false;
    for (let l = P2M_ROOT_LEVEL; l > level; l--) {
      const w = pool.wordsOf(table);
      const i = pool.wordOffset(table) + 2 * levelIndex(gfn, l);
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) === 0) {
        const t = this.allocTable();
        fmt.writeTable(w, i, t);
        table = t;
      } else if (fmt.isLeaf(lo, hi, l)) {
        table = this.splitEntry(w, i, l, gfn - (gfn % levelSpan(l)));
        flush = true;
      } else {
        table = fmt.mfn(lo, hi);
      }
    }
    const w = pool.wordsOf(table);
    const i = pool.wordOffset(table) + 2 * levelIndex(gfn, level);
    const lo = w[i]!;
    const hi = w[i + 1]!;
    if ((lo | hi) !== 0) {
      flush = true;
      if (!fmt.isLeaf(lo, hi, level)) this.freeTable(fmt.mfn(lo, hi), level - 1);
    }
    fmt.writeLeaf(w, i, level, mfn, type, access, this.hwFlags);
    this.setSideAccess(gfn, access);
    if (gfn + span - 1 > this.maxMappedGfn) this.maxMappedGfn = gfn + span - 1;
    if (flush) this.flush();
  }

  /** Removes the mapping of gfn at `order` (a covering superpage is split first). */
  remove(gfn: number, order: number = ORDER_4K): void {
    const level = orderToLevel(order);
    this.resolveRecalc(gfn);
    const fmt = this.fmt;
    const pool = this.pool;
    let table = this.rootMfn;
    for (let l = P2M_ROOT_LEVEL; l > level; l--) {
      const w = pool.wordsOf(table);
      const i = pool.wordOffset(table) + 2 * levelIndex(gfn, l);
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) === 0) return;
      table = fmt.isLeaf(lo, hi, l) ? this.splitEntry(w, i, l, gfn - (gfn % levelSpan(l))) : fmt.mfn(lo, hi);
    }
    const w = pool.wordsOf(table);
    const i = pool.wordOffset(table) + 2 * levelIndex(gfn, level);
    const lo = w[i]!;
    const hi = w[i + 1]!;
    if ((lo | hi) === 0) return;
    if (!fmt.isLeaf(lo, hi, level)) this.freeTable(fmt.mfn(lo, hi), level - 1);
    w[i] = 0;
    w[i + 1] = 0;
    this.accessMap?.delete(gfn);
    this.flush();
  }

  /** Sets the access of gfn's 4K mapping, keeping its type (splits a superpage). Returns false if unmapped. */
  setAccess(gfn: number, access: Access): boolean {
    if (!this.lookup(gfn, this.tmp)) return false;
    const { mfn, type } = this.tmp;
    this.set(gfn, mfn, ORDER_4K, type, access);
    return true;
  }

  // ---------------------------------------------------------------- type changes

  /**
   * p2m_change_type_one: if gfn's (recalculated) type is `ot`, remap it at 4K
   * with type `nt` and access defaultAccess. Returns false (Xen: -EBUSY) otherwise.
   */
  changeTypeOne(gfn: number, ot: P2mType, nt: P2mType): boolean {
    const r = this.tmp;
    if (!this.lookup(gfn, r) || r.type !== ot) return false;
    this.set(gfn, r.mfn, ORDER_4K, nt, this.defaultAccess);
    return true;
  }

  /**
   * p2m_change_entry_type_global: lazily, by marking every present top-level
   * entry; only changeable types (ram_rw, ram_logdirty, ioreq_server) take part.
   */
  changeTypeGlobal(ot: P2mType, nt: P2mType): void {
    if (ot === nt) return;
    if (!isType(P2M_CHANGEABLE_TYPES, ot) || !isType(P2M_CHANGEABLE_TYPES, nt)) {
      throw new P2mError(`p2m global type change only between changeable types (got ${ot} → ${nt})`);
    }
    const fmt = this.fmt;
    const w = this.pool.wordsOf(this.rootMfn);
    const base = this.pool.wordOffset(this.rootMfn);
    for (let k = 0; k < 512; k++) {
      const i = base + 2 * k;
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) !== 0 && fmt.canMark(lo, hi) && !fmt.isRecalc(lo, hi)) fmt.markRecalc(w, i);
    }
    this.globalLogdirty = nt === P2mType.RamLogdirty;
    this.flush();
  }

  /**
   * An eager global type change (ARM dirty-page-tracing series, arm-wp.ts:
   * `p2m_change_entry_type_global(d, mg_ro)` walks the whole p2m at once):
   * every present leaf of type ot becomes nt in place (a superpage keeps its
   * size; the first write splits it), global_logdirty is set as the lazy change
   * sets it (frames populated later get nt), one flush at the end. Returns the
   * present leaf entries the walk visited: its cost grows with the populated guest.
   */
  changeTypeGlobalEager(ot: P2mType, nt: P2mType): number {
    if (ot === nt) return 0;
    if (!isType(P2M_CHANGEABLE_TYPES, ot) || !isType(P2M_CHANGEABLE_TYPES, nt)) {
      throw new P2mError(`p2m global type change only between changeable types (got ${ot} → ${nt})`);
    }
    this.eagerLeaves = 0;
    this.changeRangeEager(this.rootMfn, P2M_ROOT_LEVEL, 0, 0, P2M_MAX_GFN + 1, ot, nt);
    this.globalLogdirty = nt === P2mType.RamLogdirty;
    this.flush();
    return this.eagerLeaves;
  }

  /**
   * Rewrites gfn's 4K leaf from type ot to nt in place, keeping frame and
   * access, with no recalc and no flush (the caller flushes once for a batch):
   * the ARM series' re-protect through its linear map of the p2m (VLPT,
   * `vlp2m_pte->p2m.write = 0`). Returns false, changing nothing, unless gfn
   * is mapped by an unmarked 4K leaf of type ot.
   */
  retypeLeaf4k(gfn: number, ot: P2mType, nt: P2mType): boolean {
    const fmt = this.fmt;
    const pool = this.pool;
    let table = this.rootMfn;
    for (let level = P2M_ROOT_LEVEL; level >= 0; level--) {
      const w = pool.wordsOf(table);
      const i = pool.wordOffset(table) + 2 * levelIndex(gfn, level);
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) === 0 || fmt.isRecalc(lo, hi)) return false;
      if (fmt.isLeaf(lo, hi, level)) {
        if (level !== 0 || fmt.type(lo, hi) !== ot) return false;
        fmt.writeLeaf(w, i, 0, fmt.mfn(lo, hi), nt, this.accessOf(gfn, lo, hi), this.hwFlags);
        return true;
      }
      table = fmt.mfn(lo, hi);
    }
    return false;
  }

  /**
   * p2m_change_type_range over [start, end), clipped to maxMappedGfn. Between
   * changeable types it is lazy (marks the covering entries and updates
   * logdirty_ranges, as ept_change_entry_type_range does); other types are
   * changed eagerly, entry by entry, splitting superpages at the edges.
   */
  changeTypeRange(start: number, end: number, ot: P2mType, nt: P2mType): void {
    if (ot === nt) return;
    if (end > this.maxMappedGfn + 1) end = this.maxMappedGfn + 1;
    if (start < 0) start = 0;
    if (start >= end) return;
    if (isType(P2M_CHANGEABLE_TYPES, ot) && isType(P2M_CHANGEABLE_TYPES, nt)) {
      this.markRange(this.rootMfn, P2M_ROOT_LEVEL, 0, start, end);
      if (nt === P2mType.RamLogdirty) this.logdirtyRanges.add(start, end - 1);
      else if (ot === P2mType.RamLogdirty) this.logdirtyRanges.remove(start, end - 1);
    } else {
      this.changeRangeEager(this.rootMfn, P2M_ROOT_LEVEL, 0, start, end, ot, nt);
    }
    this.flush();
  }

  /**
   * Resolves the recalc marks on gfn's path: a marked table entry hands its
   * mark to its 512 children and is cleared, one level per step; a marked
   * superpage is retyped or, when its range is mixed, split (children keep the
   * mark) and the walk goes on; at the leaf table, recalcScope 'table'
   * recomputes every marked entry (p2m-ept.c resolve_misconfig), 'entry' only
   * gfn's own (p2m-pt.c do_recalc: the siblings keep their marks).
   * Returns whether anything was resolved.
   */
  resolveRecalc(gfn: number): boolean {
    const fmt = this.fmt;
    const pool = this.pool;
    let table = this.rootMfn;
    let changed = false;
    for (let level = P2M_ROOT_LEVEL; level >= 0; level--) {
      const w = pool.wordsOf(table);
      const i = pool.wordOffset(table) + 2 * levelIndex(gfn, level);
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) === 0) break;
      if (fmt.isLeaf(lo, hi, level)) {
        if (!fmt.isRecalc(lo, hi)) break;
        if (level === 0) {
          if (fmt.recalcScope === 'entry') this.recomputeLeafEntry(w, i, gfn);
          else this.recomputeLeafTable(table, gfn - (gfn & 511));
          return true;
        }
        const span = levelSpan(level);
        const base = gfn - (gfn % span);
        const t = fmt.type(lo, hi);
        if (isRecalcable(t)) {
          const r = this.isLogdirtyRange(base, base + span - 1);
          if (r < 0) {
            // Mixed: split (children inherit the mark) and keep descending.
            table = this.splitEntry(w, i, level, base);
            changed = true;
            continue;
          }
          const nt = r === 1 ? P2mType.RamLogdirty : P2mType.RamRw;
          fmt.writeLeaf(w, i, level, fmt.mfn(lo, hi), nt, this.accessOf(base, lo, hi), this.hwFlags);
        } else {
          fmt.clearRecalc(w, i, level);
        }
        this.stats.recalcEntries++;
        return true;
      }
      if (fmt.isRecalc(lo, hi)) {
        this.markChildren(fmt.mfn(lo, hi));
        fmt.clearRecalc(w, i, level);
        this.stats.recalcPushDowns++;
        changed = true;
      }
      table = fmt.mfn(lo, hi);
    }
    return changed;
  }

  /** Splits the superpage holding gfn down to `targetOrder` (children keep type and access). */
  splitSuperpage(gfn: number, targetOrder: number = ORDER_4K): boolean {
    const target = orderToLevel(targetOrder);
    const fmt = this.fmt;
    const pool = this.pool;
    let table = this.rootMfn;
    let split = false;
    for (let level = P2M_ROOT_LEVEL; level > target; level--) {
      const w = pool.wordsOf(table);
      const i = pool.wordOffset(table) + 2 * levelIndex(gfn, level);
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) === 0) break;
      if (fmt.isLeaf(lo, hi, level)) {
        table = this.splitEntry(w, i, level, gfn - (gfn % levelSpan(level)));
        split = true;
      } else {
        table = fmt.mfn(lo, hi);
      }
    }
    if (split) this.flush();
    return split;
  }

  /** Calls fn(gfn, lookup) for every present 4K frame in [start, end) (control plane: tests, digests, migration). */
  forEachMapped(start: number, end: number, fn: (gfn: number, r: P2mLookup) => void): void {
    this.visit(this.rootMfn, P2M_ROOT_LEVEL, 0, start, end, fn);
  }

  /**
   * The raw entry holding gfn: [level, lo, hi], or null (control plane: tests,
   * the dashboard's page-walk view). Follows table pointers even when marked.
   */
  rawEntry(gfn: number): [level: number, lo: number, hi: number] | null {
    const fmt = this.fmt;
    let table = this.rootMfn;
    for (let level = P2M_ROOT_LEVEL; level >= 0; level--) {
      const w = this.pool.wordsOf(table);
      const i = this.pool.wordOffset(table) + 2 * levelIndex(gfn, level);
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) === 0) return null;
      if (fmt.isLeaf(lo, hi, level)) return [level, lo, hi];
      table = fmt.mfn(lo, hi);
    }
    return null;
  }

  /** Runs the TLB flush hook. */
  flush(): void {
    this.stats.flushes++;
    this.onFlush?.();
  }

  // ---------------------------------------------------------------- internals

  private allocTable(): number {
    this.tableFrames++;
    return this.pool.alloc();
  }

  private freeTable(mfn: number, level: number): void {
    if (level > 0) {
      const fmt = this.fmt;
      const w = this.pool.wordsOf(mfn);
      const base = this.pool.wordOffset(mfn);
      for (let k = 0; k < 512; k++) {
        const lo = w[base + 2 * k]!;
        const hi = w[base + 2 * k + 1]!;
        if ((lo | hi) !== 0 && !fmt.isLeaf(lo, hi, level)) this.freeTable(fmt.mfn(lo, hi), level - 1);
      }
    }
    this.pool.free(mfn);
    this.tableFrames--;
  }

  /** Access of the mapping starting at `baseGfn` whose entry is (lo, hi). */
  private accessOf(baseGfn: number, lo: number, hi: number): Access {
    if (this.accessMap === null) return this.fmt.access(lo, hi);
    return this.accessMap.get(baseGfn) ?? Access.RWX;
  }

  private setSideAccess(baseGfn: number, access: Access): void {
    const m = this.accessMap;
    if (m === null) return;
    // Xen ARM p2m_mem_access_radix_set: rwx is the absence of an entry.
    if (access === Access.RWX) m.delete(baseGfn);
    else m.set(baseGfn, access);
  }

  /** Recalculated type (p2m_recalc_type): changeable types follow global_logdirty / logdirty_ranges. */
  private recalcType(t: P2mType, first: number, last: number): P2mType {
    if (!isRecalcable(t)) return t;
    return this.isLogdirtyRange(first, last) !== 0 ? P2mType.RamLogdirty : P2mType.RamRw;
  }

  /**
   * Replaces the superpage leaf at (w, i, level) covering [baseGfn, +span) with a
   * table of 512 entries one level down (ept_split_super_page): each child keeps
   * the type, access and recalc mark, with hardware flags recomputed for its size.
   * Returns the new table's mfn.
   */
  private splitEntry(w: Uint32Array, i: number, level: number, baseGfn: number): number {
    const fmt = this.fmt;
    const lo = w[i]!;
    const hi = w[i + 1]!;
    const type = fmt.type(lo, hi);
    const access = this.accessOf(baseGfn, lo, hi);
    const marked = fmt.isRecalc(lo, hi);
    const mfn = fmt.mfn(lo, hi);
    const child = level - 1;
    const childSpan = levelSpan(child);
    const t = this.allocTable();
    const cw = this.pool.wordsOf(t);
    const cbase = this.pool.wordOffset(t);
    for (let k = 0; k < 512; k++) {
      fmt.writeLeaf(cw, cbase + 2 * k, child, mfn + k * childSpan, type, access, this.hwFlags);
      if (marked) fmt.markRecalc(cw, cbase + 2 * k);
      // Every child key is rewritten: stale keys of older, smaller mappings may sit inside the range.
      if (this.accessMap !== null) this.setSideAccess(baseGfn + k * childSpan, access);
    }
    fmt.writeTable(w, i, t);
    this.stats.superpageSplits++;
    return t;
  }

  /** Marks every markable child of a table (ept_invalidate_emt_subtree). */
  private markChildren(tableMfn: number): void {
    const fmt = this.fmt;
    const w = this.pool.wordsOf(tableMfn);
    const base = this.pool.wordOffset(tableMfn);
    for (let k = 0; k < 512; k++) {
      const i = base + 2 * k;
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) !== 0 && fmt.canMark(lo, hi) && !fmt.isRecalc(lo, hi)) fmt.markRecalc(w, i);
    }
  }

  /** Recomputes every marked entry of a leaf table whose first gfn is baseGfn. */
  private recomputeLeafTable(tableMfn: number, baseGfn: number): void {
    const fmt = this.fmt;
    const w = this.pool.wordsOf(tableMfn);
    const base = this.pool.wordOffset(tableMfn);
    let n = 0;
    for (let k = 0; k < 512; k++) {
      const i = base + 2 * k;
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) === 0 || !fmt.isRecalc(lo, hi)) continue;
      const t = fmt.type(lo, hi);
      const nt = this.recalcType(t, baseGfn + k, baseGfn + k);
      if (nt !== t) fmt.writeLeaf(w, i, 0, fmt.mfn(lo, hi), nt, this.accessOf(baseGfn + k, lo, hi), this.hwFlags);
      else fmt.clearRecalc(w, i, 0);
      n++;
    }
    this.stats.recalcEntries += n;
    this.stats.recalcLeafTables++;
  }

  /**
   * Recomputes the one marked 4K entry at (w, i) mapping gfn: do_recalc's leaf
   * step (p2m_recalc_type_range over the single gfn; a changed type rewrites
   * the entry from the type's flags, an unchanged one only has clear_recalc).
   */
  private recomputeLeafEntry(w: Uint32Array, i: number, gfn: number): void {
    const fmt = this.fmt;
    const lo = w[i]!;
    const hi = w[i + 1]!;
    const t = fmt.type(lo, hi);
    const nt = this.recalcType(t, gfn, gfn);
    if (nt !== t) fmt.writeLeaf(w, i, 0, fmt.mfn(lo, hi), nt, this.accessOf(gfn, lo, hi), this.hwFlags);
    else fmt.clearRecalc(w, i, 0);
    this.stats.recalcEntries++;
  }

  /** Marks the entries covering [start, end) under the table at `level` whose first gfn is tableBase. */
  private markRange(tableMfn: number, level: number, tableBase: number, start: number, end: number): void {
    const fmt = this.fmt;
    const span = levelSpan(level);
    const k0 = Math.max(0, Math.floor((start - tableBase) / span));
    const k1 = Math.min(511, Math.floor((end - 1 - tableBase) / span));
    for (let k = k0; k <= k1; k++) {
      const w = this.pool.wordsOf(tableMfn);
      const i = this.pool.wordOffset(tableMfn) + 2 * k;
      const lo = w[i]!;
      const hi = w[i + 1]!;
      if ((lo | hi) === 0) continue;
      const eStart = tableBase + k * span;
      const eEnd = eStart + span;
      if (start <= eStart && eEnd <= end) {
        if (fmt.canMark(lo, hi) && !fmt.isRecalc(lo, hi)) fmt.markRecalc(w, i);
        continue;
      }
      let child: number;
      if (fmt.isLeaf(lo, hi, level)) {
        child = this.splitEntry(w, i, level, eStart);
      } else {
        child = fmt.mfn(lo, hi);
        if (fmt.isRecalc(lo, hi)) {
          this.markChildren(child);
          fmt.clearRecalc(w, i, level);
        }
      }
      this.markRange(child, level - 1, eStart, start, end);
    }
  }

  /** Eager type change of present leaves of type ot in [start, end). */
  private changeRangeEager(tableMfn: number, level: number, tableBase: number, start: number, end: number,
    ot: P2mType, nt: P2mType): void {
    const fmt = this.fmt;
    const span = levelSpan(level);
    const k0 = Math.max(0, Math.floor((start - tableBase) / span));
    const k1 = Math.min(511, Math.floor((end - 1 - tableBase) / span));
    for (let k = k0; k <= k1; k++) {
      const w = this.pool.wordsOf(tableMfn);
      const i = this.pool.wordOffset(tableMfn) + 2 * k;
      let lo = w[i]!;
      let hi = w[i + 1]!;
      if ((lo | hi) === 0) continue;
      const eStart = tableBase + k * span;
      const eEnd = eStart + span;
      if (fmt.isLeaf(lo, hi, level) && fmt.isRecalc(lo, hi)) {
        this.resolveRecalc(eStart);
        lo = w[i]!;
        hi = w[i + 1]!;
      }
      if (fmt.isLeaf(lo, hi, level)) {
        this.eagerLeaves++;
        if (fmt.type(lo, hi) !== ot) continue;
        if (start <= eStart && eEnd <= end) {
          fmt.writeLeaf(w, i, level, fmt.mfn(lo, hi), nt, this.accessOf(eStart, lo, hi), this.hwFlags);
          continue;
        }
        this.changeRangeEager(this.splitEntry(w, i, level, eStart), level - 1, eStart, start, end, ot, nt);
      } else {
        const child = fmt.mfn(lo, hi);
        if (fmt.isRecalc(lo, hi)) {
          this.markChildren(child);
          fmt.clearRecalc(w, i, level);
        }
        this.changeRangeEager(child, level - 1, eStart, start, end, ot, nt);
      }
    }
  }

  private visit(tableMfn: number, level: number, tableBase: number, start: number, end: number,
    fn: (gfn: number, r: P2mLookup) => void): void {
    const fmt = this.fmt;
    const span = levelSpan(level);
    const k0 = Math.max(0, Math.floor((start - tableBase) / span));
    const k1 = Math.min(511, Math.floor((end - 1 - tableBase) / span));
    const w = this.pool.wordsOf(tableMfn);
    const base = this.pool.wordOffset(tableMfn);
    for (let k = k0; k <= k1; k++) {
      const lo = w[base + 2 * k]!;
      const hi = w[base + 2 * k + 1]!;
      if ((lo | hi) === 0) continue;
      const eStart = tableBase + k * span;
      if (fmt.isLeaf(lo, hi, level)) {
        const from = Math.max(start, eStart);
        const to = Math.min(end, eStart + span);
        for (let g = from; g < to; g++) {
          if (this.lookup(g, this.tmp)) fn(g, this.tmp);
        }
      } else {
        this.visit(fmt.mfn(lo, hi), level - 1, eStart, start, end, fn);
      }
    }
  }
}

/** Changeable types that a recalc re-derives (ioreq_server keeps its type: a server is assumed attached). */
function isRecalcable(t: P2mType): boolean {
  return t === P2mType.RamRw || t === P2mType.RamLogdirty;
}

function orderToLevel(order: number): number {
  if (order === ORDER_4K) return 0;
  if (order === ORDER_2M) return 1;
  if (order === ORDER_1G) return 2;
  throw new P2mError(`p2m: unsupported order ${order} (use 0, 9 or 18)`);
}
