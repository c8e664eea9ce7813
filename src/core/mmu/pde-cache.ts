/**
 * The PDE cache, one of x86's paging-structure caches (Intel SDM Vol. 3A
 * §4.10.3.1; AMD's page-walk cache plays the same part): for gva bits 47:21 it
 * remembers the gfn of the page table (PT) the walk reaches, with the R/W and
 * NX the three upper levels allow, so a TLB miss under a cached PDE reads only
 * the PTE (plus its nested translation and the data's).
 *
 * Entries are made only from PDEs that point to a page table (not 2 MiB / 1 GiB
 * leaves) and whose upper entries all had A set, as the SDM allows. Flushed with
 * the TLB (CR3 load, INVLPG-all, INVEPT). Like hardware, it can be stale after
 * the guest edits an upper-level entry without flushing: the guest OS model
 * must flush (Mmu.flush or setCr3) after changing non-leaf entries.
 */
export const PDE_W = 1;
export const PDE_X = 2;

export class PdeCache {
  /** gva >> 21 (Float64: up to 2^27), -1 when empty. */
  readonly tag: Float64Array;
  /** gfn of the page table. */
  readonly ptGfn: Float64Array;
  readonly flags: Uint8Array;
  readonly mask: number;

  constructor(readonly entries = 256) {
    this.tag = new Float64Array(entries).fill(-1);
    this.ptGfn = new Float64Array(entries);
    this.flags = new Uint8Array(entries);
    this.mask = entries - 1;
  }

  flush(): void {
    this.tag.fill(-1);
  }
}
