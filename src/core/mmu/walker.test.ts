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
import { HW_EPT_AD, HW_PML, type P2mFormat, p2mTypeToFlags } from '../p2m/p2m-format.ts';
import { Access, P2mType, PERM_R, PERM_W, PERM_X } from '../p2m/p2m-type.ts';
import { eptFormat } from '../p2m/formats/ept.ts';
import { nptFormat } from '../p2m/formats/npt.ts';
import { armFormat } from '../p2m/formats/arm.ts';
import { ORDER_1G, ORDER_2M, ORDER_4K } from '../units.ts';
import { ExitReason } from '../vm-exit.ts';
import { PTE_A, PTE_D, PTE_P, PTE_PS, PTE_RW, pteHi, pteLo } from '../formats/x86-pte.ts';
import { Domain } from '../domain/domain.ts';
import type { GuestMemory } from '../domain/guest-memory.ts';
import { EPT_QUAL_GLA_FINAL, EPT_QUAL_READ, EPT_QUAL_WRITE, NPF_HI_FINAL, NPF_P, NPF_RW } from './exit-info.ts';
import { STAT_GUEST_PF } from './mmu-stats.ts';
import { Mmu, XLATE_EXIT, XLATE_GUEST_PF, XLATE_OK } from './walker.ts';

const FORMATS: readonly P2mFormat[] = [eptFormat, nptFormat, armFormat];

function expectedPerms(fmt: P2mFormat, t: P2mType, a: Access, order: number, hw: number): number {
  const p = p2mTypeToFlags(t, a, order > 0, hw) & 7;
  return fmt.name === 'npt' && (p & PERM_R) === 0 ? 0 : p;
}

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
      fc.array(fc.record({ pick: fc.nat(), off: fc.nat(), need: fc.constantFrom(PERM_R, PERM_W, PERM_X) }), { maxLength: 40 }),
      fc.constantFrom(0, HW_EPT_AD),
      (maps, accesses, hw) => {
        const pool = new FramePool();
        const p2m = new P2m(pool, fmt, { hwFlags: fmt.name === 'ept' ? hw : 0 });
        const mmu = new Mmu(p2m);
        p2m.onFlush = () => mmu.flush();
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
          const st = mmu.translate(gpa, a.need);
          if ((a.need & ~perms) === 0) {
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
      }), { numRuns: 120 });
  });
}

/** A test-side guest OS: builds x86-64 4-level tables in guest memory. */
class GuestTables {
  private nextGfn: number;
  readonly cr3: number;
  constructor(private readonly mem: GuestMemory, firstTableGfn: number) {
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

for (const fmt of FORMATS) {
  test(`${fmt.name}: 2-D walks match a naive model (guest 4K/2M/1G pages over 4K or 2M p2m pages)`, () => {
    fc.assert(fc.property(
      fc.array(fc.record({ level: fc.constantFrom(1, 1, 2, 3), pick: fc.nat(), off: fc.nat(), rw: fc.boolean() }), { minLength: 1, maxLength: 20 }),
      fc.array(fc.record({ m: fc.nat(), off: fc.nat(), write: fc.boolean() }), { minLength: 1, maxLength: 30 }),
      fc.constantFrom(ORDER_4K, ORDER_2M),
      (maps, accesses, populateOrder) => {
        const dom = new Domain({ format: fmt, memBytes: MEM_PAGES * 4096, guestPaging: true, populateOrder, populate: 'up-front' });
        const v = dom.vcpus[0]!;
        const gt = new GuestTables(dom.memory, 1);
        v.mmu.setCr3(gt.cr3);
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
          const st = v.mmu.translate(gva, need);
          if (a.write && !e.rw) {
            assert.equal(st, XLATE_GUEST_PF, 'write to a read-only guest page is a guest #PF');
            continue;
          }
          assert.equal(st, XLATE_OK);
          assert.equal(v.mmu.resMfn, dom.memory.frameOf(Math.floor(gpa / 4096)), `gva ${gva} → gpa ${gpa}`);
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
