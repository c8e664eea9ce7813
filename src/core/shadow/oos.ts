/**
 * One vCPU's out-of-sync L1 slots (Xen shadow/common.c oos_hash_add,
 * oos_hash_lookup, oos_fixup_add; SHADOW_OOS_PAGES = 3, SHADOW_OOS_FIXUPS = 2
 * in asm/mm.h):
 *
 *   slot k:  gfn | mfn | snapshot (512 guest entries, lo/hi u32) | fixups[2] {smfn, index} | next
 *
 * A page's hash home is mfn % 3; a lookup checks home then home + 1. Insert:
 * the new page always takes its home slot; if the old occupant was at its own
 * home it moves to home + 1; whatever occupied the final destination is
 * returned to be resynced ("crushed") by the caller, before the slot is reused.
 * Fixups remember writable shadow mappings of the OOS page, round-robin; the
 * one evicted is returned for the caller to revoke.
 */
export const SHADOW_OOS_PAGES = 3;
export const SHADOW_OOS_FIXUPS = 2;
const WORDS = 1024;

export class OosSlots {
  /** Guest frame out of sync in each slot, −1 when empty. */
  readonly gfn = new Float64Array(SHADOW_OOS_PAGES).fill(-1);
  /** Its host frame (the hash is on it). */
  readonly mfn = new Float64Array(SHADOW_OOS_PAGES).fill(-1);
  /** Snapshots, one page of u32 pairs per slot (Xen keeps a snapshot page per slot; it moves with a swap). */
  readonly snapshot: Uint32Array[] = Array.from({ length: SHADOW_OOS_PAGES }, () => new Uint32Array(WORDS));
  /** Writable shadow mappings per slot: smfn (−1 empty) and entry index. */
  readonly fixSmfn = new Float64Array(SHADOW_OOS_PAGES * SHADOW_OOS_FIXUPS).fill(-1);
  readonly fixIdx = new Int32Array(SHADOW_OOS_PAGES * SHADOW_OOS_FIXUPS);
  readonly fixNext = new Uint8Array(SHADOW_OOS_PAGES);

  /** Slot holding gfn (home, then home + 1), or −1. */
  find(gfn: number, mfn: number): number {
    const home = mfn % SHADOW_OOS_PAGES;
    if (this.gfn[home] === gfn) return home;
    const alt = (home + 1) % SHADOW_OOS_PAGES;
    return this.gfn[alt] === gfn ? alt : -1;
  }

  /**
   * Which slot oos_hash_add would crush for a new page with this mfn, or −1
   * if none: the caller resyncs that page first, then calls insert().
   */
  victimFor(mfn: number): number {
    let idx = mfn % SHADOW_OOS_PAGES;
    if (this.gfn[idx] !== -1 && this.mfn[idx]! % SHADOW_OOS_PAGES === idx) idx = (idx + 1) % SHADOW_OOS_PAGES;
    return this.gfn[idx] !== -1 ? idx : -1;
  }

  /**
   * oos_hash_add after the victim (if any) was resynced and cleared: places
   * the page, moving a home occupant one slot on (its fixups and snapshot go
   * with it), and returns the new page's slot, whose snapshot the caller fills.
   */
  insert(gfn: number, mfn: number): number {
    const home = mfn % SHADOW_OOS_PAGES;
    if (this.gfn[home] !== -1 && this.mfn[home]! % SHADOW_OOS_PAGES === home) {
      const to = (home + 1) % SHADOW_OOS_PAGES;
      if (this.gfn[to] !== -1) throw new Error(`OOS slot ${to} still occupied: resync the victim first`);
      this.moveSlot(home, to);
    } else if (this.gfn[home] !== -1) {
      throw new Error(`OOS slot ${home} still occupied: resync the victim first`);
    }
    this.gfn[home] = gfn;
    this.mfn[home] = mfn;
    for (let f = 0; f < SHADOW_OOS_FIXUPS; f++) this.fixSmfn[home * SHADOW_OOS_FIXUPS + f] = -1;
    this.fixNext[home] = 0;
    return home;
  }

  clear(slot: number): void {
    this.gfn[slot] = -1;
    this.mfn[slot] = -1;
    for (let f = 0; f < SHADOW_OOS_FIXUPS; f++) this.fixSmfn[slot * SHADOW_OOS_FIXUPS + f] = -1;
    this.fixNext[slot] = 0;
  }

  /**
   * oos_fixup_add: remembers a writable mapping (smfn, idx) of slot's page.
   * Returns the fixup index evicted (whose mapping the caller must make
   * read-only) or −1; an already-known mapping changes nothing.
   */
  addFixup(slot: number, smfn: number, idx: number): number {
    const base = slot * SHADOW_OOS_FIXUPS;
    for (let f = 0; f < SHADOW_OOS_FIXUPS; f++) if (this.fixSmfn[base + f] === smfn && this.fixIdx[base + f] === idx) return -1;
    const f = this.fixNext[slot]!;
    const evicted = this.fixSmfn[base + f] !== -1 ? base + f : -1;
    return evicted;
  }

  /** Stores the fixup after addFixup's eviction (if any) was handled. */
  storeFixup(slot: number, smfn: number, idx: number): void {
    const base = slot * SHADOW_OOS_FIXUPS;
    for (let f = 0; f < SHADOW_OOS_FIXUPS; f++) if (this.fixSmfn[base + f] === smfn && this.fixIdx[base + f] === idx) return;
    const f = this.fixNext[slot]!;
    this.fixSmfn[base + f] = smfn;
    this.fixIdx[base + f] = idx;
    this.fixNext[slot] = (f + 1) % SHADOW_OOS_FIXUPS;
  }

  private moveSlot(from: number, to: number): void {
    this.gfn[to] = this.gfn[from]!;
    this.mfn[to] = this.mfn[from]!;
    for (let f = 0; f < SHADOW_OOS_FIXUPS; f++) {
      this.fixSmfn[to * SHADOW_OOS_FIXUPS + f] = this.fixSmfn[from * SHADOW_OOS_FIXUPS + f]!;
      this.fixIdx[to * SHADOW_OOS_FIXUPS + f] = this.fixIdx[from * SHADOW_OOS_FIXUPS + f]!;
    }
    this.fixNext[to] = this.fixNext[from]!;
    const s = this.snapshot[to]!;
    this.snapshot[to] = this.snapshot[from]!;
    this.snapshot[from] = s;
    this.clear(from);
  }
}
