/**
 * The walker against naive models: 1-D translations for random p2m mappings of
 * every size in every format; 2-D walks through guest page tables built in
 * guest memory; A/D bits; exits and their qualifications; flushes; PML.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FramePool } from '../memory/frame-pool.ts';
import { P2m } from '../p2m/p2m.ts';
import { HW_EPT_AD, HW_PML, type P2mFormat } from '../p2m/p2m-format.ts';
import { Access, P2mType, PERM_R, PERM_W, PERM_X } from '../p2m/p2m-type.ts';
import { eptFormat } from '../p2m/formats/ept.ts';
import { nptFormat } from '../p2m/formats/npt.ts';
import { armFormat } from '../p2m/formats/arm.ts';
import { ORDER_1G, ORDER_2M, ORDER_4K } from '../units.ts';
import { ExitReason } from '../vm-exit.ts';
import { PTE_A, PTE_D, PTE_P, PTE_PS, PTE_RW, pteHi, pteLo } from '../formats/x86-pte.ts';
import { Domain } from '../domain/domain.ts';
import { EPT_QUAL_GLA_FINAL, EPT_QUAL_READ, EPT_QUAL_WRITE, NPF_HI_FINAL, NPF_P, NPF_RW } from './exit-info.ts';
import { STAT_GUEST_PF } from './mmu-stats.ts';
import { Mmu, XLATE_EXIT, XLATE_GUEST_PF, XLATE_OK } from './walker.ts';

const FORMATS: readonly P2mFormat[] = [eptFormat, nptFormat, armFormat];

/**
 * The oracle for a leaf's rights, written out from the sources rather than
 * taken from the p2m code: the type's rights as Xen's ept_p2m_type_to_flags
 * (p2m-ept.c) / p2m_type_to_flags (p2m-pt.c) set them (ram_logdirty gets W
 * only with PML and only on a 4K entry, so a superpage still splits on a write
 * fault), narrowed by the mem_access rights (XENMEM_access_* r/w/x bits), and
 * NPT entries without R are not present (APM Vol. 2 §15.25.5: no execute-only
 * or write-only NPT pages).
 */
const TYPE_RIGHTS = new Map<P2mType, number>([
  [P2mType.RamRw, PERM_R | PERM_W | PERM_X],
  [P2mType.RamRo, PERM_R | PERM_X],
  [P2mType.GrantMapRw, PERM_R | PERM_W],
  [P2mType.PopulateOnDemand, 0],
]);
const ACCESS_RIGHTS = new Map<Access, number>([
  [Access.N, 0], [Access.R, PERM_R], [Access.RW, PERM_R | PERM_W], [Access.X, PERM_X],
  [Access.RX, PERM_R | PERM_X], [Access.RWX, PERM_R | PERM_W | PERM_X],
]);
function expectedPerms(fmt: P2mFormat, t: P2mType, a: Access, order: number, hw: number): number {
  const typeRights = t === P2mType.RamLogdirty
    ? PERM_R | PERM_X | ((hw & HW_PML) !== 0 && order === ORDER_4K ? PERM_W : 0)
    : TYPE_RIGHTS.get(t)!;
  const p = typeRights & ACCESS_RIGHTS.get(a)!;
  return fmt.name === 'npt' && (p & PERM_R) === 0 ? 0 : p;
}

/** Types whose leaf Xen writes with D preset (ept_p2m_type_to_flags: entry->d set), so a write logs nothing to PML. */
const PRESET_D = new Set<P2mType>([P2mType.RamRw, P2mType.GrantMapRw]);

const mapArb = fc.record({
  order: fc.constantFrom(ORDER_4K, ORDER_4K, ORDER_2M, ORDER_1G),
  slot: fc.integer({ min: 0, max: 63 }),
  sub: fc.integer({ min: 0, max: 511 }),
  mfnSlot: fc.integer({ min: 1, max: 1000 }),
  type: fc.constantFrom(P2mType.RamRw, P2mType.RamLogdirty, P2mType.RamRo, P2mType.GrantMapRw, P2mType.PopulateOnDemand),
  access: fc.constantFrom(Access.RWX, Access.RX, Access.R, Access.N, Access.RW, Access.X),
});

for (const fmt of FORMATS) {
  test(`${fmt.name}: 1-D translations match a naive model for 4K/2M/1G mappings`, () => {
    fc.assert(fc.property(
      fc.array(mapArb, { minLength: 1, maxLength: 12 }),
      fc.array(fc.record({ pick: fc.nat(), off: fc.nat(), need: fc.constantFrom(PERM_R, PERM_W, PERM_X), flush: fc.boolean() }), { maxLength: 40 }),
      fc.constantFrom(0, HW_EPT_AD, HW_EPT_AD | HW_PML),
      (maps, accesses, hw) => {
        const pool = new FramePool();
        const p2m = new P2m(pool, fmt, { hwFlags: fmt.name === 'ept' ? hw : 0 });
        const mmu = new Mmu(p2m);
        p2m.onFlush = () => mmu.flush();
        if ((p2m.hwFlags & HW_PML) !== 0) mmu.pml.enable();
        // PML oracle: a gfn is logged at its first successful write, and only if its leaf had D clear.
        const wantLog: number[] = [];
        const dirtied = new Set<number>();
        // Each mapping gets its own 1 GiB slot so they do not overlap.
        const model: Array<{ gfn: number; span: number; mfn: number; type: P2mType; access: Access; order: number }> = [];
        const used = new Set<number>();
        for (const m of maps) {
          if (used.has(m.slot)) continue;
          used.add(m.slot);
          const span = 2 ** m.order;
          const gfn = m.slot * 2 ** 18 + (m.order === ORDER_1G ? 0 : (m.sub * 512) % 2 ** 18) + (m.order === ORDER_4K ? m.sub : 0);
          const mfn = m.order === ORDER_1G ? m.mfnSlot * 2 ** 18 % 2 ** 29 || 2 ** 18 : m.mfnSlot * span;
          p2m.set(gfn, mfn, m.order, m.type, m.access);
          model.push({ gfn, span, mfn, type: m.type, access: m.access, order: m.order });
        }
        for (const a of accesses) {
          const e = model[a.pick % model.length]!;
          const gfn = e.gfn + (a.off % e.span);
          const gpa = gfn * 4096 + (a.off % 4096);
          const perms = expectedPerms(fmt, e.type, e.access, e.order, p2m.hwFlags);
          // A flush before the access makes it walk again (a logged page's D is already 1 then).
          if (a.flush) mmu.flush();
          const st = mmu.translate(gpa, a.need);
          if ((a.need & ~perms) === 0) {
            if (a.need === PERM_W && (p2m.hwFlags & HW_PML) !== 0 && !PRESET_D.has(e.type) && !dirtied.has(gfn)) {
              wantLog.push(gfn);
              dirtied.add(gfn);
            }
            assert.equal(st, XLATE_OK, `gpa ${gpa} need ${a.need} perms ${perms}`);
            assert.equal(mmu.resMfn, e.mfn + (gfn - e.gfn));
            assert.equal(mmu.resFlags & 7, perms);
            assert.equal(mmu.tlb.lookup(gfn, a.need === PERM_W ? 8 : a.need), e.mfn + (gfn - e.gfn));
          } else {
            assert.equal(st, XLATE_EXIT);
            assert.equal(mmu.exit.reason, fmt.violationExit);
            assert.equal(mmu.exit.gfn, gfn);
            assert.equal(mmu.exit.gpa, gpa);
            assert.equal(mmu.exit.p2mPerms, perms);
            assert.equal(mmu.exit.isRecalc, false);
          }
        }
        // An unmapped gfn: violation / #NPF / stage-2 translation fault.
        assert.equal(mmu.translate(200 * 2 ** 18 * 4096, PERM_R), XLATE_EXIT);
        assert.equal(mmu.exit.p2mPerms, 0);
        // The PML log holds exactly the first writes to D-clear leaves (gfns up to 2^24: high words matter), newest first.
        const logged: number[] = [];
        assert.equal(mmu.pml.drain((g) => logged.push(g)), wantLog.length, 'PML entries: one per first write');
        assert.deepEqual(logged, [...wantLog].reverse());
      }), { numRuns: 120 });
  });
}

/** What GuestTables needs of guest memory (a Domain's GuestMemory, or the test's own frames). */
interface TableMemory {
  populate(gfn: number): void;
  readU32(gpa: number): number;
  writeU32(gpa: number, value: number): void;
}

/** A test-side guest OS: builds x86-64 4-level tables in guest memory. */
class GuestTables {
  private nextGfn: number;
  readonly cr3: number;
  constructor(private readonly mem: TableMemory, firstTableGfn: number) {
    this.nextGfn = firstTableGfn;
    this.cr3 = this.allocTable() * 4096;
  }
  private allocTable(): number {
    const g = this.nextGfn++;
    this.mem.populate(g);
    return g;
  }
  /** Maps gva → gpa with a leaf at `level` (1 = 4K, 2 = 2M, 3 = 1G). */
  map(gva: number, gpa: number, level: number, rw = true, nx = false): void {
    let table = this.cr3 / 4096;
    for (let l = 4; l > level; l--) {
      const idx = Math.floor(gva / 2 ** (12 + 9 * (l - 1))) & 511;
      const ea = table * 4096 + idx * 8;
      const lo = this.mem.readU32(ea);
      if ((lo & PTE_P) === 0) {
        const t = this.allocTable();
        this.mem.writeU32(ea, pteLo(t, PTE_P | PTE_RW));
        this.mem.writeU32(ea + 4, pteHi(t, false));
        table = t;
      } else {
        table = (this.mem.readU32(ea + 4) & 0xfffff) * 0x100000 + (lo >>> 12);
      }
    }
    const idx = Math.floor(gva / 2 ** (12 + 9 * (level - 1))) & 511;
    const ea = table * 4096 + idx * 8;
    const gfn = gpa / 4096;
    this.mem.writeU32(ea, pteLo(gfn, PTE_P | (rw ? PTE_RW : 0) | (level > 1 ? PTE_PS : 0)));
    this.mem.writeU32(ea + 4, pteHi(gfn, nx));
  }
  /** The leaf PTE's low word for gva (test inspection). */
  leafLo(gva: number): number {
    let table = this.cr3 / 4096;
    for (let l = 4; l >= 1; l--) {
      const idx = Math.floor(gva / 2 ** (12 + 9 * (l - 1))) & 511;
      const lo = this.mem.readU32(table * 4096 + idx * 8);
      if (l === 1 || (lo & PTE_PS) !== 0) return lo;
      table = (this.mem.readU32(table * 4096 + idx * 8 + 4) & 0xfffff) * 0x100000 + (lo >>> 12);
    }
    return 0;
  }
}

const MEM_PAGES = 16384; // 64 MiB guest
const TABLE_GFNS = 1024; // gfns [0, 1024) hold guest page tables

/**
 * Guest memory owned by the test: gfn → mfn is a plain Map the test fills
 * (a scrambled permutation, so an identity or off-by-one translation cannot
 * pass), mirrored into the p2m with p2m.set; table writes go straight into
 * the host frames the Map names.
 */
class OracleMemory implements TableMemory {
  readonly frameOf = new Map<number, number>();
  constructor(readonly pool: FramePool) {}
  populate(gfn: number): void {
    if (!this.frameOf.has(gfn)) throw new Error(`test bug: gfn ${gfn} has no frame`);
  }
  readU32(gpa: number): number {
    const mfn = this.frameOf.get(Math.floor(gpa / 4096))!;
    return this.pool.wordsOf(mfn)[this.pool.wordOffset(mfn) + ((gpa % 4096) >>> 2)]!;
  }
  writeU32(gpa: number, value: number): void {
    const mfn = this.frameOf.get(Math.floor(gpa / 4096))!;
    this.pool.wordsOf(mfn)[this.pool.wordOffset(mfn) + ((gpa % 4096) >>> 2)] = value >>> 0;
  }
}

/** Host frames [MFN_BASE, MFN_BASE + MEM_PAGES) back the guest; MFN_BASE is 2 MiB-aligned. */
const MFN_BASE = 512;
/** Odd multipliers: (k · odd) mod 2^n is a permutation. */
const SCRAMBLE_4K = 7919;
const SCRAMBLE_2M = 13;

/** A guest whose every gfn is mapped rw by the test, at 4K or 2M p2m granularity, with the Map as the oracle. */
function oracleGuest(fmt: P2mFormat, populateOrder: number): { mmu: Mmu; mem: OracleMemory } {
  const pool = new FramePool();
  for (let k = 1; k < MFN_BASE + MEM_PAGES; k++) pool.alloc(); // reserve the guest's frames before the p2m takes any
  const p2m = new P2m(pool, fmt);
  const mem = new OracleMemory(pool);
  const blocks = MEM_PAGES / 512;
  for (let gfn = 0; gfn < MEM_PAGES; gfn++) {
    const mfn = populateOrder === ORDER_2M
      ? MFN_BASE + ((Math.floor(gfn / 512) * SCRAMBLE_2M) % blocks) * 512 + (gfn % 512)
      : MFN_BASE + ((gfn * SCRAMBLE_4K) % MEM_PAGES);
    mem.frameOf.set(gfn, mfn);
    if (populateOrder === ORDER_4K || gfn % 512 === 0) p2m.set(gfn, mfn, populateOrder, P2mType.RamRw, Access.RWX);
  }
  const mmu = new Mmu(p2m);
  p2m.onFlush = () => mmu.flush();
  mmu.twoD = true;
  return { mmu, mem };
}

for (const fmt of FORMATS) {
  test(`${fmt.name}: 2-D walks match a naive model (guest 4K/2M/1G pages over 4K or 2M p2m pages)`, () => {
    fc.assert(fc.property(
      fc.array(fc.record({ level: fc.constantFrom(1, 1, 2, 3), pick: fc.nat(), off: fc.nat(), rw: fc.boolean() }), { minLength: 1, maxLength: 20 }),
      fc.array(fc.record({ m: fc.nat(), off: fc.nat(), write: fc.boolean() }), { minLength: 1, maxLength: 30 }),
      fc.constantFrom(ORDER_4K, ORDER_2M),
      (maps, accesses, populateOrder) => {
        const { mmu, mem } = oracleGuest(fmt, populateOrder);
        const gt = new GuestTables(mem, 1);
        mmu.setCr3(gt.cr3);
        const model: Array<{ gva: number; gpa: number; size: number; rw: boolean }> = [];
        maps.forEach((m, k) => {
          // Mapping k lives in PML4 slot k + 1: no overlaps.
          const size = 2 ** (12 + 9 * (m.level - 1));
          const gva = (k + 1) * 2 ** 39 + (m.level === 3 ? 0 : (m.pick % 512) * 2 ** 30) + (m.level === 1 ? (m.off % 512) * 2 ** 21 : 0);
          let gpa: number;
          if (m.level === 1) gpa = (TABLE_GFNS + (m.pick % (MEM_PAGES - TABLE_GFNS))) * 4096;
          else if (m.level === 2) gpa = (1 + (m.pick % (MEM_PAGES / 512 - 1))) * 2 ** 21;
          else gpa = 0;
          gt.map(gva, gpa, m.level, m.rw);
          model.push({ gva, gpa, size, rw: m.rw });
        });
        for (const a of accesses) {
          const e = model[a.m % model.length]!;
          // Stay inside guest memory and outside the table region for 1G mappings.
          let off = a.off % e.size;
          if (e.size === 2 ** 30) off = TABLE_GFNS * 4096 + (a.off % ((MEM_PAGES - TABLE_GFNS) * 4096));
          const gva = e.gva + off;
          const gpa = e.gpa + off;
          const need = a.write ? PERM_W : PERM_R;
          const st = mmu.translate(gva, need);
          if (a.write && !e.rw) {
            assert.equal(st, XLATE_GUEST_PF, 'write to a read-only guest page is a guest #PF');
            continue;
          }
          assert.equal(st, XLATE_OK);
          assert.equal(mmu.resMfn, mem.frameOf.get(Math.floor(gpa / 4096)), `gva ${gva} → gpa ${gpa}`);
          // Rights: the p2m's ram_rw/rwx (all of r, w, x), less W where the guest PTE has R/W clear (SDM Vol. 3A §4.6).
          assert.equal(mmu.resFlags & 7, PERM_R | PERM_X | (e.rw ? PERM_W : 0));
          const leaf = gt.leafLo(gva);
          assert.ok((leaf & PTE_A) !== 0, 'guest A set');
          if (a.write) assert.ok((leaf & PTE_D) !== 0, 'guest D set on write');
        }
      }), { numRuns: 40 });
  });

  test(`${fmt.name}: a failed guest walk is a guest page fault, not a VM exit`, () => {
    const dom = new Domain({ format: fmt, memBytes: MEM_PAGES * 4096, guestPaging: true });
    const v = dom.vcpus[0]!;
    const gt = new GuestTables(dom.memory, 1);
    v.mmu.setCr3(gt.cr3);
    assert.equal(v.load(0x7000_0000_0000, 4), 0);
    assert.equal(v.stats[STAT_GUEST_PF], 1);
    assert.equal(dom.totalExits().reduce((a, b) => a + b, 0), 0);
  });
}

test('ept: write violation qualification reports the write as a read too, with final-translation bit', () => {
  const pool = new FramePool();
  const p2m = new P2m(pool, eptFormat);
  const mmu = new Mmu(p2m);
  p2m.set(5, 100, ORDER_4K, P2mType.RamLogdirty);
  assert.equal(mmu.translate(5 * 4096 + 8, PERM_W), XLATE_EXIT);
  const q = mmu.exit.qualification;
  assert.equal(q & (EPT_QUAL_READ | EPT_QUAL_WRITE), EPT_QUAL_READ | EPT_QUAL_WRITE);
  assert.equal((q >>> 3) & 7, PERM_R | PERM_X, 'effective perms r-x');
  assert.ok((q & EPT_QUAL_GLA_FINAL) !== 0);
  assert.equal(mmu.translate(5 * 4096, PERM_R), XLATE_OK);
});

test('npt: #NPF error code on a write-protected page: P and RW set, final-gpa bit', () => {
  const pool = new FramePool();
  const p2m = new P2m(pool, nptFormat);
  const mmu = new Mmu(p2m);
  p2m.set(5, 100, ORDER_4K, P2mType.RamLogdirty);
  assert.equal(mmu.translate(5 * 4096, PERM_W), XLATE_EXIT);
  assert.equal(mmu.exit.reason, ExitReason.Npf);
  assert.equal(mmu.exit.qualification & (NPF_P | NPF_RW), NPF_P | NPF_RW);
  assert.equal(mmu.exit.qualificationHi, NPF_HI_FINAL);
});

test('TLB flushed on p2m change and on CR3 load', () => {
  const dom = new Domain({ format: 'ept', memBytes: 1 << 24 });
  const v = dom.vcpus[0]!;
  assert.equal(v.store(0x3000, 4, 0xdeadbeef), 0);
  assert.ok(v.mmu.tlb.lookup(3, 8) >= 0);
  dom.p2m.changeTypeOne(3, P2mType.RamRw, P2mType.RamRo);
  assert.equal(v.mmu.tlb.lookup(3, 1), -1, 'p2m type change flushes');
  assert.equal(v.load(0x3000, 4), 0);
  assert.equal(v.lastLo, 0xdeadbeef);
  v.mmu.setCr3(0x1000);
  assert.equal(v.mmu.tlb.lookup(3, 1), -1, 'CR3 load flushes');
});

test('PML: 512 first writes log without exits; the 513th exits pml_full, the flush marks 512, the access retries and is logged', () => {
  const dom = new Domain({ format: 'ept', memBytes: 1024 * 4096, populate: 'up-front' });
  const dirty: number[] = [];
  const mode = dom.pagingMode as import('../domain/paging-mode.ts').DefaultPagingMode;
  mode.onDirty = (_v, gfn) => dirty.push(gfn);
  dom.enablePml();
  dom.p2m.changeTypeGlobal(P2mType.RamRw, P2mType.RamLogdirty);
  // Resolve the lazy marks up front so only D-setting writes remain (acceptance §9.6).
  dom.p2m.resolveRecalc(0);
  dom.p2m.resolveRecalc(512);
  const v = dom.vcpus[0]!;
  for (let g = 0; g < 512; g++) assert.equal(v.store(g * 4096, 4, g), 0);
  assert.equal(v.exits[ExitReason.PmlFull], 0);
  assert.equal(v.exits[ExitReason.EptViolation], 0);
  assert.equal(v.mmu.pml.pending(), 512);
  assert.equal(v.mmu.pml.index, 0xffff);
  v.mmu.flush(); // the rewrite below walks the p2m again
  v.store(5 * 4096 + 8, 4, 1); // rewrite of a logged page: D already 1, nothing logged
  assert.equal(v.mmu.pml.pending(), 512);
  assert.equal(dirty.length, 0);
  assert.equal(v.store(512 * 4096, 4, 1), 0);
  assert.equal(v.exits[ExitReason.PmlFull], 1);
  assert.equal(dirty.length, 512);
  assert.deepEqual([...dirty].sort((a, b) => a - b), Array.from({ length: 512 }, (_, k) => k));
  assert.equal(v.mmu.pml.pending(), 1, 'the retried access was logged');
  assert.equal(v.mmu.pml.index, 510);
  assert.equal(dom.memory.readU32(512 * 4096), 1);
});

test('PML with 2-D: guest page-table reads count as EPT writes and log the table pages', () => {
  const dom = new Domain({ format: 'ept', memBytes: 1024 * 4096, populate: 'up-front', guestPaging: true });
  const v = dom.vcpus[0]!;
  const gt = new GuestTables(dom.memory, 1);
  gt.map(0x4000_0000, 600 * 4096, 1);
  v.mmu.setCr3(gt.cr3);
  dom.enablePml();
  dom.p2m.changeTypeGlobal(P2mType.RamRw, P2mType.RamLogdirty);
  dom.p2m.resolveRecalc(0);
  dom.p2m.resolveRecalc(600);
  assert.equal(v.load(0x4000_0000, 4), 0);
  assert.equal(v.mmu.pml.pending(), 4, 'four guest table pages (PML4, PDPT, PD, PT) logged by a read');
});

test('p2m: EPT A/D: a read of a logdirty page leaves a TLB entry without write-done; the write walks again', () => {
  const pool = new FramePool();
  const p2m = new P2m(pool, eptFormat, { hwFlags: HW_EPT_AD | HW_PML });
  const mmu = new Mmu(p2m);
  mmu.pml.enable();
  p2m.set(7, 70, ORDER_4K, P2mType.RamLogdirty);
  assert.equal(mmu.translate(7 * 4096, PERM_R), XLATE_OK);
  assert.equal(mmu.tlb.lookup(7, 8), -1);
  assert.equal(mmu.translate(7 * 4096, PERM_W), XLATE_OK);
  assert.equal(mmu.tlb.lookup(7, 8), 70);
  assert.equal(mmu.pml.pending(), 1);
});

test('PML: a gfn ≥ 2^20 is logged as its full 64-bit GPA (high word = gfn >> 20) and drained back whole', () => {
  const pool = new FramePool();
  const p2m = new P2m(pool, eptFormat, { hwFlags: HW_EPT_AD | HW_PML });
  const mmu = new Mmu(p2m);
  mmu.pml.enable();
  const gfns = [0x12_3456, 0xf_ffff + 1, 0x7_89ab_cdef % 2 ** 36, 5];
  gfns.forEach((g, k) => p2m.set(g, 100 + k, ORDER_4K, P2mType.RamLogdirty, Access.RWX));
  for (const g of gfns) assert.equal(mmu.translate(g * 4096 + 16, PERM_W), XLATE_OK);
  // The raw log: slot 511 first; GPA = gfn · 4096 as a little-endian u64 (SDM Vol. 3C §29.3.6).
  const w = pool.wordsOf(mmu.pml.mfn);
  const o = pool.wordOffset(mmu.pml.mfn);
  gfns.forEach((g, k) => {
    const slot = 511 - k;
    const gpa = BigInt(g) * 4096n;
    assert.equal(w[o + 2 * slot], Number(gpa & 0xffff_ffffn), `slot ${slot} low word`);
    assert.equal(w[o + 2 * slot + 1], Number(gpa >> 32n), `slot ${slot} high word`);
  });
  const out: number[] = [];
  mmu.pml.drain((g) => out.push(g));
  assert.deepEqual(out, [...gfns].reverse());
});

test('PML: a full log exits before an EPT accessed-flag update too (nothing logged, A stays clear); Xen presets A, so its entries never do', () => {
  const pool = new FramePool();
  const p2m = new P2m(pool, eptFormat, { hwFlags: HW_EPT_AD | HW_PML });
  const mmu = new Mmu(p2m);
  mmu.pml.enable();
  const gfn = 0x20_0007; // ≥ 2^20
  p2m.set(gfn, 77, ORDER_4K, P2mType.RamLogdirty, Access.RWX);
  p2m.set(9, 99, ORDER_4K, P2mType.RamLogdirty, Access.RWX);
  const leaf = (g: number): { w: Uint32Array; i: number } => {
    // Test-side EPT walk (SDM Vol. 3C §29.3.2): 4 levels of 512 entries, frame in bits 51:12.
    let mfn = p2m.rootMfn;
    for (let level = 3; level > 0; level--) {
      const i = pool.wordOffset(mfn) + 2 * (Math.floor(g / 512 ** level) % 512);
      const ws = pool.wordsOf(mfn);
      mfn = (ws[i + 1]! & 0xfffff) * 2 ** 20 + (ws[i]! >>> 12);
    }
    return { w: pool.wordsOf(mfn), i: pool.wordOffset(mfn) + 2 * (g % 512) };
  };
  const EPT_A_BIT = 1 << 8; // SDM Table 29-6: bit 8 accessed, bit 9 dirty
  const l = leaf(gfn);
  assert.equal(l.w[l.i]! & EPT_A_BIT, EPT_A_BIT, 'Xen writes ram_logdirty with A preset');
  mmu.pml.index = 0xffff; // full
  assert.equal(mmu.translate(gfn * 4096, PERM_R), XLATE_OK, 'A already set: no check, no exit');
  // An entry with A clear (not one Xen would write): the read must exit pml_full.
  const k = leaf(9);
  k.w[k.i] = (k.w[k.i]! & ~EPT_A_BIT) >>> 0;
  mmu.flush();
  assert.equal(mmu.translate(9 * 4096, PERM_R), XLATE_EXIT);
  assert.equal(mmu.exit.reason, ExitReason.PmlFull);
  assert.equal(k.w[k.i]! & EPT_A_BIT, 0, 'the flag is not set and the access does not happen');
  assert.equal(mmu.pml.index, 0xffff, 'nothing logged');
  mmu.pml.drain(() => {});
  assert.equal(mmu.translate(9 * 4096, PERM_R), XLATE_OK);
  assert.equal(k.w[k.i]! & EPT_A_BIT, EPT_A_BIT, 'after the drain the read sets A');
  assert.equal(mmu.pml.pending(), 0, 'an A update is never logged');
});
