/**
 * Indices of a vCPU's integer counters (one Float64Array per vCPU, exact to
 * 2^53), written by the vCPU and its MMU, sampled by whoever watches. Exits
 * are counted in a second array indexed by ExitReason (vm-exit.ts).
 */
/** Guest access records executed (a Modify or a page-crossing access counts once). */
export const STAT_ACCESSES = 0;
export const STAT_TLB_HITS = 1;
export const STAT_TLB_MISSES = 2;
/** Page walks started (1-D: p2m walks; 2-D: guest walks, each with its nested p2m walks). */
export const STAT_WALKS = 3;
/** Memory references made by walks (guest table and p2m table entries read). */
export const STAT_WALK_REFS = 4;
/** Guest-physical (nested) TLB hits during 2-D walks. */
export const STAT_NESTED_HITS = 5;
export const STAT_CYCLES = 6;
/** Guest page faults (failed guest walks), a separate outcome from VM exits. */
export const STAT_GUEST_PF = 7;
/** GPAs the CPU wrote into the PML log. */
export const STAT_PML_LOGGED = 8;
export const STAT_TLB_FLUSHES = 9;
export const STAT_LOADS = 10;
export const STAT_STORES = 11;
export const STAT_FETCHES = 12;
/** Accesses that spanned two pages. */
export const STAT_PAGE_CROSSINGS = 13;
export const STAT_COUNT = 14;

export const STAT_NAMES: readonly string[] = [
  'accesses', 'tlb_hits', 'tlb_misses', 'walks', 'walk_refs', 'nested_tlb_hits', 'cycles', 'guest_pf',
  'pml_logged', 'tlb_flushes', 'loads', 'stores', 'fetches', 'page_crossings',
];
