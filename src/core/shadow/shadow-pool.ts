/**
 * The shadow pool: where shadow page tables come from, in two strategies, so
 * the cost of a shadow page fault can be compared (cost-model.ts).
 *
 *  - `xen` (xen/arch/x86/mm/shadow/common.c): a page budget sized by the
 *    toolstack (libxl: 4·(256·vcpus + 2·maxmem_MiB) KiB for an HVM shadow
 *    guest) and never below sh_min_allocation = 128·vcpus + max(extra,
 *    p2m_pages), extra = max(tot_pages/256, 6) + 1 (HVM). Shadows keep only
 *    refcounts and per-frame writable counts; finding the entries that map a
 *    frame is a brute-force scan of every L1 shadow. Under pressure
 *    _shadow_prealloc unpins top-level shadows from the LRU tail, then unhooks
 *    every vCPU's current top-level shadows (all shadows below them go).
 *  - `prealloc` (XI-style): a fixed array of shadow page-table infos (SPTIs),
 *    each with one backlink per shadow entry (a 512-entry array): the entries
 *    that map the same target (a guest frame for L1 entries, a child shadow
 *    for upper ones) form a doubly linked chain through those arrays. Finding
 *    the mappings of a frame, or the parents of a shadow, follows its chain;
 *    under pressure one LRU shadow is evicted by unlinking it from its parents.
 *
 *   SPTI s:  smfn | key | next[512] | prev[512] | target[512]
 *   link id = s·512 + entry index; heads: target → first link id (−1: none)
 *
 * Units: pages (4 KiB shadow frames). Memory for the backlink arrays grows in
 * step with the SPTIs in use (the simulator's memory, not the model's: the
 * model charges the preallocation once, at enable).
 */
import { MiB } from '../units.ts';

export type ShadowPoolKind = 'xen' | 'prealloc';

export const SHADOW_ENTRIES = 512;

/** sh_min_allocation (shadow/common.c) for an HVM guest, in pages. */
export function shMinAllocation(vcpus: number, totPages: number, p2mPages: number): number {
  const extra = Math.max(Math.floor(totPages / 256), 6) + 1;
  return 128 * vcpus + Math.max(extra, p2mPages);
}

/** libxl's default shadow memory for an HVM guest in shadow mode (libxl_get_required_shadow_memory), in pages. */
export function libxlDefaultShadowPages(vcpus: number, maxMemBytes: number): number {
  const kib = 4 * (256 * vcpus + 2 * Math.ceil(maxMemBytes / MiB));
  return Math.ceil(kib / 4);
}

/**
 * The XI-style backlinks: one link per shadow entry, chained per target key.
 * Keys: a guest frame number (≥ 0) for L1 entries, −(sid + 1) for an upper
 * entry pointing at shadow `sid`.
 */
export class ShadowBacklinks {
  private readonly next: Int32Array[] = [];
  private readonly prev: Int32Array[] = [];
  private readonly target: Float64Array[] = [];
  private readonly heads = new Map<number, number>();
  /** Links currently held. */
  linked = 0;

  /** Makes sure SPTI `sid` has its arrays. */
  ensure(sid: number): void {
    while (this.next.length <= sid) {
      this.next.push(new Int32Array(SHADOW_ENTRIES).fill(-1));
      this.prev.push(new Int32Array(SHADOW_ENTRIES).fill(-1));
      this.target.push(new Float64Array(SHADOW_ENTRIES).fill(NaN));
    }
  }

  /** Entry `idx` of shadow `sid` now maps `key` (it must not be linked). */
  link(sid: number, idx: number, key: number): void {
    const id = sid * SHADOW_ENTRIES + idx;
    const head = this.heads.get(key) ?? -1;
    this.next[sid]![idx] = head;
    this.prev[sid]![idx] = -1;
    this.target[sid]![idx] = key;
    if (head >= 0) this.prev[Math.floor(head / SHADOW_ENTRIES)]![head % SHADOW_ENTRIES] = id;
    this.heads.set(key, id);
    this.linked++;
  }

  /** Entry `idx` of shadow `sid` no longer maps anything. */
  unlink(sid: number, idx: number): void {
    const key = this.target[sid]![idx]!;
    if (Number.isNaN(key)) return;
    const n = this.next[sid]![idx]!;
    const p = this.prev[sid]![idx]!;
    if (p >= 0) this.next[Math.floor(p / SHADOW_ENTRIES)]![p % SHADOW_ENTRIES] = n;
    else if (n >= 0) this.heads.set(key, n);
    else this.heads.delete(key);
    if (n >= 0) this.prev[Math.floor(n / SHADOW_ENTRIES)]![n % SHADOW_ENTRIES] = p;
    this.target[sid]![idx] = NaN;
    this.linked--;
  }

  /** Link ids (sid·512 + idx) of every entry mapping `key`, copied (the caller may unlink while iterating). */
  linksOf(key: number, out: number[]): number[] {
    out.length = 0;
    for (let id = this.heads.get(key) ?? -1; id >= 0; id = this.next[Math.floor(id / SHADOW_ENTRIES)]![id % SHADOW_ENTRIES]!) out.push(id);
    return out;
  }

  /** Bytes the arrays take (the model's preallocated backlink memory). */
  get bytes(): number {
    return this.next.length * SHADOW_ENTRIES * (4 + 4 + 8);
  }
}
