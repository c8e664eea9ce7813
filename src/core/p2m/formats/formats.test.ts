/**
 * Round trips for every p2m entry format's documented bits (fast-check), plus
 * a few exact encodings checked against the manuals' bit positions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { eptFormat, EPT_A, EPT_D, EPT_IPAT, EPT_HI_SVE } from './ept.ts';
import { nptFormat, NPT_P, NPT_US, NPT_RW, NPT_A, NPT_D, NPT_HI_NX } from './npt.ts';
import { armFormat, ARM_VALID, ARM_TABLE, ARM_AF, ARM_S2AP_R, ARM_HI_XN } from './arm.ts';
import { type P2mFormat, HW_EPT_AD, HW_PML, p2mTypeToFlags } from '../p2m-format.ts';
import { Access, P2mType, PERM_R, PERM_W, PERM_X } from '../p2m-type.ts';

const FORMATS: readonly P2mFormat[] = [eptFormat, nptFormat, armFormat];

/** What the walker should see for a leaf, per format (x86 NPT cannot express R-less rights). */
function expectedPerms(fmt: P2mFormat, t: P2mType, a: Access, level: number, hw: number): number {
  const p = p2mTypeToFlags(t, a, level > 0, hw) & 7;
  if (fmt.name === 'npt' && (p & PERM_R) === 0) return 0;
  return p;
}

const leafArb = fc.record({
  level: fc.integer({ min: 0, max: 2 }),
  frame: fc.integer({ min: 1, max: 2 ** 36 - 1 }),
  type: fc.integer({ min: 0, max: 15 }),
  access: fc.integer({ min: 0, max: 10 }),
  hw: fc.constantFrom(0, HW_EPT_AD, HW_EPT_AD | HW_PML),
});

for (const fmt of FORMATS) {
  test(`${fmt.name}: leaf round trip of mfn, type, access, level, permissions`, () => {
    fc.assert(fc.property(leafArb, ({ level, frame, type, access, hw }) => {
      const span = 2 ** (9 * level);
      const mfn = Math.max(span, Math.floor(frame / span) * span);
      const w = new Uint32Array(4);
      fmt.writeLeaf(w, 2, level, mfn, type as P2mType, access as Access, hw);
      const lo = w[2]!, hi = w[3]!;
      assert.equal(w[0], 0);
      assert.equal(w[1], 0);
      assert.notEqual(lo | hi, 0, 'a mapping is never all-zero');
      assert.equal(fmt.mfn(lo, hi), mfn);
      assert.equal(fmt.type(lo, hi), type);
      assert.equal(fmt.access(lo, hi), fmt.accessInEntry ? access : Access.RWX);
      assert.equal(fmt.isLeaf(lo, hi, level), true);
      assert.equal(fmt.perms(lo, hi), expectedPerms(fmt, type, access, level, hw));
      assert.equal(fmt.isRecalc(lo, hi), false);
      // Recalc mark: the walker must fault, and clearing restores the entry bit for bit.
      if (fmt.canMark(lo, hi)) {
        fmt.markRecalc(w, 2);
        assert.equal(fmt.isRecalc(w[2]!, w[3]!), true);
        assert.equal(fmt.mfn(w[2]!, w[3]!), mfn);
        assert.equal(fmt.type(w[2]!, w[3]!), type);
        assert.equal(fmt.isLeaf(w[2]!, w[3]!, level), true);
        fmt.clearRecalc(w, 2, level);
        assert.equal(w[2], lo);
        assert.equal(w[3], hi);
      }
    }), { numRuns: 2000 });
  });

  test(`${fmt.name}: table pointer round trip`, () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 36 - 1 }), fc.integer({ min: 1, max: 3 }), (mfn, level) => {
      const w = new Uint32Array(2);
      fmt.writeTable(w, 0, mfn);
      const lo = w[0]!, hi = w[1]!;
      assert.equal(fmt.mfn(lo, hi), mfn);
      assert.equal(fmt.isLeaf(lo, hi, level), false);
      assert.equal(fmt.tablePerms(lo, hi), PERM_R | PERM_W | PERM_X);
      assert.equal(fmt.isRecalc(lo, hi), false);
      assert.equal(fmt.canMark(lo, hi), true);
      fmt.markRecalc(w, 0);
      assert.equal(fmt.isRecalc(w[0]!, w[1]!), true);
      assert.equal(fmt.mfn(w[0]!, w[1]!), mfn);
      fmt.clearRecalc(w, 0, level);
      assert.equal(w[0], lo);
      assert.equal(w[1], hi);
    }), { numRuns: 1000 });
  });

  test(`${fmt.name}: A/D flags set by the walker are seen by the decoders`, () => {
    const w = new Uint32Array(2);
    fmt.writeLeaf(w, 0, 0, 0x1234, P2mType.RamLogdirty, Access.RWX, HW_EPT_AD | HW_PML);
    if (fmt.hwDirty(HW_EPT_AD)) {
      if (fmt.name === 'ept') assert.equal(fmt.dirty(w[0]!, w[1]!), false, 'logdirty leaves have D=0');
      fmt.setDirty(w, 0);
      assert.equal(fmt.dirty(w[0]!, w[1]!), true);
      assert.equal(fmt.accessed(w[0]!, w[1]!), true);
    }
    assert.equal(fmt.mfn(w[0]!, w[1]!), 0x1234);
    assert.equal(fmt.type(w[0]!, w[1]!), P2mType.RamLogdirty);
  });
}

test('ept: exact bits of a 4K ram_rw entry and a logdirty entry with and without PML', () => {
  const w = new Uint32Array(2);
  eptFormat.writeLeaf(w, 0, 0, 0x12345, P2mType.RamRw, Access.RWX, 0);
  // R|W|X (2:0), EMT=WB 6 (5:3), IPAT (6), A (8), D (9), mfn at 12.
  assert.equal(w[0], (0x12345000 | 0b111 | (6 << 3) | EPT_IPAT | EPT_A | EPT_D) >>> 0);
  assert.equal(w[1], (EPT_HI_SVE | (Access.RWX << 26)) >>> 0, 'access rwx at 61:58, SVE at 63');
  eptFormat.writeLeaf(w, 0, 0, 0x12345, P2mType.RamLogdirty, Access.RWX, 0);
  assert.equal(w[0]! & 7, PERM_R | PERM_X);
  assert.equal(w[0]! & EPT_D, 0);
  assert.equal((w[1]! >>> 20) & 0x3f, P2mType.RamLogdirty, 'sa_p2mt in bits 57:52');
  assert.equal((w[1]! >>> 26) & 0xf, Access.RWX, 'access in bits 61:58');
  eptFormat.writeLeaf(w, 0, 0, 0x12345, P2mType.RamLogdirty, Access.RWX, HW_EPT_AD | HW_PML);
  assert.equal(w[0]! & 7, PERM_R | PERM_W | PERM_X, 'PML: 4K logdirty is writable, D clear');
  eptFormat.writeLeaf(w, 0, 1, 0x200, P2mType.RamLogdirty, Access.RWX, HW_EPT_AD | HW_PML);
  assert.equal(w[0]! & 7, PERM_R | PERM_X, 'PML: superpages stay write-protected');
  eptFormat.writeLeaf(w, 0, 0, 0x12345, P2mType.RamRw, Access.RX, 0);
  assert.equal(w[0]! & 7, PERM_R | PERM_X, 'type ∧ access');
});

test('npt: exact bits; recalc clears U/S as Xen p2m-pt does', () => {
  const w = new Uint32Array(2);
  nptFormat.writeLeaf(w, 0, 0, 0x12345, P2mType.RamRw, Access.RWX, 0);
  assert.equal(w[0], (0x12345000 | NPT_P | NPT_RW | NPT_US | NPT_A | NPT_D) >>> 0);
  assert.equal(w[1], (Access.RWX << 27) >>> 0, 'access rwx at 62:59');
  nptFormat.writeLeaf(w, 0, 0, 0x12345, P2mType.GrantMapRw, Access.RWX, 0);
  assert.equal((w[1]! & NPT_HI_NX) !== 0, true, "grant_map_rw is NX");
  assert.equal((w[1]! >>> 20) & 0x7f, P2mType.GrantMapRw, 'type in bits 58:52');
  nptFormat.writeLeaf(w, 0, 0, 0x12345, P2mType.RamRw, Access.RWX, 0);
  nptFormat.markRecalc(w, 0);
  // p2m-pt.c set_recalc removes RECALC_FLAGS = _PAGE_USER | _PAGE_ACCESSED (bits 2 and 5), nothing else.
  assert.equal(w[0], (0x12345000 | NPT_P | NPT_RW | NPT_D) >>> 0);
  assert.equal(nptFormat.isRecalc(w[0]!, w[1]!), true);
  nptFormat.clearRecalc(w, 0, 0);
  assert.equal(w[0], (0x12345000 | NPT_P | NPT_RW | NPT_US | NPT_A | NPT_D) >>> 0, 'clear_recalc adds them back');
  nptFormat.markRecalc(w, 0);
  nptFormat.writeLeaf(w, 0, 0, 0x12345, P2mType.PopulateOnDemand, Access.RWX, 0);
  assert.equal(w[0]! & NPT_P, 0, 'PoD is not present');
  assert.equal(nptFormat.type(w[0]!, w[1]!), P2mType.PopulateOnDemand);
});

test('arm: exact bits of a page, a block, and lazy invalidation', () => {
  const w = new Uint32Array(2);
  armFormat.writeLeaf(w, 0, 0, 0x12345, P2mType.RamRw, Access.RWX, 0);
  assert.equal(w[0]! & 3, ARM_VALID | ARM_TABLE, 'page descriptor 0b11');
  assert.equal((w[0]! >>> 6) & 3, 0b11, 'S2AP RW');
  assert.equal(w[0]! & ARM_AF, ARM_AF);
  assert.equal((w[0]! >>> 2) & 0xf, 0b1111, 'MemAttr Normal WB');
  assert.equal((w[1]! >>> 23) & 0xf, P2mType.RamRw);
  armFormat.writeLeaf(w, 0, 1, 0x200, P2mType.RamLogdirty, Access.RWX, 0);
  assert.equal(w[0]! & 3, ARM_VALID, 'block descriptor 0b01');
  assert.equal((w[0]! >>> 6) & 3, 0b01, 'S2AP RO');
  assert.equal(w[0]! & ARM_S2AP_R, ARM_S2AP_R);
  armFormat.writeLeaf(w, 0, 0, 0x12345, P2mType.GrantMapRw, Access.RWX, 0);
  assert.equal(w[1]! & ARM_HI_XN, ARM_HI_XN);
  armFormat.markRecalc(w, 0);
  assert.equal(w[0]! & ARM_VALID, 0);
  assert.equal(armFormat.perms(w[0]!, w[1]!), 0);
  assert.equal(armFormat.isRecalc(w[0]!, w[1]!), true);
});
