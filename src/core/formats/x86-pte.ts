/**
 * x86-64 4-level guest page-table entries (Intel SDM Vol. 3A §4.5, Table 4-19/4-20;
 * AMD APM Vol. 2 §5.3.3). The guest OS writes these into guest memory; the
 * walker reads them through the p2m.
 *
 *   63 62      52 51                 12 11  9 8 7  6 5 4   3   2   1   0
 *  +--+----------+---------------------+-----+-+--+-+-+---+---+---+---+---+
 *  |NX| avail    | frame (gfn)          |avail|G|PS|D|A|PCD|PWT|U/S|R/W| P |
 *  +--+----------+---------------------+-----+-+--+-+-+---+---+---+---+---+
 *
 * Address split of a 48-bit gva:
 *   47    39 38    30 29    21 20    12 11        0
 *  +--------+--------+--------+--------+-----------+
 *  | PML4 i | PDPT i |  PD i  |  PT i  |  offset   |
 *  +--------+--------+--------+--------+-----------+
 * PS in a PDPT entry maps 1 GiB, in a PD entry 2 MiB.
 */
export const PTE_P = 1 << 0;
export const PTE_RW = 1 << 1;
export const PTE_US = 1 << 2;
export const PTE_PWT = 1 << 3;
export const PTE_PCD = 1 << 4;
export const PTE_A = 1 << 5;
export const PTE_D = 1 << 6;
export const PTE_PS = 1 << 7;
export const PTE_G = 1 << 8;
/** NX is bit 63: bit 31 of the high word. */
export const PTE_HI_NX = 1 << 31;
/** Frame bits 51:12 → low word bits 31:12 and high word bits 19:0. */
export const PTE_LO_FRAME_MASK = 0xfffff000;
export const PTE_HI_FRAME_MASK = 0x000fffff;
/** Levels: 4 = PML4, 3 = PDPT, 2 = PD, 1 = PT. */
export const GUEST_LEVELS = 4;

/** gfn held in an entry (lo, hi). */
export function pteGfn(lo: number, hi: number): number {
  return (hi & PTE_HI_FRAME_MASK) * 0x100000 + (lo >>> 12);
}

/** Low word of an entry mapping `gfn` with flags (flags are bits 11:0). */
export function pteLo(gfn: number, flags: number): number {
  return (((gfn & 0xfffff) << 12) | (flags & 0xfff)) >>> 0;
}

/** High word of an entry mapping `gfn`, NX optional. */
export function pteHi(gfn: number, nx: boolean): number {
  return ((Math.floor(gfn / 0x100000) & PTE_HI_FRAME_MASK) | (nx ? PTE_HI_NX : 0)) >>> 0;
}

/** Index into the table at `level` (4..1) for a gva given as a number < 2^48. */
export function gvaIndex(gva: number, level: number): number {
  return Math.floor(gva / 2 ** (12 + 9 * (level - 1))) & 511;
}
