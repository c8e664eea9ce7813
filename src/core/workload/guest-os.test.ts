import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PTE_A, PTE_D, PTE_HI_NX, PTE_P, PTE_PS, PTE_RW, PTE_US } from '../formats/x86-pte.ts';
import type { GuestPhysAccess } from '../memory/guest-phys.ts';
import { Xoshiro128 } from '../rng.ts';
import { GUEST_OS_PTE_FLAGS, GuestAddressError, GuestOs, guestOsMappablePages, OutOfFramesError } from './guest-os.ts';

const PAGE = 4096;
const GARBAGE = 0xdeadbeef;

/**
 * Guest memory as a Map of frames. Unpopulated frames read as garbage, as
 * the memory of a guest that has been running would: the OS must zero its
 * tables itself.
 */
class FakeGuestPhys implements GuestPhysAccess {
  readonly frames = new Map<number, Uint32Array>();
  writes = 0;
  constructor(readonly pageCount: number) {}
  private frame(gfn: number): Uint32Array {
    assert.ok(gfn >= 0 && gfn < this.pageCount, `gfn ${gfn} outside the guest`);
    let f = this.frames.get(gfn);
    if (f === undefined) {
      f = new Uint32Array(PAGE / 4).fill(GARBAGE);
      this.frames.set(gfn, f);
    }
    return f;
  }
  readU32(gpa: number): number {
    assert.equal(gpa % 4, 0);
    const f = this.frames.get(Math.floor(gpa / PAGE));
    return f === undefined ? GARBAGE : f[(gpa % PAGE) / 4]!;
  }
  writeU32(gpa: number, value: number): void {
    assert.equal(gpa % 4, 0);
    this.writes++;
    this.frame(Math.floor(gpa / PAGE))[(gpa % PAGE) / 4] = value >>> 0;
  }
  readPage(gfn: number, dst: Uint8Array, dstOffset: number): boolean {
    const f = this.frames.get(gfn);
    if (f === undefined) {
      dst.fill(0, dstOffset, dstOffset + PAGE);
      return false;
    }
    dst.set(new Uint8Array(f.buffer), dstOffset);
    return true;
  }
  writePage(gfn: number, src: Uint8Array, srcOffset: number): void {
    this.writes++;
    new Uint8Array(this.frame(gfn).buffer).set(src.subarray(srcOffset, srcOffset + PAGE));
  }
}

/** A naive walker, independent of the OS's code: BigInt entries, explicit shifts. */
function naiveWalk(mem: GuestPhysAccess, cr3Gfn: number, gva: number): { gpa: number; tables: number[]; entries: bigint[] } | null {
  const v = BigInt(gva);
  let table = BigInt(cr3Gfn);
  const tables: number[] = [];
  const entries: bigint[] = [];
  for (const shift of [39n, 30n, 21n, 12n]) {
    tables.push(Number(table));
    const index = (v >> shift) & 511n;
    const gpa = table * 4096n + index * 8n;
    const entry = BigInt(mem.readU32(Number(gpa))) | (BigInt(mem.readU32(Number(gpa + 4n))) << 32n);
    if ((entry & 1n) === 0n) return null;
    entries.push(entry);
    table = (entry & 0x000f_ffff_ffff_f000n) >> 12n;
  }
  return { gpa: Number(table * 4096n + (v & 0xfffn)), tables, entries };
}

describe('GuestOs', () => {
  it('starts with a zeroed PML4 and nothing mapped', () => {
    const mem = new FakeGuestPhys(64);
    const os = new GuestOs(mem, { firstGfn: 5 });
    assert.equal(os.cr3Gfn, 5);
    assert.equal(os.cr3, 5 * PAGE);
    assert.equal(os.mappedPages, 0);
    assert.equal(os.tableFrames, 1);
    assert.ok(mem.frames.get(5)!.every((w) => w === 0));
    assert.equal(os.translate(0x1234), -1);
    assert.equal(naiveWalk(mem, os.cr3Gfn, 0x1234), null);
  });

  it('maps on first touch: distinct frames, shared tables, real PTEs', () => {
    const mem = new FakeGuestPhys(1024);
    const os = new GuestOs(mem);
    const gvas = [
      0x0, 0x1abc, 0x1f_f000, // same PT
      0x20_0010, // new PT, same PD
      0x4000_0000, // new PD (and PT), same PDPT
      0x80_0000_0000, // new PDPT, PD, PT
      0x7fff_ffff_f123, // top of the lower half
      0xffff_ff60_0000, // folded vsyscall page
    ];
    const expectTables = [3, 0, 0, 1, 2, 3, 3, 3];
    const dataFrames = new Set<number>();
    gvas.forEach((gva, i) => {
      const tablesBefore = os.tableFrames;
      assert.equal(os.translate(gva), -1);
      assert.equal(os.handlePageFault(gva), true);
      assert.equal(os.tableFrames - tablesBefore, expectTables[i], `tables for 0x${gva.toString(16)}`);
      const walked = naiveWalk(mem, os.cr3Gfn, gva)!;
      assert.ok(walked !== null);
      assert.equal(os.translate(gva), walked.gpa);
      assert.equal(walked.gpa % PAGE, gva % PAGE);
      dataFrames.add(Math.floor(walked.gpa / PAGE));
      for (const e of walked.entries) {
        const lo = Number(e & 0xffffffffn);
        const hi = Number(e >> 32n);
        assert.equal(lo & 0xfff, GUEST_OS_PTE_FLAGS);
        assert.equal(lo & (PTE_P | PTE_RW | PTE_US), PTE_P | PTE_RW | PTE_US);
        assert.equal(lo & (PTE_A | PTE_D | PTE_PS), 0);
        assert.equal(hi & PTE_HI_NX, 0);
      }
    });
    assert.equal(dataFrames.size, gvas.length);
    assert.equal(os.mappedPages, gvas.length);
    assert.equal(os.tableFrames, 1 + 15);
    // Shared tables: same PT for the first three, same PD for 0x0 and 0x200010, same PDPT for 0x0 and 0x40000000.
    const t = (gva: number) => naiveWalk(mem, os.cr3Gfn, gva)!.tables;
    assert.deepEqual(t(0x1abc), t(0x0));
    assert.deepEqual(t(0x1f_f000), t(0x0));
    assert.deepEqual(t(0x20_0010).slice(0, 3), t(0x0).slice(0, 3));
    assert.notEqual(t(0x20_0010)[3], t(0x0)[3]);
    assert.deepEqual(t(0x4000_0000).slice(0, 2), t(0x0).slice(0, 2));
    assert.notEqual(t(0x4000_0000)[2], t(0x0)[2]);
    assert.notEqual(t(0x80_0000_0000)[1], t(0x0)[1]);
    // Table frames and data frames never overlap.
    const tableSet = new Set(gvas.flatMap((g) => t(g)));
    assert.equal(tableSet.size, os.tableFrames);
    for (const f of dataFrames) assert.ok(!tableSet.has(f));
    // Data frames keep their contents unless asked to zero them.
    const data = mem.frames.get(Math.floor(os.translate(0x1abc) / PAGE));
    assert.ok(data === undefined || data[0] === GARBAGE);
    // A second fault on a mapped page changes nothing.
    const writes = mem.writes;
    assert.equal(os.handlePageFault(0x1ff), true);
    assert.equal(mem.writes, writes);
    assert.equal(os.faultsHandled, gvas.length);
  });

  it('zeroes data frames when asked', () => {
    const mem = new FakeGuestPhys(16);
    const os = new GuestOs(mem, { zeroDataFrames: true });
    assert.ok(os.handlePageFault(0x5000));
    const gfn = Math.floor(os.translate(0x5000) / PAGE);
    assert.ok(mem.frames.get(gfn)!.every((w) => w === 0));
  });

  it('reports out of frames, changing nothing', () => {
    const mem = new FakeGuestPhys(64);
    const os = new GuestOs(mem, { firstGfn: 10, endGfn: 15 }); // PML4 + 4 frames
    assert.equal(os.framesFree, 4);
    assert.equal(os.handlePageFault(0x1000), true); // PDPT, PD, PT, data
    assert.equal(os.framesFree, 0);
    const writes = mem.writes;
    assert.equal(os.handlePageFault(0x2000), false);
    assert.equal(mem.writes, writes);
    assert.equal(os.translate(0x2000), -1);
    assert.equal(os.mappedPages, 1);
    assert.equal(os.outOfFrames, 1);

    // Three frames free but four needed: refused whole, not half-built.
    const os2 = new GuestOs(new FakeGuestPhys(64), { firstGfn: 0, endGfn: 4 });
    assert.equal(os2.handlePageFault(0x1000), false);
    assert.equal(os2.tableFrames, 1);
    assert.equal(os2.framesFree, 3);

    assert.throws(() => new GuestOs(new FakeGuestPhys(8), { firstGfn: 8 }), OutOfFramesError);
    assert.throws(() => new GuestOs(new FakeGuestPhys(8), { endGfn: 9 }), RangeError);
  });

  it('unmap frees the frame for the next fault', () => {
    const mem = new FakeGuestPhys(64);
    const os = new GuestOs(mem);
    os.handlePageFault(0x3000);
    const gfn = Math.floor(os.translate(0x3000) / PAGE);
    assert.equal(os.unmap(0x3000), true);
    assert.equal(os.translate(0x3000), -1);
    assert.equal(os.unmap(0x3000), false);
    assert.equal(os.mappedPages, 0);
    os.handlePageFault(0x9000);
    assert.equal(Math.floor(os.translate(0x9000) / PAGE), gfn);
  });

  it('rejects gvas outside 48 bits', () => {
    const os = new GuestOs(new FakeGuestPhys(8));
    for (const bad of [-1, 2 ** 48, 0.5, NaN]) {
      assert.throws(() => os.handlePageFault(bad), GuestAddressError);
      assert.throws(() => os.translate(bad), GuestAddressError);
    }
  });

  it('agrees with the naive walker over many random faults', () => {
    const mem = new FakeGuestPhys(1 << 14);
    const os = new GuestOs(mem);
    const rng = new Xoshiro128(42);
    const model = new Map<number, number>(); // gva page → gfn
    for (let i = 0; i < 3000; i++) {
      // Clustered: a few regions, as a process's heap, stack and libraries.
      const region = [0x40_0000, 0x7f12_3400_0000, 0x5555_5555_0000, 0x1_0000_0000][rng.nextInt(4)]!;
      const gva = region + rng.nextInt(1 << 24);
      const page = Math.floor(gva / PAGE);
      assert.ok(os.handlePageFault(gva));
      const gpa = naiveWalk(mem, os.cr3Gfn, gva)!.gpa;
      const gfn = Math.floor(gpa / PAGE);
      if (model.has(page)) assert.equal(model.get(page), gfn);
      else model.set(page, gfn);
      assert.equal(os.translate(gva), gpa);
    }
    assert.equal(os.mappedPages, model.size);
    assert.equal(new Set(model.values()).size, model.size);
    assert.equal(os.framesFree, (1 << 14) - os.mappedPages - os.tableFrames);
  });

  it('guestOsMappablePages: exactly the pages the OS maps at gvas 0, 1, 2, … before it runs out of frames', () => {
    // Oracle: the OS itself, faulting in consecutive pages until it refuses. Frame counts around
    // the 2 MiB (one PT per 512 pages) boundaries, where the answer steps, and the soak's sizes.
    const sizes = [1, 2, 3, 4, 5, 6, 7, 64, 256, 512, 513, 514, 515, 516, 517, 518, 1024, 1026, 1027, 1028, 1029, 1030, 1031, 1536];
    for (const frames of sizes) {
      const os = new GuestOs(new FakeGuestPhys(frames));
      let mapped = 0;
      while (os.handlePageFault(mapped * PAGE)) mapped++;
      assert.equal(os.outOfFrames, 1);
      assert.equal(guestOsMappablePages(frames), mapped, `${frames} frames`);
    }
    assert.equal(guestOsMappablePages(0), 0);
  });
});
