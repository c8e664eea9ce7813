/**
 * Intel EPT paging-structure entries (Intel SDM Vol. 3C §29.3.2, Tables 29-1..29-6;
 * misconfigurations §29.3.3.1; A/D flags §29.3.5; PML §29.3.6), with Xen's
 * software fields (xen/arch/x86/include/asm/hvm/vmx/vmx.h, ept_entry_t).
 *
 * Leaf (4K page, or superpage at level 1/2 with SP=1):
 *
 *   63  62  61   58 57     52 51                                12 11  10  9  8  7  6  5   3  2  1  0
 *  +---+---+-------+---------+------------------------------------+---+---+--+--+--+---+-----+--+--+--+
 *  |SVE| - |access | sa_p2mt |  mfn (host frame, level-aligned)   |RC |UX |D |A |SP|IPT| EMT |X |W |R |
 *  +---+---+-------+---------+------------------------------------+---+---+--+--+--+---+-----+--+--+--+
 *   hi31     hi29:26 hi25:20    hi19:0 | lo31:12                     lo11 ...                      lo0
 *
 *  R/W/X  read / write / supervisor-execute permission (bits 2:0); all 0 = not present.
 *  EMT    EPT memory type (5:3): 6 = WB for RAM, 0 = UC for MMIO; 7 is invalid ⇒ EPT misconfig.
 *  IPT    ignore guest PAT (6).     SP  maps a 2 MiB / 1 GiB page (7).
 *  A, D   accessed (8), dirty (9), set by the CPU only when EPT A/D is on (EPTP bit 6).
 *  UX     user-mode execute when MBEC is on (10); never set here.
 *  RC     software "recalc" (11, ignored by hardware): the type must be recomputed.
 *         Xen keeps it in bit 10 (it never enables MBEC); we keep bit 10 for UX.
 *  sa_p2mt  p2m type (57:52, 6 bits, Xen's sa_p2mt).   access  p2m_access_t (61:58).
 *  SVE    suppress #VE (63), set on every entry as Xen does.
 *
 * Non-leaf entries: R/W/X = 1, bits 7:3 reserved (must be 0), A (8), address of the
 * next table in 51:12. Xen's lazy type change marks an entry with EMT = 7 and RC = 1:
 * on a leaf, memory type 7 is invalid; on a non-leaf, bits 5:3 are reserved; either
 * way the walk ends in an EPT misconfiguration (VM exit 49) and Xen's
 * resolve_misconfig pushes the mark down (p2m.ts).
 */
import { ExitReason } from '../../vm-exit.ts';
import { type Access, P2mType, PERM_R, PERM_W, PERM_X } from '../p2m-type.ts';
import { FLAG_PRESET_A, FLAG_PRESET_D, HW_EPT_AD, type P2mFormat, p2mTypeToFlags } from '../p2m-format.ts';

export const EPT_R = 1 << 0;
export const EPT_W = 1 << 1;
export const EPT_X = 1 << 2;
export const EPT_RWX = EPT_R | EPT_W | EPT_X;
export const EPT_EMT_SHIFT = 3;
export const EPT_EMT_MASK = 7 << EPT_EMT_SHIFT;
/** Memory types (SDM Vol. 3A §12.3 / Table 12-8). */
export const EPT_EMT_UC = 0;
export const EPT_EMT_WB = 6;
/** Xen's MTRR_NUM_TYPES: an invalid memory type, used as the misconfig mark. */
export const EPT_EMT_MISCONFIG = 7;
export const EPT_IPAT = 1 << 6;
export const EPT_SP = 1 << 7;
export const EPT_A = 1 << 8;
export const EPT_D = 1 << 9;
export const EPT_UX = 1 << 10;
export const EPT_RECALC = 1 << 11;
export const EPT_LO_MFN_MASK = 0xfffff000;
/** High word: mfn bits 51:32 at 19:0; sa_p2mt 57:52 at 25:20; access 61:58 at 29:26; SVE 63 at 31. */
export const EPT_HI_MFN_MASK = 0x000fffff;
export const EPT_HI_TYPE_SHIFT = 20;
export const EPT_HI_TYPE_MASK = 0x3f;
export const EPT_HI_ACCESS_SHIFT = 26;
export const EPT_HI_ACCESS_MASK = 0xf;
export const EPT_HI_SVE = 1 << 31;

const MISCONFIG_BITS = (EPT_EMT_MISCONFIG << EPT_EMT_SHIFT);

function emtFor(t: P2mType): number {
  return t === P2mType.MmioDirect ? EPT_EMT_UC : EPT_EMT_WB;
}

export const eptFormat: P2mFormat = {
  name: 'ept',
  violationExit: ExitReason.EptViolation,
  recalcExit: ExitReason.EptMisconfig,
  accessInEntry: true,
  // resolve_misconfig recomputes the whole leaf table (p2m-ept.c).
  recalcScope: 'table',

  hwDirty(hwFlags: number): boolean {
    return (hwFlags & HW_EPT_AD) !== 0;
  },
  tableAccessIsWrite(hwFlags: number): boolean {
    // SDM §29.3.3.2: with EPT A/D on, guest paging-structure accesses are writes for EPT.
    return (hwFlags & HW_EPT_AD) !== 0;
  },

  writeLeaf(w, i, level, mfn, type, access, hwFlags) {
    const sp = level > 0;
    const f = p2mTypeToFlags(type, access, sp, hwFlags);
    let lo = (f & 7) | (emtFor(type) << EPT_EMT_SHIFT) | EPT_IPAT | ((mfn & 0xfffff) << 12);
    if (sp) lo |= EPT_SP;
    // Xen presets A/D from the CPU's capability (cpu_has_vmx_ept_ad), not from
    // whether A/D is enabled in the EPTP; the CPU ignores them when it is off.
    if ((f & FLAG_PRESET_A) !== 0) lo |= EPT_A;
    if ((f & FLAG_PRESET_D) !== 0) lo |= EPT_D;
    w[i] = lo >>> 0;
    w[i + 1] = ((Math.floor(mfn / 0x100000) & EPT_HI_MFN_MASK) |
      ((type & EPT_HI_TYPE_MASK) << EPT_HI_TYPE_SHIFT) |
      ((access & EPT_HI_ACCESS_MASK) << EPT_HI_ACCESS_SHIFT) | EPT_HI_SVE) >>> 0;
  },

  writeTable(w, i, mfn) {
    // Xen's ept_set_middle_entry: RWX, A preset so the CPU never has to write it.
    w[i] = (EPT_RWX | EPT_A | ((mfn & 0xfffff) << 12)) >>> 0;
    w[i + 1] = ((Math.floor(mfn / 0x100000) & EPT_HI_MFN_MASK) | EPT_HI_SVE) >>> 0;
  },

  isLeaf(lo, _hi, level) {
    return level === 0 || (level < 3 && (lo & EPT_SP) !== 0);
  },
  mfn(lo, hi) {
    return (hi & EPT_HI_MFN_MASK) * 0x100000 + (lo >>> 12);
  },
  type(_lo, hi) {
    return ((hi >>> EPT_HI_TYPE_SHIFT) & EPT_HI_TYPE_MASK) as P2mType;
  },
  access(_lo, hi) {
    return ((hi >>> EPT_HI_ACCESS_SHIFT) & EPT_HI_ACCESS_MASK) as Access;
  },
  perms(lo) {
    return lo & EPT_RWX; // PERM_R/W/X have the same bit positions as EPT R/W/X.
  },
  tablePerms(lo) {
    return lo & EPT_RWX;
  },
  accessed(lo) {
    return (lo & EPT_A) !== 0;
  },
  dirty(lo) {
    return (lo & EPT_D) !== 0;
  },
  setAccessed(w, i) {
    w[i] = (w[i]! | EPT_A) >>> 0;
  },
  setDirty(w, i) {
    w[i] = (w[i]! | EPT_D | EPT_A) >>> 0;
  },

  isRecalc(lo) {
    return (lo & EPT_EMT_MASK) === MISCONFIG_BITS;
  },
  canMark(lo) {
    // ept_invalidate_emt_subtree skips entries that are not present (no R/W/X).
    return (lo & EPT_RWX) !== 0;
  },
  markRecalc(w, i) {
    w[i] = ((w[i]! & ~EPT_EMT_MASK) | MISCONFIG_BITS | EPT_RECALC) >>> 0;
  },
  clearRecalc(w, i, level) {
    const lo = w[i]!;
    const leaf = level === 0 || (level < 3 && (lo & EPT_SP) !== 0);
    const emt = leaf ? emtFor(((w[i + 1]! >>> EPT_HI_TYPE_SHIFT) & EPT_HI_TYPE_MASK) as P2mType) : 0;
    w[i] = ((lo & ~(EPT_EMT_MASK | EPT_RECALC)) | (emt << EPT_EMT_SHIFT)) >>> 0;
  },
};

// The permission bits are shared with PERM_* so perms() needs no translation.
if (PERM_R !== EPT_R || PERM_W !== EPT_W || PERM_X !== EPT_X) throw new Error('EPT/PERM bit mismatch');
