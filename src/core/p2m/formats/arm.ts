/**
 * ARM VMSAv8-64 stage-2 translation table descriptors, 4 KiB granule
 * (Arm ARM DDI 0487, §D8.3 "Translation table descriptor formats"; stage-2
 * attributes D8.4/D8.5), with Xen ARM's software type field
 * (xen/arch/arm/include/asm/lpae.h, lpae_p2m_t).
 *
 * Block (level 1/2 = our 2/1) and page (level 3 = our 0) descriptors:
 *
 *   63  59 58   55 54 53 52 51  48 47                          12 11 10  9  8  7  6  5    2  1  0
 *  +------+-------+-----+--+------+------------------------------+--+--+-----+-----+-------+--+--+
 *  | ign. |p2mtype| XN  |C | res0 |  output address (mfn)        |nT|AF| SH  |S2AP |MemAttr|T |V |
 *  +------+-------+-----+--+------+------------------------------+--+--+-----+-----+-------+--+--+
 *          hi26:23 hi22:21 hi20     hi15:0 | lo31:12                                          lo0
 *
 *  V        valid (bit 0). 0 ⇒ translation fault (a stage-2 data/instruction abort, EC 0x24/0x20).
 *  T        bit 1: 1 = table (levels 0-2) or page (level 3); 0 = block (levels 1-2).
 *  MemAttr  5:2 stage-2 memory attributes: 0b1111 Normal WB, 0b0001 Device-nGnRE.
 *  S2AP     7:6 stage-2 access: bit 6 = read, bit 7 = write (00 none, 01 RO, 10 WO, 11 RW).
 *  SH       9:8 shareability, 0b11 inner shareable for Normal memory.
 *  AF       10 access flag; Xen sets it on every entry (no hardware AF/DBM management),
 *           so stage 2 has no hardware dirty bit: dirty tracking is by write protection.
 *  C        52 contiguous hint; never set here (ignored).
 *  XN       54:53; we write 0b10 (never executable) or 0b00, as Xen's single xn bit at 54.
 *  p2mtype  58:55 (4 bits, Xen ARM's `type`); we store memvisor's (x86) P2mType numbers.
 *
 * Access rights: only 4 software bits exist, all taken by the type, so Xen ARM keeps
 * p2m_access_t in a radix tree beside the p2m (p2m->mem_access_settings). The p2m
 * (p2m.ts) does the same with a sparse Map from the mapping's first gfn to its
 * access; absent ⇒ rwx. access() here therefore always reports rwx.
 *
 * Lazy invalidation (Xen ARM p2m_invalidate_root / p2m_resolve_translation_fault):
 * the valid bit is cleared and every other bit kept; the next access takes a
 * translation fault and the p2m revalidates (and recomputes types) on the way down.
 *
 * Table descriptors: V = T = 1, next-level table address in 47:12; stage-2 table
 * descriptors carry no hierarchical permissions (their upper attributes are RES0).
 */
import { ExitReason } from '../../vm-exit.ts';
import { Access, P2mType, PERM_R, PERM_W, PERM_X } from '../p2m-type.ts';
import { type P2mFormat, p2mTypeToFlags } from '../p2m-format.ts';

export const ARM_VALID = 1 << 0;
export const ARM_TABLE = 1 << 1;
export const ARM_MEMATTR_SHIFT = 2;
export const ARM_MEMATTR_NORMAL_WB = 0b1111;
export const ARM_MEMATTR_DEVICE_NGNRE = 0b0001;
export const ARM_S2AP_R = 1 << 6;
export const ARM_S2AP_W = 1 << 7;
export const ARM_SH_SHIFT = 8;
export const ARM_SH_INNER = 0b11;
export const ARM_AF = 1 << 10;
export const ARM_LO_MFN_MASK = 0xfffff000;
/** High word: output address 47:32 at 15:0; contiguous 52 at 20; XN 54:53 at 22:21; type 58:55 at 26:23. */
export const ARM_HI_MFN_MASK = 0x0000ffff;
export const ARM_HI_CONTIG = 1 << 20;
export const ARM_HI_XN = 1 << 22;
export const ARM_HI_TYPE_SHIFT = 23;
export const ARM_HI_TYPE_MASK = 0xf;

export const armFormat: P2mFormat = {
  name: 'arm',
  violationExit: ExitReason.Stage2Abort,
  recalcExit: ExitReason.Stage2Abort,
  accessInEntry: false,
  // Kept per table here. Xen ARM's p2m_resolve_translation_fault revalidates one entry per
  // level per fault, but no log-dirty mode here relies on it: arm-wp write-protects eagerly (arm-wp.ts).
  recalcScope: 'table',

  hwDirty(): boolean {
    return false;
  },
  tableAccessIsWrite(): boolean {
    // Stage-1 walks are reads for stage 2 unless hardware AF/DBM updates are on (not modelled).
    return false;
  },

  writeLeaf(w, i, level, mfn, type, access, hwFlags) {
    const f = p2mTypeToFlags(type, access, level > 0, hwFlags);
    const attr = type === P2mType.MmioDirect ? ARM_MEMATTR_DEVICE_NGNRE : ARM_MEMATTR_NORMAL_WB;
    let lo = ARM_VALID | (attr << ARM_MEMATTR_SHIFT) | (ARM_SH_INNER << ARM_SH_SHIFT) | ARM_AF |
      ((mfn & 0xfffff) << 12);
    if (level === 0) lo |= ARM_TABLE; // page descriptor; blocks have bit 1 clear
    if ((f & PERM_R) !== 0) lo |= ARM_S2AP_R;
    if ((f & PERM_W) !== 0) lo |= ARM_S2AP_W;
    let hi = (Math.floor(mfn / 0x100000) & ARM_HI_MFN_MASK) | ((type & ARM_HI_TYPE_MASK) << ARM_HI_TYPE_SHIFT);
    if ((f & PERM_X) === 0) hi |= ARM_HI_XN;
    w[i] = lo >>> 0;
    w[i + 1] = hi >>> 0;
  },

  writeTable(w, i, mfn) {
    w[i] = (ARM_VALID | ARM_TABLE | ((mfn & 0xfffff) << 12)) >>> 0;
    w[i + 1] = (Math.floor(mfn / 0x100000) & ARM_HI_MFN_MASK) >>> 0;
  },

  isLeaf(lo, _hi, level) {
    return level === 0 || (level < 3 && (lo & ARM_TABLE) === 0);
  },
  mfn(lo, hi) {
    return (hi & ARM_HI_MFN_MASK) * 0x100000 + (lo >>> 12);
  },
  type(_lo, hi) {
    return ((hi >>> ARM_HI_TYPE_SHIFT) & ARM_HI_TYPE_MASK) as P2mType;
  },
  access() {
    return Access.RWX;
  },
  perms(lo, hi) {
    if ((lo & ARM_VALID) === 0) return 0;
    return ((lo & ARM_S2AP_R) !== 0 ? PERM_R : 0) | ((lo & ARM_S2AP_W) !== 0 ? PERM_W : 0) |
      ((hi & ARM_HI_XN) === 0 ? PERM_X : 0);
  },
  tablePerms(lo) {
    // Stage-2 table descriptors carry no permissions: valid ⇒ everything passes.
    return (lo & ARM_VALID) !== 0 ? PERM_R | PERM_W | PERM_X : 0;
  },
  accessed(lo) {
    return (lo & ARM_AF) !== 0;
  },
  dirty() {
    return false;
  },
  setAccessed(w, i) {
    w[i] = (w[i]! | ARM_AF) >>> 0;
  },
  setDirty() {
    // No hardware dirty state in stage 2 without FEAT_HAFDBS.
  },

  isRecalc(lo, hi) {
    return (lo & ARM_VALID) === 0 && (lo | hi) !== 0;
  },
  canMark(lo, hi) {
    return (lo | hi) !== 0;
  },
  markRecalc(w, i) {
    w[i] = (w[i]! & ~ARM_VALID) >>> 0;
  },
  clearRecalc(w, i) {
    w[i] = (w[i]! | ARM_VALID) >>> 0;
  },
};
