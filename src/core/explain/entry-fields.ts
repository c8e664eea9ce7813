/**
 * Paging-structure entries decoded into the names their manuals give the
 * fields, for the walk explainer (walk-explainer.ts): an x86-64 guest entry
 * (formats/x86-pte.ts), Intel EPT (p2m/formats/ept.ts), AMD NPT
 * (p2m/formats/npt.ts), ARM stage-2 (p2m/formats/arm.ts). Every bit is read
 * through the named constants of the format's own file, whose bit diagram
 * says where it sits; nothing here is on a walk's path.
 *
 * Values: a flag is a boolean, a field a number, a frame a hex string, a
 * p2m type or access its Xen name. Levels are the walker's (guest 4..1,
 * p2m 3..0).
 */
import { PTE_A, PTE_D, PTE_G, PTE_HI_NX, PTE_P, PTE_PCD, PTE_PS, PTE_PWT, PTE_RW, PTE_US, pteGfn } from '../formats/x86-pte.ts';
import {
  ARM_AF, ARM_HI_CONTIG, ARM_HI_TYPE_MASK, ARM_HI_TYPE_SHIFT, ARM_HI_XN, ARM_MEMATTR_SHIFT, ARM_S2AP_R, ARM_S2AP_W,
  ARM_SH_SHIFT, ARM_TABLE, ARM_VALID,
} from '../p2m/formats/arm.ts';
import {
  EPT_A, EPT_D, EPT_EMT_MASK, EPT_EMT_SHIFT, EPT_HI_ACCESS_MASK, EPT_HI_ACCESS_SHIFT, EPT_HI_SVE, EPT_HI_TYPE_MASK,
  EPT_HI_TYPE_SHIFT, EPT_IPAT, EPT_R, EPT_RECALC, EPT_SP, EPT_UX, EPT_W, EPT_X,
} from '../p2m/formats/ept.ts';
import {
  NPT_A, NPT_D, NPT_G, NPT_HI_ACCESS_MASK, NPT_HI_ACCESS_SHIFT, NPT_HI_NX, NPT_HI_TYPE_MASK, NPT_HI_TYPE_SHIFT, NPT_P,
  NPT_PCD, NPT_PS, NPT_PWT, NPT_RW, NPT_US,
} from '../p2m/formats/npt.ts';
import type { P2mFormat } from '../p2m/p2m-format.ts';
import { ACCESS_NAMES, P2M_TYPE_NAMES } from '../p2m/p2m-type.ts';

export type FieldValue = boolean | number | string;
export type EntryFields = Record<string, FieldValue>;

const hex = (n: number): string => `0x${n.toString(16)}`;
const typeName = (t: number): string => P2M_TYPE_NAMES[t] ?? `type ${t}`;
const accessName = (a: number): string => ACCESS_NAMES[a] ?? `access ${a}`;

/** Memory types of EPT's EMT field and a PAT entry (SDM Vol. 3A Table 12-8); 7 is Xen's misconfig mark. */
const MEMORY_TYPES = ['UC', 'WC', 'reserved', 'reserved', 'WT', 'WP', 'WB', 'invalid (misconfig)'];

/**
 * An x86-64 4-level entry (SDM Vol. 3A Tables 4-15..4-20): a guest entry
 * (frame = gfn) or a shadow entry (frame = mfn). PS means something only in
 * a PDPTE or PDE, so a PML4E or PTE shows no PS.
 */
export function x86EntryFields(lo: number, hi: number, level: number, frameName: 'gfn' | 'mfn'): EntryFields {
  const f: EntryFields = {
    P: (lo & PTE_P) !== 0,
    'R/W': (lo & PTE_RW) !== 0,
    'U/S': (lo & PTE_US) !== 0,
    PWT: (lo & PTE_PWT) !== 0,
    PCD: (lo & PTE_PCD) !== 0,
    A: (lo & PTE_A) !== 0,
  };
  const leaf = level === 1 || ((level === 2 || level === 3) && (lo & PTE_PS) !== 0);
  if (level === 2 || level === 3) f.PS = (lo & PTE_PS) !== 0;
  if (leaf) {
    f.D = (lo & PTE_D) !== 0;
    f.G = (lo & PTE_G) !== 0;
  }
  f.XD = (hi & PTE_HI_NX) !== 0;
  f[frameName] = hex(pteGfn(lo, hi));
  return f;
}

/** An EPT entry (SDM Vol. 3C Tables 29-1..29-6) with Xen's software fields (ept_entry_t). */
export function eptEntryFields(lo: number, hi: number, level: number, fmt: P2mFormat): EntryFields {
  const leaf = fmt.isLeaf(lo, hi, level);
  const f: EntryFields = { R: (lo & EPT_R) !== 0, W: (lo & EPT_W) !== 0, X: (lo & EPT_X) !== 0 };
  const emt = (lo & EPT_EMT_MASK) >>> EPT_EMT_SHIFT;
  if (leaf) {
    f.memtype = `${emt} ${MEMORY_TYPES[emt]}`;
    f.IPAT = (lo & EPT_IPAT) !== 0;
    if (level > 0) f.SP = (lo & EPT_SP) !== 0;
  } else if (emt !== 0) {
    // Bits 5:3 of a non-leaf entry are reserved: a non-zero value is Xen's misconfig mark.
    f['reserved 5:3'] = emt;
  }
  f.A = (lo & EPT_A) !== 0;
  if (leaf) f.D = (lo & EPT_D) !== 0;
  f.UX = (lo & EPT_UX) !== 0;
  f.recalc = (lo & EPT_RECALC) !== 0;
  f.mfn = hex(fmt.mfn(lo, hi));
  if (leaf) {
    f.sa_p2mt = typeName((hi >>> EPT_HI_TYPE_SHIFT) & EPT_HI_TYPE_MASK);
    f.access = accessName((hi >>> EPT_HI_ACCESS_SHIFT) & EPT_HI_ACCESS_MASK);
  }
  f.SVE = (hi & EPT_HI_SVE) !== 0;
  return f;
}

/** An NPT entry: x86-64 long mode (APM Vol. 2 §5.3.3) with Xen's p2m-pt.c software fields. */
export function nptEntryFields(lo: number, hi: number, level: number, fmt: P2mFormat): EntryFields {
  const leaf = fmt.isLeaf(lo, hi, level);
  const f: EntryFields = {
    P: (lo & NPT_P) !== 0,
    RW: (lo & NPT_RW) !== 0,
    US: (lo & NPT_US) !== 0,
    PWT: (lo & NPT_PWT) !== 0,
    PCD: (lo & NPT_PCD) !== 0,
    A: (lo & NPT_A) !== 0,
    D: (lo & NPT_D) !== 0,
  };
  if (level === 1 || level === 2) f.PS = (lo & NPT_PS) !== 0;
  if (leaf) f.G = (lo & NPT_G) !== 0;
  f.NX = (hi & NPT_HI_NX) !== 0;
  f.mfn = hex(fmt.mfn(lo, hi));
  if (leaf) {
    f.p2m_type = typeName((hi >>> NPT_HI_TYPE_SHIFT) & NPT_HI_TYPE_MASK);
    f.access = accessName((hi >>> NPT_HI_ACCESS_SHIFT) & NPT_HI_ACCESS_MASK);
  }
  return f;
}

const S2AP_NAMES = ['none', 'RO', 'WO', 'RW'];
const SH_NAMES = ['non-shareable', 'reserved', 'outer', 'inner'];

/** An ARM stage-2 descriptor, 4 KiB granule (Arm ARM D8.3), with Xen ARM's type field. Levels shown as ARM's (3 - ours). */
export function armEntryFields(lo: number, hi: number, level: number, fmt: P2mFormat): EntryFields {
  const f: EntryFields = { V: (lo & ARM_VALID) !== 0 };
  const leaf = fmt.isLeaf(lo, hi, level);
  f.T = (lo & ARM_TABLE) !== 0;
  f.descriptor = !leaf ? 'table' : level === 0 ? 'page' : 'block';
  if (leaf) {
    f.MemAttr = (lo >>> ARM_MEMATTR_SHIFT) & 0xf;
    const ap = ((lo & ARM_S2AP_R) !== 0 ? 1 : 0) | ((lo & ARM_S2AP_W) !== 0 ? 2 : 0);
    f.S2AP = S2AP_NAMES[ap]!;
    f.SH = SH_NAMES[(lo >>> ARM_SH_SHIFT) & 3]!;
    f.AF = (lo & ARM_AF) !== 0;
    f.Contiguous = (hi & ARM_HI_CONTIG) !== 0;
    f.XN = (hi & ARM_HI_XN) !== 0;
  }
  f.OA = hex(fmt.mfn(lo, hi) * 4096);
  if (leaf) f.p2m_type = typeName((hi >>> ARM_HI_TYPE_SHIFT) & ARM_HI_TYPE_MASK);
  return f;
}

/** The decoder for a p2m format. */
export function p2mEntryFields(fmt: P2mFormat, lo: number, hi: number, level: number): EntryFields {
  return fmt.name === 'ept' ? eptEntryFields(lo, hi, level, fmt)
    : fmt.name === 'npt' ? nptEntryFields(lo, hi, level, fmt)
      : armEntryFields(lo, hi, level, fmt);
}

/** A p2m level as the format's manual numbers it: EPT/NPT 4..1 (PML4..PT), ARM 0..3. */
export function p2mLevelNumber(fmt: P2mFormat, level: number): number {
  return fmt.name === 'arm' ? 3 - level : level + 1;
}

/** The flags that went from false to true between two decodings of one entry: the A/D (AF) bits a walk set. */
export function fieldsSet(before: EntryFields, after: EntryFields): string[] {
  const set: string[] = [];
  for (const k of Object.keys(after)) if (after[k] === true && before[k] === false) set.push(k);
  return set;
}
