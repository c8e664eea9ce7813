/**
 * Units shared by the whole engine.
 *
 * Address spaces (names carry them everywhere): `gva` guest-virtual, `gpa`
 * guest-physical, `gfn` guest frame number (gpa >> 12), `mfn` host ("machine")
 * frame number. Addresses are JS numbers (exact below 2^53); 64-bit hardware
 * entries are u32 pairs. Time in the engine is virtual: `cycles` at a nominal
 * frequency (see cost-model.ts).
 */

/** 4 KiB base page. */
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
export const PAGE_MASK = PAGE_SIZE - 1;
/** Entries per page-table page at every level of every format here (9 bits). */
export const ENTRIES_PER_TABLE = 512;
export const TABLE_SHIFT = 9;
/** Orders of the mappings the p2m supports: 4 KiB, 2 MiB, 1 GiB. */
export const ORDER_4K = 0;
export const ORDER_2M = 9;
export const ORDER_1G = 18;
/** u32 words in one page. */
export const WORDS_PER_PAGE = PAGE_SIZE >>> 2;
/** Nominal virtual-CPU frequency used to turn cycles into virtual seconds. */
export const NOMINAL_HZ = 3_000_000_000;

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;
