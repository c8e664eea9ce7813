/**
 * The field decoders against entries assembled by hand here, bit by bit from
 * the manuals (BigInt, not the formats' constants): values the walks of a
 * running guest seldom produce (an ARM page with AF clear, an NPT entry with
 * U/S cleared for recalc, an EPT superpage with UC memory type).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { armFormat } from '../p2m/formats/arm.ts';
import { eptFormat } from '../p2m/formats/ept.ts';
import { nptFormat } from '../p2m/formats/npt.ts';
import { fieldsSet, p2mEntryFields, p2mLevelNumber, x86EntryFields } from './entry-fields.ts';

const split = (v: bigint): [number, number] => [Number(v & 0xffffffffn), Number(v >> 32n)];
const b = (n: number): bigint => 1n << BigInt(n);

test('EPT: a 2 MiB leaf, UC, read-only, D clear; a table entry', () => {
  // R (0), X (2), memtype UC (5:3 = 0), IPAT (6), SP (7), A (8), mfn 0x12345 << 12 … the frame of a 2 MiB page, type 3 (ram_ro) at 57:52, access 5 (rx) at 61:58, SVE 63.
  const v = b(0) | b(2) | b(6) | b(7) | b(8) | (0x12200n << 12n) | (3n << 52n) | (5n << 58n) | b(63);
  const f = p2mEntryFields(eptFormat, ...split(v), 1);
  assert.deepEqual(
    [f.R, f.W, f.X, f.memtype, f.IPAT, f.SP, f.A, f.D, f.mfn, f.sa_p2mt, f.access, f.SVE],
    [true, false, true, '0 UC', true, true, true, false, '0x12200', 'ram_ro', 'rx', true],
  );
  const t = p2mEntryFields(eptFormat, ...split(b(0) | b(1) | b(2) | (0x77n << 12n)), 3);
  assert.equal(t.memtype, undefined, 'a table entry has no memory type');
  assert.equal(t.mfn, '0x77');
  assert.equal(p2mLevelNumber(eptFormat, 3), 4);
});

test('NPT: a leaf with U/S cleared (Xen\'s recalc mark), RW clear, NX set', () => {
  // P (0), PWT (3), A (5), D (6), G (8), frame 0x4242, type 2 (ram_logdirty) at 58:52, NX 63.
  const v = b(0) | b(3) | b(5) | b(6) | b(8) | (0x4242n << 12n) | (2n << 52n) | b(63);
  const f = p2mEntryFields(nptFormat, ...split(v), 0);
  assert.deepEqual([f.P, f.RW, f.US, f.PWT, f.PCD, f.A, f.D, f.G, f.NX, f.mfn, f.p2m_type], [true, false, false, true, false, true, true, true, true, '0x4242', 'ram_logdirty']);
});

test('ARM stage 2: a page with AF clear, S2AP read-only, XN; a block; a table; levels numbered 0..3', () => {
  // V (0), T (1: page), MemAttr 0b1111 (5:2), S2AP 01 (7:6: read-only), SH 0b11 (9:8), AF clear (10), OA 0x99000, XN 54, type 2 at 58:55.
  const page = b(0) | b(1) | (0xfn << 2n) | b(6) | (3n << 8n) | (0x99n << 12n) | b(54) | (2n << 55n);
  const f = p2mEntryFields(armFormat, ...split(page), 0);
  assert.deepEqual([f.V, f.T, f.descriptor, f.MemAttr, f.S2AP, f.SH, f.AF, f.XN, f.OA, f.p2m_type], [true, true, 'page', 15, 'RO', 'inner', false, true, '0x99000', 'ram_logdirty']);
  const block = p2mEntryFields(armFormat, ...split(b(0) | b(6) | b(7) | b(10) | (0x200n << 12n)), 1);
  assert.deepEqual([block.descriptor, block.S2AP, block.AF, block.XN], ['block', 'RW', true, false]);
  const table = p2mEntryFields(armFormat, ...split(b(0) | b(1) | (0x5n << 12n)), 3);
  assert.deepEqual([table.descriptor, table.OA, table.AF], ['table', '0x5000', undefined]);
  assert.deepEqual([0, 1, 2, 3].map((l) => p2mLevelNumber(armFormat, l)), [3, 2, 1, 0]);
});

test('x86 guest entries: PS only in a PDPTE/PDE, D and G only in a leaf; fieldsSet names the flags that went 0 → 1', () => {
  const pte = b(0) | b(1) | b(2) | b(5) | (0x10n << 12n) | b(63);
  const f = x86EntryFields(...split(pte), 1, 'gfn');
  assert.deepEqual([f.P, f['R/W'], f['U/S'], f.A, f.D, f.G, f.XD, f.gfn, f.PS], [true, true, true, true, false, false, true, '0x10', undefined]);
  const pde2m = x86EntryFields(...split(b(0) | b(7) | b(6) | (0x200n << 12n)), 2, 'gfn');
  assert.deepEqual([pde2m.PS, pde2m.D, pde2m.A], [true, true, false]);
  const pml4e = x86EntryFields(...split(b(0) | b(7)), 4, 'mfn');
  assert.deepEqual([pml4e.PS, pml4e.D, pml4e.mfn], [undefined, undefined, '0x0']);
  const after = x86EntryFields(...split(pte | b(6)), 1, 'gfn');
  assert.deepEqual(fieldsSet(f, after), ['D']);
  assert.deepEqual(fieldsSet(after, f), [], 'a flag cleared is not "set"');
});
