/**
 * Explains one translation reference by reference: the vCPU's own walker runs
 * once more with a WalkTracer attached (mmu/walk-tracer.ts), and every entry
 * it reads, every A/D flag it sets and every cache that answered instead of
 * memory is reported in order, then the outcome (gva → gpa → hpa, or the exit
 * as the hypervisor would receive it). No second walker: the rows are what
 * Mmu.translate did.
 *
 * The explanation leaves the run as it found it: the TLB, nested TLB and PDE
 * cache, the counters, the exit record, the PML unit and log frame, and every
 * entry the walk wrote (A/D flags) are saved first and put back after, so a
 * run continued after an explanation is the run without it (tested).
 *
 * The classic figure of a 2-D walk (Bhargava et al., ASPLOS 2008) is a grid:
 * columns are the guest's steps (its PML4, PDPT, PD, PT tables, then the data
 * gpa), rows the second-stage levels translating each of them, then the
 * guest entry read. `column` on each row places it in that figure: 0..3 for
 * the guest tables at levels 4..1, 4 for the data gpa (and for every row of a
 * 1-D walk); a shadow walk's rows are one row of four (column 4 - level).
 *
 * Units: addresses in bytes, shown as hex strings; gfn/mfn are 4 KiB frames.
 */
import type { Vcpu } from '../domain/vcpu.ts';
import {
  ARM_DFSC_PERMISSION, ARM_DFSC_TRANSLATION, ARM_ISS_S1PTW, ARM_ISS_WNR, EPT_QUAL_FETCH, EPT_QUAL_GLA_FINAL,
  EPT_QUAL_GLA_VALID, EPT_QUAL_PERM_SHIFT, EPT_QUAL_READ, EPT_QUAL_WRITE, NPF_HI_FINAL, NPF_HI_TABLE, NPF_ID, NPF_P,
  NPF_RSV, NPF_RW, NPF_US,
} from '../mmu/exit-info.ts';
import { TLB_R, TLB_WD, TLB_X } from '../mmu/tlb.ts';
import type { WalkTracer } from '../mmu/walk-tracer.ts';
import { PFEC_FETCH, PFEC_PRESENT, PFEC_WRITE, XLATE_EXIT, XLATE_GUEST_PF, XLATE_OK } from '../mmu/walker.ts';
import type { P2mFormat } from '../p2m/p2m-format.ts';
import { PERM_R, PERM_W, PERM_X } from '../p2m/p2m-type.ts';
import { EXIT_REASON_NAMES } from '../vm-exit.ts';
import { type EntryFields, fieldsSet, p2mEntryFields, p2mLevelNumber, x86EntryFields } from './entry-fields.ts';

export type WalkKind = '2-d' | '1-d' | 'shadow';
export type WalkStage = 'guest' | 'second' | 'shadow';
export type WalkCache = 'tlb' | 'nested_tlb' | 'pde_cache';
export type WalkAccess = 'read' | 'write' | 'fetch';

export interface WalkReference {
  readonly stage: WalkStage;
  /** The level as the stage's manual numbers it (x86 and EPT/NPT 4..1, ARM stage 2 0..3); null for a TLB hit. */
  readonly level: number | null;
  /** PML4E, EPT PDE, stage-2 L3, ...: the entry's name in its manual. */
  readonly name: string;
  /** Column of the 2-D walk figure (see the header). */
  readonly column: number;
  /** What the reference served: a guest table read, the A/D write-back to it, or the data gpa. */
  readonly purpose: 'walk' | 'guest A/D write' | 'data';
  /** The gpa a second-stage row translates (its frame, 4 KiB aligned). */
  readonly gpa: string | null;
  /** Base address of the table read: a gpa for guest entries, an hpa for second-stage and shadow ones. */
  readonly table: string | null;
  readonly index: number | null;
  /** The raw 64-bit entry as the walk read it (before it set A/D), 0x + 16 hex digits. */
  readonly entry: string | null;
  readonly fields: EntryFields;
  /** Flags this walk set in the entry (A, D; AF on ARM). */
  readonly set: string[];
  /** The cache that answered instead of this reference, or null for a memory reference. */
  readonly cached_by: WalkCache | null;
}

export interface WalkExit {
  /** The contract's exit reason name (ept_violation, npf, stage2_abort, pml_full, ...), or guest_pf. */
  readonly reason: string;
  /** Who receives it: the hypervisor (a VM exit) or the guest (its own #PF, no exit under HAP). */
  readonly to: 'hypervisor' | 'guest';
  readonly gpa: string | null;
  readonly gva: string | null;
  /** The p2m level where the walk stopped, as the format numbers it. */
  readonly level: number | null;
  /** The faulting access was to a guest paging-structure entry, not to the data. */
  readonly table_access: boolean;
  /** The walk met a recalc-marked entry (Xen's lazy type change). */
  readonly recalc: boolean;
  /** EPT exit qualification, NPT EXITINFO1 (the #NPF error code), ARM ESR_EL2 ISS, or the #PF error code. */
  readonly code_name: 'qualification' | 'error_code' | 'iss' | null;
  readonly code: string | null;
  readonly decoded: Record<string, boolean | number | string>;
}

export interface WalkExplanation {
  readonly walk: WalkKind;
  readonly format: string;
  readonly vcpu: number;
  readonly access: WalkAccess;
  readonly cold: boolean;
  readonly gva: string | null;
  readonly gpa: string | null;
  readonly hpa: string | null;
  readonly references: WalkReference[];
  /** Rows that read memory (cached_by null). */
  readonly memory_references: number;
  readonly exit: WalkExit | null;
  /** PML: the gpa this walk logged (D 0→1 on an EPT leaf), and the index before → after. */
  readonly pml: { readonly logged: string[]; readonly index_before: number; readonly index_after: number } | null;
  /** With `withNext`: the same translation once more right after this one, with the caches this walk filled. */
  readonly next?: WalkExplanation;
}

const hex = (n: number): string => `0x${n.toString(16)}`;
const hex64 = (lo: number, hi: number): string => `0x${(hi >>> 0).toString(16).padStart(8, '0')}${(lo >>> 0).toString(16).padStart(8, '0')}`;

const GUEST_NAMES = ['', 'PTE', 'PDE', 'PDPTE', 'PML4E'];

function p2mName(fmt: P2mFormat, level: number): string {
  if (fmt.name === 'arm') return `stage-2 L${3 - level}`;
  return `${fmt.name === 'ept' ? 'EPT' : 'nested'} ${GUEST_NAMES[level + 1]}`;
}

export function accessOfPerm(need: number): WalkAccess {
  return (need & PERM_W) !== 0 ? 'write' : (need & PERM_X) !== 0 ? 'fetch' : 'read';
}

/** One raw reference as the tracer saw it. */
interface RawRef {
  stage: WalkStage;
  level: number;
  column: number;
  purpose: WalkReference['purpose'];
  gfn: number;
  tableBase: number;
  index: number;
  words: Uint32Array;
  i: number;
  lo: number;
  hi: number;
}

/** Records the walk (WalkTracer) and builds its rows. */
class Recorder implements WalkTracer {
  readonly refs: (RawRef | WalkReference)[] = [];
  /** The data gfn of the final nested translation (2-D). */
  dataGfn = -1;
  private nextLevel = 4;
  private column: number;
  private purpose: WalkReference['purpose'];
  private nestedGfn = -1;
  /** The guest entry read last, while no translation has started since (its A/D write-back comes next). */
  private lastGuest: { level: number; tableGfn: number } | null = null;

  constructor(private readonly fmt: P2mFormat, twoD: boolean) {
    this.column = twoD ? 0 : 4;
    this.purpose = twoD ? 'walk' : 'data';
  }

  guestEntry(level: number, tableGfn: number, idx: number, words: Uint32Array, i: number): void {
    this.refs.push({
      stage: 'guest', level, column: 4 - level, purpose: 'walk', gfn: tableGfn, tableBase: tableGfn * 4096, index: idx,
      words, i, lo: words[i]!, hi: words[i + 1]!,
    });
    this.lastGuest = { level, tableGfn };
    this.nextLevel = level - 1;
  }

  pdeHit(): void {
    for (let level = 4; level >= 2; level--) {
      this.refs.push(cachedRow('guest', level, GUEST_NAMES[level]!, 4 - level, 'walk', null, 'pde_cache'));
    }
    this.nextLevel = 1;
  }

  nested(gfn: number, need: number, final: boolean, hit: boolean): void {
    if (final) {
      this.column = 4;
      this.purpose = 'data';
      this.dataGfn = gfn;
    } else if (this.lastGuest !== null && this.lastGuest.tableGfn === gfn && (need & PERM_W) !== 0) {
      this.column = 4 - this.lastGuest.level;
      this.purpose = 'guest A/D write';
    } else {
      this.column = 4 - this.nextLevel;
      this.purpose = 'walk';
    }
    this.lastGuest = null;
    this.nestedGfn = gfn;
    if (hit) this.refs.push(cachedRow('second', null, 'nested TLB', this.column, this.purpose, hex(gfn * 4096), 'nested_tlb'));
  }

  p2mEntry(level: number, tableMfn: number, idx: number, words: Uint32Array, i: number): void {
    this.refs.push({
      stage: 'second', level, column: this.column, purpose: this.purpose, gfn: this.nestedGfn, tableBase: tableMfn * 4096,
      index: idx, words, i, lo: words[i]!, hi: words[i + 1]!,
    });
  }

  shadowEntry(level: number, tableMfn: number, idx: number, words: Uint32Array, i: number): void {
    this.refs.push({
      stage: 'shadow', level, column: 4 - level, purpose: 'walk', gfn: -1, tableBase: tableMfn * 4096, index: idx,
      words, i, lo: words[i]!, hi: words[i + 1]!,
    });
  }

  /** Decodes each memory reference, with the flags set between it and the next read of the same entry (or the walk's end). */
  rows(): WalkReference[] {
    const out: WalkReference[] = [];
    const refs = this.refs;
    for (let k = 0; k < refs.length; k++) {
      const r = refs[k]!;
      if (!('words' in r)) {
        out.push(r);
        continue;
      }
      let afterLo = r.words[r.i]!;
      let afterHi = r.words[r.i + 1]!;
      for (let j = k + 1; j < refs.length; j++) {
        const n = refs[j]!;
        if ('words' in n && n.words === r.words && n.i === r.i) {
          afterLo = n.lo;
          afterHi = n.hi;
          break;
        }
      }
      const decode = (lo: number, hi: number): EntryFields =>
        r.stage === 'second' ? p2mEntryFields(this.fmt, lo, hi, r.level) : x86EntryFields(lo, hi, r.level, r.stage === 'guest' ? 'gfn' : 'mfn');
      const fields = decode(r.lo, r.hi);
      out.push({
        stage: r.stage,
        level: r.stage === 'second' ? p2mLevelNumber(this.fmt, r.level) : r.level,
        name: r.stage === 'second' ? p2mName(this.fmt, r.level) : r.stage === 'shadow' ? `shadow ${GUEST_NAMES[r.level]}` : GUEST_NAMES[r.level]!,
        column: r.column,
        purpose: r.purpose,
        gpa: r.stage === 'second' ? hex(r.gfn * 4096) : null,
        table: hex(r.tableBase),
        index: r.index,
        entry: hex64(r.lo, r.hi),
        fields,
        set: fieldsSet(fields, decode(afterLo, afterHi)),
        cached_by: null,
      });
    }
    return out;
  }

  /** Puts back every entry the walk wrote, to its value at the walk's first read of it. */
  restoreEntries(): void {
    for (let k = this.refs.length - 1; k >= 0; k--) {
      const r = this.refs[k]!;
      if ('words' in r) {
        r.words[r.i] = r.lo;
        r.words[r.i + 1] = r.hi;
      }
    }
  }
}

function cachedRow(stage: WalkStage, level: number | null, name: string, column: number, purpose: WalkReference['purpose'],
  gpa: string | null, by: WalkCache): WalkReference {
  return { stage, level, name, column, purpose, gpa, table: null, index: null, entry: null, fields: {}, set: [], cached_by: by };
}

/** Everything a translate() may change on a vCPU, copied so it can be put back. */
class VcpuSnapshot {
  private readonly tlb: [Float64Array, Int32Array, Uint8Array, number];
  private readonly ntlb: [Float64Array, Int32Array, Uint8Array, number];
  private readonly pde: [Float64Array, Float64Array, Uint8Array];
  private readonly stats: Float64Array;
  private readonly exit: object;
  private readonly scalars: [number, number, number, number];
  private readonly pml: [number, number, Uint32Array | null];

  constructor(private readonly vcpu: Vcpu) {
    const m = vcpu.mmu;
    this.tlb = [m.tlb.tag.slice(), m.tlb.mfn.slice(), m.tlb.flags.slice(), m.tlb.flushes];
    this.ntlb = [m.ntlb.tag.slice(), m.ntlb.mfn.slice(), m.ntlb.flags.slice(), m.ntlb.flushes];
    this.pde = [m.pde.tag.slice(), m.pde.ptGfn.slice(), m.pde.flags.slice()];
    this.stats = vcpu.stats.slice();
    this.exit = { ...m.exit };
    this.scalars = [m.resMfn, m.resFlags, m.guestPfAddr, m.guestPfCode];
    const p = m.pml;
    const log = p.mfn !== 0 ? m.pool.wordsOf(p.mfn).slice(m.pool.wordOffset(p.mfn), m.pool.wordOffset(p.mfn) + 1024) : null;
    this.pml = [p.index, p.logged, log];
  }

  restore(): void {
    const m = this.vcpu.mmu;
    m.tlb.tag.set(this.tlb[0]);
    m.tlb.mfn.set(this.tlb[1]);
    m.tlb.flags.set(this.tlb[2]);
    m.tlb.flushes = this.tlb[3];
    m.ntlb.tag.set(this.ntlb[0]);
    m.ntlb.mfn.set(this.ntlb[1]);
    m.ntlb.flags.set(this.ntlb[2]);
    m.ntlb.flushes = this.ntlb[3];
    m.pde.tag.set(this.pde[0]);
    m.pde.ptGfn.set(this.pde[1]);
    m.pde.flags.set(this.pde[2]);
    this.vcpu.stats.set(this.stats);
    Object.assign(m.exit, this.exit);
    [m.resMfn, m.resFlags, m.guestPfAddr, m.guestPfCode] = this.scalars;
    const p = m.pml;
    p.index = this.pml[0];
    p.logged = this.pml[1];
    const log = this.pml[2];
    if (log !== null) m.pool.wordsOf(p.mfn).set(log, m.pool.wordOffset(p.mfn));
  }
}

/** The PML log entries written at slots (indexAfter, indexBefore], oldest first. */
function pmlLogged(vcpu: Vcpu, indexBefore: number, indexAfter: number): string[] {
  const p = vcpu.mmu.pml;
  const out: string[] = [];
  if (p.mfn === 0) return out;
  const w = vcpu.mmu.pool.wordsOf(p.mfn);
  const base = vcpu.mmu.pool.wordOffset(p.mfn);
  for (let slot = indexBefore; slot > indexAfter && slot >= 0; slot--) {
    out.push(hex(w[base + 2 * slot + 1]! * 0x100000000 + w[base + 2 * slot]!));
  }
  return out;
}

/**
 * Explains the translation of `addr` (a gva under guest paging or shadow
 * paging, else a gpa) for an access needing `need` (PERM_R/W/X) on `vcpu`.
 * With `cold`, the TLB, nested TLB and PDE cache are flushed first (on the
 * explanation only: they are put back after).
 */
export function explainWalk(vcpu: Vcpu, addr: number, need: number, cold: boolean, withNext = false): WalkExplanation {
  const snap = new VcpuSnapshot(vcpu);
  const recorder = new Recorder(vcpu.mmu.fmt, vcpu.mmu.twoD && !vcpu.mmu.shadowMode);
  try {
    const first = explainUnrestored(vcpu, addr, need, cold, recorder);
    // The next walk sees what this one left (TLB fills, A/D set) and is itself undone, then this one is.
    return withNext ? { ...first, next: explainWalk(vcpu, addr, need, false) } : first;
  } finally {
    recorder.restoreEntries();
    snap.restore();
  }
}

function explainUnrestored(vcpu: Vcpu, addr: number, need: number, cold: boolean, recorder: Recorder): WalkExplanation {
  const mmu = vcpu.mmu;
  const fmt = mmu.fmt;
  const walk: WalkKind = mmu.shadowMode ? 'shadow' : mmu.twoD ? '2-d' : '1-d';
  const virtual = walk !== '1-d';
  const page = Math.floor(addr / 4096);
  const off = addr - page * 4096;
  const base = { walk, format: fmt.name, vcpu: vcpu.id, access: accessOfPerm(need), cold, gva: virtual ? hex(addr) : null };
  {
    if (cold) mmu.flush();
    // The vCPU looks in the TLB before it walks (vcpu.ts accessPart): a hit makes no reference at all.
    const tneed = (need & PERM_W) !== 0 ? TLB_WD : (need & PERM_X) !== 0 ? TLB_X : TLB_R;
    const cachedMfn = mmu.tlb.lookup(page, tneed);
    if (cachedMfn >= 0) {
      const row = cachedRow(walk === 'shadow' ? 'shadow' : walk === '2-d' ? 'guest' : 'second', null, 'TLB', 4, 'data', null, 'tlb');
      return {
        ...base, gpa: virtual ? null : hex(addr), hpa: hex(cachedMfn * 4096 + off), references: [row], memory_references: 0,
        exit: null, pml: null,
      };
    }
    const pmlBefore = mmu.pml.index;
    mmu.tracer = recorder;
    let st: number;
    try {
      st = mmu.translate(addr, need);
    } finally {
      mmu.tracer = null;
    }
    const references = recorder.rows();
    const memoryRefs = references.filter((r) => r.cached_by === null).length;
    const pml = mmu.pml.enabled ? { logged: pmlLogged(vcpu, pmlBefore, mmu.pml.index), index_before: pmlBefore, index_after: mmu.pml.index } : null;
    const gpa = walk === '1-d' ? hex(addr) : walk === '2-d' && recorder.dataGfn >= 0 ? hex(recorder.dataGfn * 4096 + off) : null;
    if (st === XLATE_OK) {
      return { ...base, gpa, hpa: hex(mmu.resMfn * 4096 + off), references, memory_references: memoryRefs, exit: null, pml };
    }
    const exit = st === XLATE_GUEST_PF ? guestFaultExit(mmu.guestPfAddr, mmu.guestPfCode) : vmExit(vcpu, fmt);
    if (st !== XLATE_EXIT && st !== XLATE_GUEST_PF) throw new Error(`translate returned ${st}`);
    return { ...base, gpa, hpa: null, references, memory_references: memoryRefs, exit, pml };
  }
}

function pfDecoded(code: number): Record<string, boolean> {
  return { P: (code & PFEC_PRESENT) !== 0, 'W/R': (code & PFEC_WRITE) !== 0, 'I/D': (code & PFEC_FETCH) !== 0 };
}

function guestFaultExit(gva: number, code: number): WalkExit {
  return {
    reason: 'guest_pf', to: 'guest', gpa: null, gva: hex(gva), level: null, table_access: false, recalc: false,
    code_name: 'error_code', code: hex(code), decoded: pfDecoded(code),
  };
}

/** The exit as the hypervisor receives it (exit-info.ts names each word's bits). */
function vmExit(vcpu: Vcpu, fmt: P2mFormat): WalkExit {
  const e = vcpu.mmu.exit;
  const reason = EXIT_REASON_NAMES[e.reason] ?? `exit ${e.reason}`;
  const common = {
    reason, to: 'hypervisor' as const, gva: e.gva >= 0 ? hex(e.gva) : null, table_access: e.isTableAccess, recalc: e.isRecalc,
  };
  if (reason === 'shadow_pf') {
    return { ...common, gpa: null, level: null, code_name: 'error_code', code: hex(e.qualification), decoded: pfDecoded(e.qualification) };
  }
  const located = { ...common, gpa: hex(e.gpa), level: p2mLevelNumber(fmt, e.level) };
  if (reason === 'ept_violation') {
    const q = e.qualification;
    return {
      ...located, code_name: 'qualification', code: hex(q),
      decoded: {
        read: (q & EPT_QUAL_READ) !== 0, write: (q & EPT_QUAL_WRITE) !== 0, fetch: (q & EPT_QUAL_FETCH) !== 0,
        readable: (q & (PERM_R << EPT_QUAL_PERM_SHIFT)) !== 0, writable: (q & (PERM_W << EPT_QUAL_PERM_SHIFT)) !== 0,
        executable: (q & (PERM_X << EPT_QUAL_PERM_SHIFT)) !== 0, gla_valid: (q & EPT_QUAL_GLA_VALID) !== 0,
        final_translation: (q & EPT_QUAL_GLA_FINAL) !== 0,
      },
    };
  }
  if (reason === 'npf') {
    const lo = e.qualification;
    const hi = e.qualificationHi;
    return {
      ...located, code_name: 'error_code', code: hex64(lo, hi),
      decoded: {
        P: (lo & NPF_P) !== 0, RW: (lo & NPF_RW) !== 0, US: (lo & NPF_US) !== 0, RSV: (lo & NPF_RSV) !== 0, ID: (lo & NPF_ID) !== 0,
        final_gpa: (hi & NPF_HI_FINAL) !== 0, guest_table_walk: (hi & NPF_HI_TABLE) !== 0,
      },
    };
  }
  if (reason === 'stage2_abort') {
    const iss = e.qualification;
    const dfsc = iss & 0x3f;
    const kind = (dfsc & ~3) === ARM_DFSC_PERMISSION ? 'permission fault' : (dfsc & ~3) === ARM_DFSC_TRANSLATION ? 'translation fault' : 'fault';
    return {
      ...located, code_name: 'iss', code: hex(iss),
      decoded: { DFSC: hex(dfsc), fault_status: `${kind}, level ${dfsc & 3}`, WnR: (iss & ARM_ISS_WNR) !== 0, S1PTW: (iss & ARM_ISS_S1PTW) !== 0 },
    };
  }
  // ept_misconfig and pml_full carry no qualification (SDM Vol. 3C §28.2.1).
  return { ...located, code_name: null, code: null, decoded: {} };
}

/**
 * The permission a record's access needs: Fetch X, Load R, Store W; a Modify
 * (lackey M: read-modify-write) is explained as its write, since an x86 RMW
 * instruction translates with write intent (SDM Vol. 3A §4.6: the access is a
 * write access when the instruction writes).
 */
export function permOfRecordKind(kind: number): number {
  return kind === 0 ? PERM_X : kind === 1 ? PERM_R : PERM_W;
}
