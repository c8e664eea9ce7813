/**
 * p2m against a per-gfn Map model, in every format; lazy global and range type
 * changes; superpage split semantics; sparse memory cost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FramePool } from '../memory/frame-pool.ts';
import { GiB, MiB, ORDER_1G, ORDER_2M, ORDER_4K, TiB } from '../units.ts';
import { Xoshiro128 } from '../rng.ts';
import { P2m, P2mLookup } from './p2m.ts';
import type { P2mFormat } from './p2m-format.ts';
import { Access, P2mType } from './p2m-type.ts';
import { eptFormat } from './formats/ept.ts';
import { nptFormat } from './formats/npt.ts';
import { armFormat } from './formats/arm.ts';

// x86-64 long-mode entry bits, from the manual (AMD APM Vol. 2 §5.3.3; SDM Vol. 3A Table 4-19), not from npt.ts.
const NPT_P = 1 << 0;
const NPT_RW = 1 << 1;
const NPT_US = 1 << 2;
const NPT_A = 1 << 5;

const FORMATS: readonly P2mFormat[] = [eptFormat, nptFormat, armFormat];

interface ModelEntry { mfn: number; type: P2mType; access: Access }

const opArb = fc.record({
  order: fc.constantFrom(ORDER_4K, ORDER_4K, ORDER_4K, ORDER_2M, ORDER_1G),
  // Gfns in a 4 GiB window plus a far one, so all levels are exercised.
  gfn: fc.oneof(fc.integer({ min: 0, max: 2 ** 20 - 1 }), fc.integer({ min: 2 ** 35, max: 2 ** 35 + 2 ** 19 })),
  mfnBase: fc.integer({ min: 1, max: 2 ** 20 }),
  type: fc.constantFrom(P2mType.RamRw, P2mType.RamLogdirty, P2mType.RamRo, P2mType.MmioDirect, P2mType.GrantMapRw),
  access: fc.constantFrom(Access.RWX, Access.RX, Access.R, Access.N, Access.RW),
});

for (const fmt of FORMATS) {
  test(`${fmt.name}: set/lookup agree with a per-gfn model, tables are accounted exactly`, () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 25 }), (ops) => {
      const pool = new FramePool();
      const p2m = new P2m(pool, fmt);
      const model = new Map<number, ModelEntry>();
      for (const op of ops) {
        const span = 2 ** op.order;
        const gfn = op.gfn - (op.gfn % span);
        const mfn = (op.mfnBase * span) % 2 ** 35 || span; // ARM output addresses are 48-bit
        p2m.set(gfn, mfn, op.order, op.type, op.access);
        // The model records only probed gfns (a 1G mapping has 262144 of them).
        for (const g of [gfn, gfn + 1, gfn + span - 1, gfn + (span >>> 1), ...model.keys()]) {
          if (g >= gfn && g < gfn + span) model.set(g, { mfn: mfn + (g - gfn), type: op.type, access: op.access });
        }
      }
      const r = new P2mLookup();
      for (const [g, e] of model) {
        assert.equal(p2m.lookup(g, r), true, `gfn ${g} present`);
        assert.equal(r.mfn, e.mfn, `gfn ${g} mfn`);
        assert.equal(r.type, e.type, `gfn ${g} type`);
        assert.equal(r.access, e.access, `gfn ${g} access`);
      }
      assert.equal(p2m.lookup(2 ** 34 + 12345, r), false);
      // Only the p2m allocates from this pool: every live frame is a table.
      assert.equal(pool.allocatedFrames, p2m.tableFrames);
    }), { numRuns: 150 });
  });

  test(`${fmt.name}: lazy global type change: lookup is instant, hardware entries per leaf table on resolve`, () => {
    const pool = new FramePool();
    const p2m = new P2m(pool, fmt);
    // Two full leaf tables (gfn 0..1023), a 2 MiB page at gfn 2048, a ram_ro page.
    for (let g = 0; g < 1024; g++) p2m.set(g, 10_000 + g, ORDER_4K, P2mType.RamRw);
    p2m.set(2048, 512 * 100, ORDER_2M, P2mType.RamRw);
    p2m.set(5000, 777, ORDER_4K, P2mType.RamRo);
    let flushes = 0;
    p2m.onFlush = () => flushes++;
    p2m.changeTypeGlobal(P2mType.RamRw, P2mType.RamLogdirty);
    assert.equal(flushes, 1);
    assert.equal(p2m.globalLogdirty, true);
    const r = new P2mLookup();
    for (const g of [0, 1, 511, 512, 1023, 2048, 2048 + 300]) {
      p2m.lookup(g, r);
      assert.equal(r.type, P2mType.RamLogdirty, `gfn ${g} reads logdirty at once`);
      assert.equal(r.recalcPending, true);
      // The hardware leaf is untouched: still ram_rw.
      const [, lo, hi] = p2m.rawEntry(g)!;
      assert.equal(fmt.type(lo, hi), P2mType.RamRw);
    }
    p2m.lookup(5000, r);
    assert.equal(r.type, P2mType.RamRo, 'non-changeable types are not retyped');
    // Resolve through gfn 5. EPT (resolve_misconfig): exactly one leaf table (512 entries)
    // rewritten. NPT (do_recalc): only gfn 5's entry; its siblings keep the mark.
    assert.equal(p2m.resolveRecalc(5), true);
    if (fmt.name === 'npt') {
      assert.equal(p2m.stats.recalcLeafTables, 0);
      assert.equal(p2m.stats.recalcEntries, 1);
      const [, lo5, hi5] = p2m.rawEntry(5)!;
      assert.equal(fmt.type(lo5, hi5), P2mType.RamLogdirty);
      assert.equal(lo5 & (NPT_US | NPT_A), NPT_US | NPT_A, 'gfn 5: U/S and A set again');
      assert.equal(lo5 & NPT_RW, 0, 'gfn 5: write-protected');
      for (const g of [0, 4, 6, 511]) {
        const [, lo, hi] = p2m.rawEntry(g)!;
        assert.equal(fmt.type(lo, hi), P2mType.RamRw, `gfn ${g} not rewritten`);
        assert.equal(lo & (NPT_P | NPT_US | NPT_A), NPT_P, `gfn ${g}: still marked (U/S and A clear)`);
      }
      // Each sibling resolves on its own.
      for (let g = 0; g < 512; g++) p2m.resolveRecalc(g);
      assert.equal(p2m.stats.recalcEntries, 512);
    } else {
      assert.equal(p2m.stats.recalcLeafTables, 1);
      assert.equal(p2m.stats.recalcEntries, 512);
    }
    for (const g of [0, 5, 511]) {
      const [, lo, hi] = p2m.rawEntry(g)!;
      assert.equal(fmt.type(lo, hi), P2mType.RamLogdirty);
      assert.equal(fmt.isRecalc(lo, hi), false);
    }
    const [, lo, hi] = p2m.rawEntry(512)!;
    assert.equal(fmt.type(lo, hi), P2mType.RamRw, 'the sibling leaf table waits for its own access');
    assert.equal(fmt.isRecalc(lo, hi) || p2m.needsRecalc(512), true);
    // The 2 MiB page: whole range logdirty ⇒ stays a logdirty superpage.
    p2m.resolveRecalc(2048 + 7);
    p2m.lookup(2048 + 7, r);
    assert.equal(r.order, ORDER_2M);
    assert.equal(r.type, P2mType.RamLogdirty);
    assert.equal(r.recalcPending, false);
    // Back to rw, globally.
    p2m.changeTypeGlobal(P2mType.RamLogdirty, P2mType.RamRw);
    p2m.lookup(5, r);
    assert.equal(r.type, P2mType.RamRw);
  });

  test(`${fmt.name}: changeTypeOne on a logdirty 2 MiB page splits it; the 511 siblings stay logdirty`, () => {
    const pool = new FramePool();
    const p2m = new P2m(pool, fmt, { defaultAccess: Access.RX });
    p2m.set(512, 512 * 7, ORDER_2M, P2mType.RamLogdirty, Access.RWX);
    assert.equal(p2m.changeTypeOne(512 + 4, P2mType.RamLogdirty, P2mType.RamRw), true);
    const r = new P2mLookup();
    p2m.lookup(512 + 4, r);
    assert.equal(r.type, P2mType.RamRw);
    assert.equal(r.order, ORDER_4K);
    assert.equal(r.mfn, 512 * 7 + 4);
    assert.equal(r.access, Access.RX, 'p2m_change_type_one resets access to default_access');
    for (const g of [512, 512 + 3, 512 + 5, 512 + 511]) {
      p2m.lookup(g, r);
      assert.equal(r.type, P2mType.RamLogdirty, `sibling ${g}`);
      assert.equal(r.order, ORDER_4K);
      assert.equal(r.mfn, 512 * 7 + (g - 512));
      assert.equal(r.access, Access.RWX, 'siblings keep their access');
    }
    assert.equal(p2m.changeTypeOne(512 + 4, P2mType.RamLogdirty, P2mType.RamRw), false, 'type differs ⇒ EBUSY');
    assert.equal(p2m.stats.superpageSplits, 1);
  });

  test(`${fmt.name}: range type change is lazy and splits a superpage whose range is mixed`, () => {
    const pool = new FramePool();
    const p2m = new P2m(pool, fmt);
    p2m.set(0, 512, ORDER_2M, P2mType.RamRw);
    for (let g = 512; g < 1024; g++) p2m.set(g, 5000 + g, ORDER_4K, P2mType.RamRw);
    p2m.changeTypeRange(100, 600, P2mType.RamRw, P2mType.RamLogdirty);
    assert.deepEqual(p2m.logdirtyRanges.toArray(), [[100, 599]]);
    const r = new P2mLookup();
    const expect = (g: number): P2mType => (g >= 100 && g < 600 ? P2mType.RamLogdirty : P2mType.RamRw);
    for (const g of [0, 99, 100, 511, 512, 599, 600, 1023]) {
      p2m.lookup(g, r);
      assert.equal(r.type, expect(g), `gfn ${g}`);
    }
    for (const g of [0, 150, 700]) p2m.resolveRecalc(g);
    for (let g = 0; g < 1024; g++) {
      p2m.lookup(g, r);
      assert.equal(r.type, expect(g), `gfn ${g} after resolve`);
      const [, lo, hi] = p2m.rawEntry(g)!;
      if (!fmt.isRecalc(lo, hi) && !p2m.needsRecalc(g)) assert.equal(fmt.type(lo, hi), expect(g), `raw gfn ${g}`);
    }
    p2m.changeTypeRange(100, 600, P2mType.RamLogdirty, P2mType.RamRw);
    for (const g of [0, 150, 599, 700]) {
      p2m.lookup(g, r);
      assert.equal(r.type, P2mType.RamRw);
    }
  });
}

test('a 1 TiB guest with a few thousand touched pages costs far less than 1 GiB of host memory', () => {
  const pool = new FramePool();
  const p2m = new P2m(pool, eptFormat);
  const rng = new Xoshiro128(7);
  const pages = TiB / 4096;
  for (let k = 0; k < 4000; k++) {
    const gfn = rng.nextInt(pages);
    const mfn = pool.alloc();
    p2m.set(gfn, mfn, ORDER_4K, P2mType.RamRw);
  }
  const hostBytes = pool.allocatedFrames * 4096;
  assert.ok(p2m.tableBytes < 64 * MiB, `tables ${p2m.tableBytes}`);
  assert.ok(hostBytes < 128 * MiB, `frames ${hostBytes}`);
  assert.ok(pool.reservedBytes < GiB, `reserved ${pool.reservedBytes}`);
});
