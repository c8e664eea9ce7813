/**
 * Shadow out-of-sync resync points (Xen xen/arch/x86/mm/shadow/multi.c, oos.c):
 *  - shadow_get_and_create_l1e: an L4 or L3 shadow entry installed on the
 *    fault path ⇒ shadow_resync_all (every vCPU's OOS pages back in sync);
 *  - validate_gl4e / validate_gl3e: a guest L4/L3 entry written to point at a
 *    page already shadowed one level down ⇒ shadow_resync_all;
 *  - sh_update_cr3: shadow_resync_current_vcpu first (only this vCPU's pages),
 *    shadow_sync_other_vcpus last (others' shadows updated, pages left OOS,
 *    skipped where sh_safe_not_to_sync says this vCPU cannot reach them).
 * A stale entry is the witness: the guest clears a PTE in an OOS L1 (no trap),
 * so its shadow entry stays present until something resyncs the page.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Domain } from '../domain/domain.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import { PTE_A, PTE_P, PTE_RW, PTE_US, gvaIndex, pteGfn, pteHi, pteLo } from '../formats/x86-pte.ts';
import type { ShadowMode } from '../modes/shadow.ts';
import { createGuest } from '../runner/guest.ts';
import { GiB, MiB } from '../units.ts';

const region = (k: number): number => k * 2 * MiB;

function setup(vcpus: number) {
  const g = createGuest({ memBytes: 64 * MiB, vcpus, mode: 'shadow', addressing: 'paged', pageSize: '4k' });
  const mode = g.mode as ShadowMode;
  return { dom: g.domain, os: g.os!, mode, sh: mode.shadow, v: g.domain.vcpus };
}

/** gfn of the guest table at `level` (4: the PML4 itself) on the walk of gva from cr3Gfn, read from guest memory. */
function tableGfn(dom: Domain, cr3Gfn: number, gva: number, level: number): number {
  let table = cr3Gfn;
  for (let l = 4; l > level; l--) {
    const gpa = table * 4096 + gvaIndex(gva, l) * 8;
    table = pteGfn(dom.memory.readU32(gpa), dom.memory.readU32(gpa + 4));
  }
  return table;
}

/** A guest write to its own table entry, seen as the hardware would trap it (as runner/guest.ts routes the OS's writes). */
function guestWriteEntry(dom: Domain, mode: ShadowMode, v: Vcpu, gpa: number, lo: number, hi: number): void {
  mode.beforeGuestWrite(v, gpa + 4);
  dom.memory.writeU32(gpa + 4, hi);
  mode.afterGuestWrite(v, gpa + 4, 4);
  mode.beforeGuestWrite(v, gpa);
  dom.memory.writeU32(gpa, lo);
  mode.afterGuestWrite(v, gpa, 4);
}

/**
 * vCPU v maps region k (its L1 gets shadowed), then maps the next page of the
 * region (the OS's PTE write into that in-sync L1 unsyncs it, on v), then the
 * guest unmaps the region's first page: a write to an OOS page, no trap, so
 * shadow entry 0 of the L1 stays present (stale). Returns the L1's gfn.
 */
function staleOosL1(s: ReturnType<typeof setup>, v: Vcpu, k: number): number {
  v.store(region(k), 4, 1);
  v.store(region(k) + 4096, 4, 2);
  const pt = tableGfn(s.dom, s.os.cr3Gfn, region(k), 1);
  assert.equal(s.sh.isOutOfSync(pt), true, `L1 ${pt} out of sync`);
  assert.equal(s.os.unmap(region(k)), true);
  assert.equal(entryPresent(s, pt, 0), true, 'stale while OOS');
  return pt;
}

function entryPresent(s: ReturnType<typeof setup>, l1Gfn: number, idx: number): boolean {
  return (s.sh.entry(s.sh.shadowOf(1, l1Gfn)!, idx)[0] & PTE_P) !== 0;
}

test('fault path: a new L3 shadow entry resyncs every OOS page (shadow_get_and_create_l2e → shadow_resync_all); a new L2 entry does not', () => {
  const s = setup(2);
  const pt0 = staleOosL1(s, s.v[0]!, 0);
  const pt1 = staleOosL1(s, s.v[1]!, 3);
  // A new 2 MiB region in the same GiB: the L4 and L3 shadow entries are there, only L2/L1 are installed.
  s.v[0]!.store(region(7), 4, 5);
  assert.equal(s.sh.isOutOfSync(pt0), true, 'no L3/L4 entry installed: no resync');
  assert.equal(s.sh.isOutOfSync(pt1), true);
  // The next GiB: a new L3 shadow entry (the L4 entry is present).
  const resyncs0 = s.sh.stats.resyncs;
  s.v[0]!.store(1 * GiB, 4, 6);
  assert.equal(s.sh.isOutOfSync(pt0), false, 'this vCPU\'s OOS page is back in sync');
  assert.equal(s.sh.isOutOfSync(pt1), false, 'so is the other vCPU\'s (skip = 0)');
  assert.equal(entryPresent(s, pt0, 0), false, 'the cleared PTE left the shadow');
  assert.equal(entryPresent(s, pt1, 0), false);
  assert.equal(s.sh.stats.resyncs - resyncs0, 2);
  assert.equal(s.sh.writableMappings(pt0), 0, 'write-protected again');
  assert.equal(s.dom.crashed, false, s.dom.crashReason);
});

test('fault path: a new L4 shadow entry alone resyncs (shadow_get_and_create_l3e → shadow_resync_all)', () => {
  const s = setup(2);
  const [v0, v1] = [s.v[0]!, s.v[1]!];
  v0.store(region(1), 4, 1); // the OS's PDPT, PD and PT exist and are shadowed
  // vCPU 1 gets a PML4 of its own whose entry 0 is the OS's: same PDPT, so its L3 shadow is shared.
  const pml4B = s.dom.memory.pageCount - 1;
  s.dom.memory.writePage(pml4B, new Uint8Array(4096), 0);
  const e0 = s.os.cr3Gfn * 4096;
  s.dom.memory.writeU32(pml4B * 4096 + 4, s.dom.memory.readU32(e0 + 4));
  s.dom.memory.writeU32(pml4B * 4096, s.dom.memory.readU32(e0));
  v1.mmu.setCr3(pml4B * 4096);
  const pt = staleOosL1(s, v0, 0);
  const pdpt = tableGfn(s.dom, s.os.cr3Gfn, 0, 3);
  const sl3 = s.sh.shadowOf(3, pdpt)!;
  assert.equal(s.sh.entry(sl3, 0)[0] & PTE_P, PTE_P, 'the shared L3 shadow already has the entry: no L3 install below');
  assert.equal(s.v[1]!.load(region(1), 4), 0);
  assert.equal(s.sh.isOutOfSync(pt), false, 'the L4 entry install resynced vCPU 0\'s page');
  assert.equal(entryPresent(s, pt, 0), false);
  assert.equal(s.dom.crashed, false, s.dom.crashReason);
});

test('guest writes: an L4 or L3 entry pointing at an already shadowed table resyncs (validate_gl4e / validate_gl3e); at an unshadowed one it does not', () => {
  for (const level of [4, 3]) {
    const s = setup(2);
    const [v0, v1] = [s.v[0]!, s.v[1]!];
    const pt = staleOosL1(s, v1, 0);
    const table = tableGfn(s.dom, s.os.cr3Gfn, 0, level); // the PML4 or the PDPT: shadowed, in sync
    assert.ok(s.sh.shadowOf(level, table) !== undefined);
    const child = tableGfn(s.dom, s.os.cr3Gfn, 0, level - 1); // shadowed at level − 1
    const flags = PTE_P | PTE_RW | PTE_US | PTE_A;
    // Entry 5 → a fresh frame nobody shadows: emulated, no resync.
    const fresh = s.dom.memory.pageCount - 2;
    s.dom.memory.writePage(fresh, new Uint8Array(4096), 0);
    const emulated0 = s.sh.stats.emulated;
    guestWriteEntry(s.dom, s.mode, v0, table * 4096 + 5 * 8, pteLo(fresh, flags), pteHi(fresh, false));
    assert.ok(s.sh.stats.emulated > emulated0, `L${level}: the write trapped and was emulated`);
    assert.equal(s.sh.isOutOfSync(pt), true, `L${level}: target not shadowed: no resync`);
    // Entry 6 → the shadowed table below: shadow_resync_all.
    guestWriteEntry(s.dom, s.mode, v0, table * 4096 + 6 * 8, pteLo(child, flags), pteHi(child, false));
    assert.equal(s.sh.isOutOfSync(pt), false, `L${level}: vCPU 1's OOS page resynced by vCPU 0's write`);
    assert.equal(entryPresent(s, pt, 0), false);
    assert.equal(s.dom.crashed, false, s.dom.crashReason);
  }
});

test('CR3 load: this vCPU\'s pages resynced; others\' updated and left OOS, or skipped where sh_safe_not_to_sync allows', () => {
  const s = setup(3);
  const [v0, v1, v2] = [s.v[0]!, s.v[1]!, s.v[2]!];
  const mem = s.dom.memory;
  // Address space B (vCPU 2): PML4_B → PDPT_B → PD_B → PT_B → two data pages, built by hand at the top of memory.
  const top = mem.pageCount;
  const [pml4B, pdptB, pdB, ptB, d0, d1] = [top - 1, top - 2, top - 3, top - 4, top - 5, top - 6];
  const zero = new Uint8Array(4096);
  for (const f of [pml4B, pdptB, pdB, ptB, d0, d1]) mem.writePage(f, zero, 0);
  const flags = PTE_P | PTE_RW | PTE_US;
  const link = (table: number, idx: number, to: number): void => {
    mem.writeU32(table * 4096 + idx * 8 + 4, pteHi(to, false));
    mem.writeU32(table * 4096 + idx * 8, pteLo(to, flags));
  };
  link(pml4B, 0, pdptB);
  link(pdptB, 0, pdB);
  link(pdB, 0, ptB);
  link(ptB, 0, d0);
  v2.mmu.setCr3(pml4B * 4096);
  assert.equal(v2.load(0, 4), 0); // shadows L4_B, L3, L2, L1 of PT_B: one chain, one reference each
  assert.equal(s.sh.isPageTable(ptB), true);
  // vCPU 1 maps region 0 of the OS's space now, so that no L4/L3 install (a resync_all) comes later.
  v1.store(region(0), 4, 1);
  // vCPU 1 unsyncs PT_B (a write into it) and then clears its entry 0: stale in the shadow.
  guestWriteEntry(s.dom, s.mode, v1, ptB * 4096 + 8, pteLo(d1, flags), pteHi(d1, false));
  assert.equal(s.sh.isOutOfSync(ptB), true);
  guestWriteEntry(s.dom, s.mode, v1, ptB * 4096, 0, 0);
  assert.equal(entryPresent(s, ptB, 0), true, 'stale while OOS');
  // vCPU 1 also has an OOS page reachable from the OS's tables (vCPU 0's address space).
  const ptA = staleOosL1(s, v1, 0);
  assert.equal(s.sh.safeNotToSync(0, ptB), true, 'PT_B: single chain up to L4_B, which vCPU 0 does not run on');
  assert.equal(s.sh.safeNotToSync(0, ptA), false);
  // vCPU 0 reloads CR3.
  const skips0 = s.sh.stats.oosSkips;
  v0.mmu.setCr3(s.os.cr3);
  assert.equal(s.sh.isOutOfSync(ptB), true, 'other vCPU\'s page stays OOS');
  assert.equal(entryPresent(s, ptB, 0), true, 'skipped: vCPU 0 cannot reach PT_B, its shadow is left stale');
  assert.equal(s.sh.stats.oosSkips - skips0, 1);
  assert.equal(s.sh.isOutOfSync(ptA), true, 'other vCPU\'s page stays OOS (shadow_sync_other_vcpus)');
  assert.equal(entryPresent(s, ptA, 0), false, 'but its shadow was updated: vCPU 0 reaches it');
  // vCPU 2 reloads its own CR3: PT_B's chain ends at its top level, so it is not skipped.
  assert.equal(s.sh.safeNotToSync(2, ptB), false);
  v2.mmu.setCr3(pml4B * 4096);
  assert.equal(s.sh.isOutOfSync(ptB), true);
  assert.equal(entryPresent(s, ptB, 0), false, 'updated for vCPU 2, still OOS');
  // vCPU 1's own CR3 load brings its pages back in sync.
  v1.mmu.setCr3(s.os.cr3);
  assert.equal(s.sh.isOutOfSync(ptB), false);
  assert.equal(s.sh.isOutOfSync(ptA), false);
  assert.equal(s.dom.crashed, false, s.dom.crashReason);
});

test('sh_safe_not_to_sync: a second reference on the chain (a second L4 sharing the L3) makes it unsafe', () => {
  const s = setup(2);
  const [v0, v1] = [s.v[0]!, s.v[1]!];
  const ptA = staleOosL1(s, v1, 0);
  // vCPU 0 runs on a second PML4 whose entry 0 is the OS's: the OS's L3 shadow now has two parents.
  const pml4B = s.dom.memory.pageCount - 1;
  s.dom.memory.writePage(pml4B, new Uint8Array(4096), 0);
  const e0 = s.os.cr3Gfn * 4096;
  s.dom.memory.writeU32(pml4B * 4096 + 4, s.dom.memory.readU32(e0 + 4));
  s.dom.memory.writeU32(pml4B * 4096, s.dom.memory.readU32(e0));
  v0.mmu.setCr3(pml4B * 4096);
  assert.equal(v0.load(region(0) + 4096, 4), 0); // installs L4_B[0] → the shared L3 shadow
  const pdpt = tableGfn(s.dom, s.os.cr3Gfn, 0, 3);
  assert.equal(s.sh.shadowOf(3, pdpt)!.refs, 2);
  assert.equal(s.sh.safeNotToSync(0, ptA), false, 'L3 shadow referenced twice');
  assert.equal(s.sh.isOutOfSync(ptA), false, 'and installing L4_B[0] resynced it anyway');
});

test('sh_safe_not_to_sync: when the entry holding the up-pointer lets go, the page is unsafe even with one reference left (sh_put_ref clears sp->up)', () => {
  const s = setup(2);
  const [v0, v1] = [s.v[0]!, s.v[1]!];
  v0.store(region(0), 4, 1); // L4_A[0] → L3 shadow of the OS's PDPT: its up-pointer
  const pml4B = s.dom.memory.pageCount - 1;
  s.dom.memory.writePage(pml4B, new Uint8Array(4096), 0);
  const e0 = s.os.cr3Gfn * 4096;
  s.dom.memory.writeU32(pml4B * 4096 + 4, s.dom.memory.readU32(e0 + 4));
  s.dom.memory.writeU32(pml4B * 4096, s.dom.memory.readU32(e0));
  v1.mmu.setCr3(pml4B * 4096);
  assert.equal(v1.load(region(0), 4), 0); // L4_B[0] → the same L3 shadow: a second reference
  const pdpt = tableGfn(s.dom, s.os.cr3Gfn, 0, 3);
  const pt = tableGfn(s.dom, s.os.cr3Gfn, 0, 1);
  assert.equal(s.sh.shadowOf(3, pdpt)!.refs, 2);
  // The guest clears PML4_A[0] (trapped, emulated): the L3 shadow keeps L4_B's reference only.
  guestWriteEntry(s.dom, s.mode, v0, e0, 0, 0);
  assert.equal(s.sh.shadowOf(3, pdpt)!.refs, 1);
  assert.equal(s.sh.safeNotToSync(1, pt), false, 'no up-pointer on the L3 any more: the chain is unknown, so unsafe');
  assert.equal(s.dom.crashed, false, s.dom.crashReason);
});
