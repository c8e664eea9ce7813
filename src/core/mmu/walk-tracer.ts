/**
 * The walker's instrumentation hook: what a page walk reads, in order, and
 * which cache answered instead of a walk. Mmu.tracer is null on every normal
 * run; each walk function loads it once into a local and tests that local at
 * each reference, so an uninstrumented walk allocates nothing and calls
 * nothing (bench/walker.bench.ts measures it).
 *
 * Entries are handed over as (words, i): the 64-bit entry is words[i] (bits
 * 31:0) and words[i + 1] (bits 63:32), read BEFORE the walker sets any A/D
 * flag in it, so a tracer can snapshot it, see what the walk changed and put
 * it back (core/explain/walk-explainer.ts does, so that explaining a walk
 * leaves the run's state as it was).
 *
 * Levels are the walker's: guest 4..1 (PML4..PT), p2m 3..0 (Xen's EPT
 * numbering, p2m-format.ts), shadow 4..1.
 */
export interface WalkTracer {
  /** A guest page-table entry read: table at gfn `tableGfn`, entry `idx`. */
  guestEntry(level: number, tableGfn: number, idx: number, words: Uint32Array, i: number): void;
  /** The PDE cache gave the page table `ptGfn` for this gva: guest levels 4..2 not read. */
  pdeHit(ptGfn: number): void;
  /** A gfn translation starts (`final`: the data gpa; else a guest table's); `hit`: the nested TLB answered. */
  nested(gfn: number, need: number, final: boolean, hit: boolean): void;
  /** A p2m (second-stage) entry read: table in host frame `tableMfn`, entry `idx`. */
  p2mEntry(level: number, tableMfn: number, idx: number, words: Uint32Array, i: number): void;
  /** A shadow page-table entry read (shadow paging: a 1-D walk over host frames). */
  shadowEntry(level: number, tableMfn: number, idx: number, words: Uint32Array, i: number): void;
}
