/**
 * AMD nested page tables (AMD APM Vol. 2 §15.25 "Nested Paging"): ordinary
 * x86-64 long-mode entries (APM Vol. 2 §5.3.3, Intel SDM Vol. 3A Table 4-19),
 * walked by the CPU with every guest access treated as a user access. Xen's
 * p2m-pt.c keeps the p2m type in the software-available high bits.
 *
 *   63  62  59 58      52 51                                12 11 10  9  8  7  6  5  4   3   2   1  0
 *  +--+-------+----------+------------------------------------+--------+--+--+--+--+---+---+---+---+--+
 *  |NX|access | p2m type |  mfn (host frame, level-aligned)   | avail  |G |PS|D |A |PCD|PWT|U/S|R/W|P |
 *  +--+-------+----------+------------------------------------+--------+--+--+--+--+---+---+---+---+--+
 *  hi31 hi30:27 hi26:20     hi19:0 | lo31:12                    lo11:9                              lo0
 *
 *  P, R/W, NX   present / writable / no-execute: the hardware permissions.
 *  U/S          always 1 in p2m entries: nested accesses are user accesses.
 *  A, D         Xen presets both on every present entry (P2M_BASE_FLAGS), so the
 *               CPU never writes them; the walker still sets them if clear.
 *  recalc mark  Xen's p2m-pt.c RECALC_FLAGS = U/S | A: set_recalc CLEARS both,
 *               clear_recalc sets them again; needs_recalc tests U/S alone
 *               (valid_recalc: A clear too). A nested walk through an entry with
 *               U/S clear takes a #NPF with P=1 (VMEXIT_NPF 0x400), and svm.c hands
 *               it to p2m_pt_handle_deferred_changes → do_recalc, which pushes the
 *               marks one table down along the faulting path and recomputes only
 *               the faulting entry (recalcScope 'entry').
 *  PS           2 MiB (PD) / 1 GiB (PDPT) page.
 *  p2m type     bits 58:52 (7 bits; Xen: flags = type << 12 in get_pte_flags space).
 *  access       bits 62:59 (p2m_access_t; Xen does not support mem_access on NPT,
 *               we do, restricting R/W/X the way EPT does).
 *  avail 11:9   unused here (Xen PV uses them for its own purposes).
 *
 * x86 cannot express "writable but not readable" or "execute-only": an entry whose
 * type ∧ access lacks R is written not-present (P=0) and keeps its type/mfn in
 * software bits, as Xen does for populate-on-demand and paged-out types.
 */
import { ExitReason } from '../../vm-exit.ts';
import { type Access, type P2mType, PERM_R, PERM_W, PERM_X } from '../p2m-type.ts';
import { type P2mFormat, p2mTypeToFlags } from '../p2m-format.ts';

export const NPT_P = 1 << 0;
export const NPT_RW = 1 << 1;
export const NPT_US = 1 << 2;
export const NPT_PWT = 1 << 3;
export const NPT_PCD = 1 << 4;
export const NPT_A = 1 << 5;
export const NPT_D = 1 << 6;
export const NPT_PS = 1 << 7;
export const NPT_G = 1 << 8;
/** Xen p2m-pt.c RECALC_FLAGS: the bits set_recalc clears and clear_recalc sets. */
export const NPT_RECALC_FLAGS = NPT_US | NPT_A;
export const NPT_LO_MFN_MASK = 0xfffff000;
export const NPT_HI_MFN_MASK = 0x000fffff;
export const NPT_HI_TYPE_SHIFT = 20;
export const NPT_HI_TYPE_MASK = 0x7f;
export const NPT_HI_ACCESS_SHIFT = 27;
export const NPT_HI_ACCESS_MASK = 0xf;
export const NPT_HI_NX = 1 << 31;

export const nptFormat: P2mFormat = {
  name: 'npt',
  violationExit: ExitReason.Npf,
  recalcExit: ExitReason.Npf,
  accessInEntry: true,
  // do_recalc recomputes only the faulting gfn's entry (p2m-pt.c).
  recalcScope: 'entry',

  hwDirty(): boolean {
    return true;
  },
  tableAccessIsWrite(): boolean {
    // APM §15.25.5: guest page-table accesses are treated as user writes by the nested walk.
    return true;
  },

  writeLeaf(w, i, level, mfn, type, access, hwFlags) {
    const f = p2mTypeToFlags(type, access, level > 0, hwFlags);
    let lo = (mfn & 0xfffff) << 12;
    let hi = (Math.floor(mfn / 0x100000) & NPT_HI_MFN_MASK) |
      ((type & NPT_HI_TYPE_MASK) << NPT_HI_TYPE_SHIFT) | ((access & NPT_HI_ACCESS_MASK) << NPT_HI_ACCESS_SHIFT);
    if (level > 0) lo |= NPT_PS;
    if ((f & PERM_R) !== 0) {
      lo |= NPT_P | NPT_US | NPT_A | NPT_D;
      if ((f & PERM_W) !== 0) lo |= NPT_RW;
      if ((f & PERM_X) === 0) hi |= NPT_HI_NX;
    } else {
      hi |= NPT_HI_NX;
    }
    w[i] = lo >>> 0;
    w[i + 1] = hi >>> 0;
  },

  writeTable(w, i, mfn) {
    w[i] = (NPT_P | NPT_RW | NPT_US | NPT_A | ((mfn & 0xfffff) << 12)) >>> 0;
    w[i + 1] = (Math.floor(mfn / 0x100000) & NPT_HI_MFN_MASK) >>> 0;
  },

  isLeaf(lo, _hi, level) {
    return level === 0 || (level < 3 && (lo & NPT_PS) !== 0);
  },
  mfn(lo, hi) {
    return (hi & NPT_HI_MFN_MASK) * 0x100000 + (lo >>> 12);
  },
  type(_lo, hi) {
    return ((hi >>> NPT_HI_TYPE_SHIFT) & NPT_HI_TYPE_MASK) as P2mType;
  },
  access(_lo, hi) {
    return ((hi >>> NPT_HI_ACCESS_SHIFT) & NPT_HI_ACCESS_MASK) as Access;
  },
  perms(lo, hi) {
    if ((lo & NPT_P) === 0) return 0;
    return PERM_R | ((lo & NPT_RW) !== 0 ? PERM_W : 0) | ((hi & NPT_HI_NX) === 0 ? PERM_X : 0);
  },
  tablePerms(lo, hi) {
    return nptFormat.perms(lo, hi);
  },
  accessed(lo) {
    return (lo & NPT_A) !== 0;
  },
  dirty(lo) {
    return (lo & NPT_D) !== 0;
  },
  setAccessed(w, i) {
    w[i] = (w[i]! | NPT_A) >>> 0;
  },
  setDirty(w, i) {
    w[i] = (w[i]! | NPT_D | NPT_A) >>> 0;
  },

  isRecalc(lo) {
    return (lo & (NPT_P | NPT_US)) === NPT_P;
  },
  canMark(lo) {
    return (lo & NPT_P) !== 0;
  },
  markRecalc(w, i) {
    // set_recalc: remove RECALC_FLAGS (p2m-pt.c).
    w[i] = (w[i]! & ~NPT_RECALC_FLAGS) >>> 0;
  },
  clearRecalc(w, i) {
    // clear_recalc: add RECALC_FLAGS back.
    w[i] = (w[i]! | NPT_RECALC_FLAGS) >>> 0;
  },
};
