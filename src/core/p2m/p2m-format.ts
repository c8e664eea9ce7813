/**
 * The one interface every second-stage (p2m) entry format implements: Intel EPT
 * (formats/ept.ts), AMD NPT (formats/npt.ts), ARM LPAE stage-2 (formats/arm.ts).
 *
 * Entries are 64-bit, stored as little-endian u32 pairs in host frames: word
 * `i` is bits 31:0 (lo), word `i + 1` is bits 63:32 (hi). Encoders write into a
 * Uint32Array at a word index; decoders take the (lo, hi) pair the caller has
 * already loaded, so the walker reads each entry once.
 *
 * Levels are numbered as Xen numbers EPT levels: 0 = the 4 KiB leaf table,
 * 1 = 2 MiB, 2 = 1 GiB, 3 = the root (512 GiB per entry). ARM's levels 3..0
 * map onto ours 0..3.
 *
 * Invariants shared by every format:
 *  - an all-zero entry is "not present" in software; any mapping or table
 *    pointer has a non-zero word (mfn 0 is never handed out, types and memory
 *    attributes are non-zero somewhere);
 *  - the hardware permissions of a leaf are derived from its p2m type AND its
 *    access, exactly as Xen's p2m_type_to_flags / ept_p2m_type_to_flags do
 *    (see p2mTypeToFlags below), so only one function decides them;
 *  - a "recalc" mark makes the hardware walker fault on the entry (EPT
 *    misconfig, NPT #NPF on a cleared U/S bit, ARM translation fault on a
 *    cleared valid bit) and tells the p2m to recompute types below it;
 *    `recalcScope` says how much of a leaf table one resolution recomputes
 *    (the two x86 p2m implementations differ, see P2mRecalcScope).
 */
import type { ExitReason } from '../vm-exit.ts';
import { Access, P2mType, PERM_R, PERM_W, PERM_X, accessPerms } from './p2m-type.ts';

/** Levels of a p2m (4-level: 48-bit guest-physical address space). */
export const P2M_LEVELS = 4;
export const P2M_ROOT_LEVEL = 3;

/** Hardware features the hypervisor turned on, as bits (per p2m). */
/** Intel EPT accessed/dirty flags enabled (EPTP bit 6, SDM Vol.3C §29.3.5). */
export const HW_EPT_AD = 1;
/** Intel Page-Modification Logging enabled (SDM Vol.3C §29.3.6). Implies HW_EPT_AD. */
export const HW_PML = 2;

/** Result bits of p2mTypeToFlags: R/W/X are PERM_R/W/X (bits 0-2). */
export const FLAG_PRESET_A = 1 << 3;
export const FLAG_PRESET_D = 1 << 4;

export type P2mFormatName = 'ept' | 'npt' | 'arm';

/**
 * How much a recalc resolution recomputes once the marks have been pushed
 * down to the faulting gfn's leaf table:
 *  - 'table': every marked entry of that 512-entry table (Xen p2m-ept.c
 *    resolve_misconfig, one EPT misconfig per leaf table touched);
 *  - 'entry': only the faulting gfn's entry; its 511 siblings keep their
 *    marks and fault on their own first access (Xen p2m-pt.c do_recalc,
 *    reached from svm.c VMEXIT_NPF → p2m_pt_handle_deferred_changes).
 */
export type P2mRecalcScope = 'table' | 'entry';

export interface P2mFormat {
  readonly name: P2mFormatName;
  /** Exit raised by a permission / not-present fault on this format. */
  readonly violationExit: ExitReason;
  /** Exit raised when the walker meets a recalc-marked entry. */
  readonly recalcExit: ExitReason;
  /** False when access rights do not fit in the entry (ARM: kept in a side map by the p2m). */
  readonly accessInEntry: boolean;
  /** What one recalc resolution recomputes at the leaf table (see P2mRecalcScope). */
  readonly recalcScope: P2mRecalcScope;

  /** Whether the walker sets a dirty flag in leaf entries (EPT with A/D on; NPT always; ARM never). */
  hwDirty(hwFlags: number): boolean;
  /** Whether the walker's reads of guest page-table entries count as writes for this stage (EPT A/D: SDM §29.3.3.2; NPT: APM §15.25.5). */
  tableAccessIsWrite(hwFlags: number): boolean;

  /** Writes a leaf mapping `mfn` (aligned to the level) at level 0/1/2. */
  writeLeaf(w: Uint32Array, i: number, level: number, mfn: number, type: P2mType, access: Access, hwFlags: number): void;
  /** Writes a pointer to the next-level table in frame `mfn`. */
  writeTable(w: Uint32Array, i: number, mfn: number): void;

  /** Leaf (4K page or superpage) vs table pointer, for a present entry at `level`. */
  isLeaf(lo: number, hi: number, level: number): boolean;
  /** Frame the entry points at (data frame for a leaf, table frame otherwise). */
  mfn(lo: number, hi: number): number;
  /** p2m type kept in software bits (leaf only). */
  type(lo: number, hi: number): P2mType;
  /** Access kept in software bits (leaf only); Access.RWX when !accessInEntry. */
  access(lo: number, hi: number): Access;
  /** Hardware R/W/X (PERM_* bits) a leaf grants; 0 = not present for the walker. */
  perms(lo: number, hi: number): number;
  /** Hardware R/W/X a table pointer lets through to the level below; 0 = not present. */
  tablePerms(lo: number, hi: number): number;
  accessed(lo: number, hi: number): boolean;
  dirty(lo: number, hi: number): boolean;
  setAccessed(w: Uint32Array, i: number): void;
  setDirty(w: Uint32Array, i: number): void;

  /** Whether the entry carries the recalc mark (the walker faults on it). */
  isRecalc(lo: number, hi: number): boolean;
  /** Whether the entry may be marked (Xen marks only hardware-present entries on x86). */
  canMark(lo: number, hi: number): boolean;
  markRecalc(w: Uint32Array, i: number): void;
  /** Clears the mark, leaving everything else as it was (table pointers, leaves whose type did not change). */
  clearRecalc(w: Uint32Array, i: number, level: number): void;
}

/**
 * Hardware R/W/X and preset A/D for a leaf of type `t` with access `a`.
 *
 * Follows Xen's ept_p2m_type_to_flags (xen/arch/x86/mm/p2m-ept.c): first the
 * type decides R/W/X and which of A/D are preset (A/D are only meaningful
 * when EPT A/D is on, the caller decides), then the access restricts them.
 *  - ram_rw: RWX, A=D=1 (a write never needs to set D: nothing to log);
 *  - ram_logdirty: R, X; W only if PML is on AND the entry is 4K (the CPU
 *    then logs the first write via D 0→1); superpages stay write-protected
 *    so the fault path splits them; D=0 always;
 *  - ram_ro, ram_shared: R, X, D=0; grant_map_ro: R; grant_map_rw/map_foreign: RW;
 *  - mmio_direct: RWX minus nothing we model (mmio_ro_ranges not modelled): RW X;
 *  - ioreq_server: R, W (no write-intercept flag modelled), no X;
 *  - invalid, mmio_dm, populate_on_demand, paging_*, broken: no access.
 * Access: n/n2rwx ⇒ none, r/r_pw ⇒ R, rx/rx2rw ⇒ R X, etc. (accessPerms).
 */
export function p2mTypeToFlags(t: P2mType, a: Access, superpage: boolean, hwFlags: number): number {
  let f: number;
  switch (t) {
    case P2mType.RamRw:
      f = PERM_R | PERM_W | PERM_X | FLAG_PRESET_A | FLAG_PRESET_D;
      break;
    case P2mType.RamLogdirty:
      f = PERM_R | PERM_X | FLAG_PRESET_A;
      if ((hwFlags & HW_PML) !== 0 && !superpage) f |= PERM_W;
      break;
    case P2mType.RamRo:
    case P2mType.RamShared:
      f = PERM_R | PERM_X | FLAG_PRESET_A;
      break;
    case P2mType.GrantMapRw:
    case P2mType.MapForeign:
      f = PERM_R | PERM_W | FLAG_PRESET_A | FLAG_PRESET_D;
      break;
    case P2mType.GrantMapRo:
      f = PERM_R | FLAG_PRESET_A;
      break;
    case P2mType.MmioDirect:
      f = PERM_R | PERM_W | PERM_X | FLAG_PRESET_A | FLAG_PRESET_D;
      break;
    case P2mType.IoreqServer:
      f = PERM_R | PERM_W | FLAG_PRESET_A | FLAG_PRESET_D;
      break;
    default:
      f = 0;
  }
  return (f & ~7) | (f & accessPerms(a) & 7);
}

/**
 * 4 KiB frames a mapping at each level covers: 1, 512, 2^18, 2^27. A table,
 * not `2 ** (9 * level)`: V8's pow with a variable exponent costs ~40 ns.
 */
export const LEVEL_SPANS: readonly number[] = [1, 512, 262144, 134217728];

/** Number of 4 KiB frames a mapping at `level` covers. */
export function levelSpan(level: number): number {
  return LEVEL_SPANS[level]!;
}

/** Index of `gfn` in the table at `level` (gfn < 2^36). */
export function levelIndex(gfn: number, level: number): number {
  // `&` truncates toward zero (ToInt32), which is floor for non-negative numbers;
  // the quotient is < 2^27 so it fits; for level 0 ToInt32 keeps the low bits.
  return level === 0 ? gfn & 511 : (gfn / LEVEL_SPANS[level]!) & 511;
}
