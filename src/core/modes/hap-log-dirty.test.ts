/**
 * Xen HAP log-dirty modes on the real walker: acceptance behaviours 1-7 of
 * the spec (reference/xen-semantics.md §9), the PML-full count law, the
 * every-exit flush policy, the ARM bitmap/list variants, control costs and
 * refusals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Domain } from '../domain/domain.ts';
import { STAT_CYCLES, STAT_PML_LOGGED } from '../mmu/mmu-stats.ts';
import { PML_INDEX_START } from '../mmu/pml.ts';
import { P2mLookup } from '../p2m/p2m.ts';
import { P2mType } from '../p2m/p2m-type.ts';
import type { P2mFormatName } from '../p2m/p2m-format.ts';
import { Xoshiro128 } from '../rng.ts';
import { GiB, MiB, PAGE_SIZE } from '../units.ts';
import { ExitReason } from '../vm-exit.ts';
import { AccessBatch, AccessKind } from '../workload/access-batch.ts';
import type { DirtyMode, ModeOptions } from './dirty-mode.ts';
import { ArmWpMode } from './arm-wp.ts';
import { EptPmlMode } from './ept-pml.ts';
import { DirtyModeError, HapLogDirtyMode } from './hap-log-dirty.ts';
import { MODES } from './registry.ts';

function setup(name: 'ept-wp' | 'ept-pml' | 'npt-wp' | 'arm-wp', pages: number, extra: { populateOrder?: number; upFront?: boolean; opts?: ModeOptions; vcpus?: number } = {}) {
  const e = MODES[name]!;
  const dom = new Domain({
    format: e.format, memBytes: pages * PAGE_SIZE, vcpus: extra.vcpus ?? 1, populateOrder: extra.populateOrder ?? 0,
    populate: extra.upFront === false ? 'on-demand' : 'up-front',
  });
  const mode = e.create(dom, extra.opts ?? {});
  const bm = new Uint32Array(Math.ceil(pages / 32));
  return { dom, mode, bm, v: dom.vcpus[0]! };
}

function bits(bm: Uint32Array): number[] {
  const out: number[] = [];
  for (let w = 0; w < bm.length; w++) for (let b = 0; b < 32; b++) if ((bm[w]! >>> b) & 1) out.push(w * 32 + b);
  return out;
}

function store(dom: Domain, gfn: number, value = 1, vcpu = 0): void {
  assert.equal(dom.vcpus[vcpu]!.store(gfn * PAGE_SIZE + 8, 8, value), 0, dom.crashReason);
}

function load(dom: Domain, gfn: number): void {
  assert.equal(dom.vcpus[0]!.load(gfn * PAGE_SIZE, 4), 0, dom.crashReason);
}

function exits(dom: Domain, r: ExitReason): number {
  return dom.totalExits()[r]!;
}

// ---------------------------------------------------------------- behaviours 1-3 (ept-wp)

test('§9.1 ept-wp: G written twice ⇒ CLEAN bit G, dirty_count 1, fault_count 0; next CLEAN all 0', () => {
  const { dom, mode, bm } = setup('ept-wp', 1024);
  mode.enable();
  store(dom, 77, 1);
  store(dom, 77, 2);
  assert.equal(exits(dom, ExitReason.EptViolation), 1, 'one write fault, the second write hits a rw page');
  const r = mode.harvest(bm);
  assert.deepEqual(bits(bm), [77]);
  assert.deepEqual(r, { dirtyCount: 1, faultCount: 0 });
  const r2 = mode.harvest(bm);
  assert.deepEqual(bits(bm), []);
  assert.deepEqual(r2, { dirtyCount: 0, faultCount: 0 });
});

test('§9.2 ept-wp: PEEK after 3 distinct pages ⇒ dirty_count 3; a second PEEK is the same (no reset)', () => {
  const { dom, mode, bm } = setup('ept-wp', 1024);
  mode.enable();
  for (const g of [3, 500, 900]) store(dom, g);
  store(dom, 500);
  assert.equal(mode.peek(bm).dirtyCount, 3);
  assert.deepEqual(bits(bm), [3, 500, 900]);
  bm.fill(0);
  assert.equal(mode.peek(bm).dirtyCount, 3);
  assert.deepEqual(bits(bm), [3, 500, 900]);
});

test('§9.3 ept-wp: CLEAN with a null bitmap copies nothing but clears tree and counters', () => {
  const { dom, mode, bm } = setup('ept-wp', 1024);
  mode.enable();
  for (const g of [1, 2, 3]) store(dom, g);
  assert.equal(mode.harvest(null).dirtyCount, 3);
  assert.equal(mode.peek(bm).dirtyCount, 0);
  assert.deepEqual(bits(bm), []);
});

// ---------------------------------------------------------------- behaviour 4

test('§9.4 ept-wp: after CLEAN every previously rw gfn reads ram_logdirty at once; hardware is rewritten one 512-entry table per misconfig', () => {
  const pages = 8 * 512;
  const { dom, mode, bm } = setup('ept-wp', pages);
  mode.enable();
  for (let g = 0; g < pages; g++) store(dom, g);
  assert.equal(mode.harvest(bm).dirtyCount, pages);
  const p2m = dom.p2m;
  const fmt = p2m.fmt;
  const r = new P2mLookup();
  const leafBefore = p2m.stats.recalcLeafTables;
  for (let g = 0; g < pages; g++) {
    p2m.lookup(g, r);
    assert.equal(r.type, P2mType.RamLogdirty, `software view of gfn ${g}`);
    const [level, lo, hi] = p2m.rawEntry(g)!;
    assert.equal(level, 0);
    assert.equal(fmt.type(lo, hi), P2mType.RamRw, `hardware entry of gfn ${g} not yet rewritten`);
  }
  assert.equal(p2m.stats.recalcLeafTables, leafBefore, 'CLEAN rewrote no leaf table');
  const mis0 = exits(dom, ExitReason.EptMisconfig);
  load(dom, 5); // first access to table 0
  assert.equal(exits(dom, ExitReason.EptMisconfig), mis0 + 1);
  assert.equal(p2m.stats.recalcLeafTables, leafBefore + 1);
  for (const g of [0, 5, 511]) assert.equal(fmt.type(...(p2m.rawEntry(g)!.slice(1) as [number, number])), P2mType.RamLogdirty);
  for (const g of [512, 4095]) assert.equal(fmt.type(...(p2m.rawEntry(g)!.slice(1) as [number, number])), P2mType.RamRw);
  load(dom, 300); // same table: no exit
  load(dom, 3 * 512 + 1); // table 3
  assert.equal(exits(dom, ExitReason.EptMisconfig), mis0 + 2);
  assert.equal(p2m.stats.recalcLeafTables, leafBefore + 2);
  assert.equal(exits(dom, ExitReason.EptViolation), pages, 'loads raise no write faults');
});

// ---------------------------------------------------------------- behaviour 5

for (const name of ['ept-wp', 'ept-pml', 'npt-wp', 'arm-wp'] as const) {
  test(`§9.5 ${name}: write to the 5th 4K page of a logdirty 2 MiB page ⇒ only that gfn dirty/rw, 511 siblings logdirty 4K`, () => {
    const { dom, mode, bm } = setup(name, 1024, { populateOrder: 9 });
    const r = new P2mLookup();
    dom.p2m.lookup(512, r);
    assert.equal(r.order, 9);
    mode.enable();
    store(dom, 512 + 4, 42);
    const res = mode.harvest(bm);
    assert.deepEqual(bits(bm), [516]);
    assert.equal(res.dirtyCount, 1);
    assert.equal(dom.p2m.stats.superpageSplits, 1);
    dom.p2m.lookup(516, r);
    assert.equal(r.order, 0);
    // CLEAN re-armed it: the software view is logdirty again; before, it was rw.
    assert.equal(r.type, P2mType.RamLogdirty);
    for (let g = 512; g < 1024; g++) {
      dom.p2m.lookup(g, r);
      assert.equal(r.order, 0, `gfn ${g} is a 4K entry`);
      assert.equal(r.type, P2mType.RamLogdirty);
    }
    dom.p2m.lookup(0, r);
    assert.equal(r.order, 9, 'the other superpage is untouched');
    assert.equal(dom.memory.readU32((512 + 4) * PAGE_SIZE + 8), 42);
  });
}

test('§9.5 ept-wp: before CLEAN the written gfn is rw and the siblings logdirty', () => {
  const { dom, mode } = setup('ept-wp', 1024, { populateOrder: 9 });
  mode.enable();
  store(dom, 516);
  const r = new P2mLookup();
  dom.p2m.lookup(516, r);
  assert.equal(r.type, P2mType.RamRw);
  for (const g of [512, 515, 517, 1023]) {
    dom.p2m.lookup(g, r);
    assert.equal(r.type, P2mType.RamLogdirty);
    assert.equal(r.order, 0);
  }
  assert.equal((mode as HapLogDirtyMode).logDirty.isPfnDirty(516), true);
});

// ---------------------------------------------------------------- behaviours 6-7 (PML)

/** ept-pml with all pages populated and every leaf table already resolved (so writes raise nothing but PML). */
function pmlReady(pages: number, opts: ModeOptions = {}) {
  const s = setup('ept-pml', pages, { opts });
  s.mode.enable();
  for (let g = 0; g < pages; g++) load(s.dom, g);
  return s;
}

test('§9.6 ept-pml: 512 first writes log without exits; the 513th exits pml_full, flush marks 512, index 511, retried and logged', () => {
  const { dom, mode, v } = pmlReady(1024);
  const pml = v.mmu.pml;
  const ld = (mode as EptPmlMode).logDirty;
  const exits0 = dom.totalExits().reduce((a, b) => a + b, 0);
  for (let g = 0; g < 512; g++) store(dom, g);
  assert.equal(dom.totalExits().reduce((a, b) => a + b, 0), exits0, 'no exit for 512 first writes');
  assert.equal(pml.index, 0xffff, 'index wrapped below 0');
  assert.equal(pml.pending(), 512);
  assert.equal(ld.trie.countDirty(), 0, 'nothing flushed yet');
  store(dom, 512);
  assert.equal(exits(dom, ExitReason.PmlFull), 1);
  assert.equal(dom.totalExits().reduce((a, b) => a + b, 0), exits0 + 1);
  assert.equal(ld.trie.countDirty(), 512, 'the flush marked the 512 logged pages');
  assert.equal(ld.dirtyCount, 512);
  assert.equal(pml.index, PML_INDEX_START - 1, 'index reset to 511, then the retried write logged once');
  assert.equal(pml.pending(), 1);
  const logged = v.stats[STAT_PML_LOGGED]!;
  store(dom, 512, 9); // already logged (D=1): not logged again
  store(dom, 7, 9); // flushed: rw now
  assert.equal(v.stats[STAT_PML_LOGGED], logged);
  assert.equal(pml.index, PML_INDEX_START - 1);
});

test('§9.7 ept-pml: writes sitting unflushed in the PML log are in the next PEEK and CLEAN', () => {
  const { dom, mode, bm, v } = pmlReady(1024);
  for (const g of [10, 20, 30, 700]) store(dom, g);
  assert.equal(v.mmu.pml.pending(), 4);
  assert.equal(mode.peek(bm).dirtyCount, 4);
  assert.deepEqual(bits(bm), [10, 20, 30, 700]);
  assert.equal(v.mmu.pml.pending(), 0, 'PEEK flushed the log under pause');
  store(dom, 40);
  bm.fill(0);
  assert.equal(mode.harvest(bm).dirtyCount, 5);
  assert.deepEqual(bits(bm), [10, 20, 30, 40, 700]);
  assert.equal(mode.harvest(bm).dirtyCount, 0);
});

test('ept-pml, flush on demand: pml_full exits in a window with d distinct written pages = floor((d − 1) / 512)', () => {
  const pages = 4096;
  const { dom, mode, bm } = setup('ept-pml', pages, { upFront: false, opts: { pmlFlush: 'on-demand' } });
  mode.enable();
  const rng = new Xoshiro128(5);
  for (const d of [1, 2, 511, 512, 513, 1024, 1025, 1536, 1537, 2000, 4096]) {
    // d distinct pages in random order, each written 1-3 times, interleaved with loads.
    const perm = Array.from({ length: pages }, (_, k) => k);
    for (let k = pages - 1; k > 0; k--) {
      const j = rng.nextInt(k + 1);
      [perm[k], perm[j]] = [perm[j]!, perm[k]!];
    }
    const b = new AccessBatch(8 * d);
    for (let k = 0; k < d; k++) {
      const reps = 1 + rng.nextInt(3);
      for (let t = 0; t < reps; t++) b.push(AccessKind.Store, perm[k]! * PAGE_SIZE + 8 * rng.nextInt(512), 8, 0);
      b.push(AccessKind.Load, perm[rng.nextInt(pages)]! * PAGE_SIZE, 4, 0);
    }
    const before = exits(dom, ExitReason.PmlFull);
    assert.equal(dom.run(b), b.length, dom.crashReason);
    assert.equal(exits(dom, ExitReason.PmlFull) - before, Math.floor((d - 1) / 512), `d = ${d}`);
    assert.equal(mode.harvest(bm).dirtyCount, d);
  }
});

test('ept-pml, every-exit: any VM exit drains that vCPU\'s log (on-demand keeps it until needed)', () => {
  for (const pmlFlush of ['on-demand', 'every-exit'] as const) {
    const { dom, mode, v } = setup('ept-pml', 2048, { opts: { pmlFlush } });
    mode.enable();
    for (let g = 0; g < 10; g++) store(dom, g); // table 0: one misconfig, then 10 logged writes
    assert.equal(v.mmu.pml.pending(), 10);
    load(dom, 1024); // table 2: a misconfig exit
    const ld = (mode as EptPmlMode).logDirty;
    if (pmlFlush === 'every-exit') {
      assert.equal(v.mmu.pml.pending(), 0);
      assert.equal(ld.trie.countDirty(), 10);
    } else {
      assert.equal(v.mmu.pml.pending(), 10);
      assert.equal(ld.trie.countDirty(), 0);
    }
  }
});

// ---------------------------------------------------------------- ARM bitmap vs list

test('arm-wp: bitmap and list give the same sets; the list is cheaper at fault time and dearer at CLEAN', () => {
  const run = (armDirtySet: 'bitmap' | 'list') => {
    const { dom, mode, bm } = setup('arm-wp', 4096, { opts: { armDirtySet } });
    mode.enable();
    const ctl0 = mode.controlCycles;
    for (let g = 0; g < 4096; g += 3) store(dom, g);
    assert.equal(exits(dom, ExitReason.Stage2Abort) > 0, true);
    const bytesBefore = mode.trackingBytes();
    const listLen = (mode as ArmWpMode).listLength;
    const r = mode.harvest(bm);
    return { sets: bits(bm), r, cycles: dom.totalStats()[STAT_CYCLES]!, ctl: mode.controlCycles - ctl0, bytesBefore, listLen };
  };
  const b = run('bitmap');
  const l = run('list');
  assert.deepEqual(l.sets, b.sets);
  assert.equal(l.r.dirtyCount, 1366);
  assert.equal(b.listLen, 0);
  assert.equal(l.listLen, 1366);
  assert.ok(l.cycles < b.cycles, `vCPU cycles list ${l.cycles} < bitmap ${b.cycles}`);
  assert.ok(l.ctl > b.ctl, `control cycles list ${l.ctl} > bitmap ${b.ctl}`);
  assert.ok(l.bytesBefore >= 1366 * 8, 'the list counts in trackingBytes');
});

// ---------------------------------------------------------------- control plane

test('CLEAN re-arms lazily: the same control cost on a 1 GiB and a 64 GiB guest with the same dirty pages', () => {
  const ctl = (memBytes: number) => {
    const dom = new Domain({ format: 'ept', memBytes, populateOrder: 9 });
    const mode = MODES['ept-wp']!.create(dom, {});
    // Populate 1 GiB's worth of superpages so the p2m has real leaves everywhere it is touched.
    dom.memory.populateRange(0, 1 * GiB / PAGE_SIZE);
    mode.enable();
    for (let g = 0; g < 64; g++) store(dom, g * 512);
    const entries0 = dom.p2m.stats.recalcEntries;
    const c0 = mode.controlCycles;
    mode.harvest(null);
    assert.equal(dom.p2m.stats.recalcEntries, entries0, 'no entry rewritten by CLEAN itself');
    return mode.controlCycles - c0;
  };
  const small = ctl(1 * GiB);
  const big = ctl(64 * GiB);
  const costs = new Domain({ format: 'ept', memBytes: MiB }).costs;
  // Only the bitmap walk grows with the guest (absent leaf slots stepped over, no copy with a
  // null bitmap): 64 GiB has 512 leaf slots, 1 GiB 8.
  assert.equal(big - small, (512 - 8) * costs.logdirtyLeafSkip);
});

test('controlCycles and trackingBytes: pause/unpause, leaves, PML pages; OFF frees everything and restores rw', () => {
  const { dom, mode, bm } = setup('ept-pml', 1024, { vcpus: 2 });
  const costs = dom.costs;
  assert.equal(mode.trackingBytes(), 0);
  mode.enable();
  assert.ok(mode.controlCycles >= costs.domainPause + costs.domainUnpause + 2 * costs.pmlVcpuToggle + costs.globalTypeChange);
  assert.equal(mode.trackingBytes(), 2 * PAGE_SIZE, 'two PML log pages, no trie yet');
  store(dom, 5);
  const c0 = mode.controlCycles;
  mode.harvest(bm);
  // pause + unpause, one PML entry flushed, one present leaf, the global re-arm (one root entry marked).
  assert.equal(mode.controlCycles - c0, costs.domainPause + costs.domainUnpause + costs.pmlFlushPerEntry +
    costs.logdirtyLeafCopy + costs.globalTypeChange + costs.recalcMarkPerEntry);
  assert.equal(mode.trackingBytes(), 2 * PAGE_SIZE + 4 * PAGE_SIZE, 'PML pages + a 4-page trie path');
  store(dom, 6);
  mode.disable();
  assert.equal(mode.enabled, false);
  assert.equal(dom.pmlEnabled, false);
  assert.equal(mode.trackingBytes(), 0);
  const r = new P2mLookup();
  for (let g = 0; g < 1024; g++) {
    dom.p2m.lookup(g, r);
    assert.equal(r.type, P2mType.RamRw);
  }
  assert.equal(dom.paused, false);
});

test('refusals are DirtyModeErrors with a clear message', () => {
  const { mode, bm } = setup('ept-wp', 64);
  assert.throws(() => mode.peek(bm), DirtyModeError);
  assert.throws(() => mode.harvest(bm), /not enabled/);
  mode.disable(); // OFF while off is accepted, as Xen does
  assert.equal(mode.enabled, false);
  mode.enable();
  assert.throws(() => mode.enable(), /EINVAL.*already enabled/);
  assert.throws(() => mode.peek(new Uint32Array(1)), /bitmap holds 32 bits/);
  const formats: Record<string, P2mFormatName> = { 'ept-wp': 'npt', 'ept-pml': 'arm', 'npt-wp': 'ept', 'arm-wp': 'ept' };
  for (const [name, wrong] of Object.entries(formats)) {
    const dom = new Domain({ format: wrong, memBytes: 64 * PAGE_SIZE });
    assert.throws(() => MODES[name as 'ept-wp']!.create(dom, {}), /needs a .* p2m/);
  }
});

test('every HAP mode reports its name and format, and is the domain\'s paging mode', () => {
  for (const name of ['ept-wp', 'ept-pml', 'npt-wp', 'arm-wp'] as const) {
    const { dom, mode } = setup(name, 64);
    const m: DirtyMode = mode;
    assert.equal(m.name, name);
    assert.equal(m.format, MODES[name]!.format);
    assert.equal(dom.pagingMode, m);
  }
});

// ---------------------------------------------------------------- NPT per-entry recalc (p2m-pt.c do_recalc)

test('npt-wp: after CLEAN every page touched takes its own #NPF (reads too); a write faults again as a log-dirty write', () => {
  const { dom, mode, bm } = setup('npt-wp', 2048);
  const hap = mode as HapLogDirtyMode;
  mode.enable();
  mode.harvest(bm);
  const npf0 = exits(dom, ExitReason.Npf);
  const f0 = { ...hap.faults };
  // Four reads in one leaf table, one in another: five #NPFs (EPT would take two misconfigs).
  for (const g of [10, 11, 12, 500, 700]) load(dom, g);
  assert.equal(exits(dom, ExitReason.Npf) - npf0, 5);
  assert.equal(hap.faults.recalcs - f0.recalcs, 5);
  assert.equal(hap.faults.logDirtyWrites - f0.logDirtyWrites, 0);
  // Reading them again: resolved, no exit.
  for (const g of [10, 11, 12, 500, 700]) load(dom, g);
  assert.equal(exits(dom, ExitReason.Npf) - npf0, 5);
  // A write to a page already recalculated: one log-dirty write fault.
  store(dom, 11);
  assert.equal(exits(dom, ExitReason.Npf) - npf0, 6);
  // A write to an untouched page: its recalc #NPF, then the log-dirty write #NPF.
  store(dom, 13);
  assert.equal(exits(dom, ExitReason.Npf) - npf0, 8);
  assert.equal(hap.faults.recalcs - f0.recalcs, 6);
  assert.equal(hap.faults.logDirtyWrites - f0.logDirtyWrites, 2);
  assert.equal(hap.faults.populates - f0.populates, 0, 'all frames were populated up front');
  assert.equal(mode.harvest(bm).dirtyCount, 2);
  assert.deepEqual(bits(bm), [11, 13]);
  // Entry by entry: 6 entries recomputed, no whole leaf table.
  assert.equal(dom.p2m.stats.recalcLeafTables, 0);
});

test('npt-wp: a marked 2 MiB leaf whose range is uniform is recomputed whole (one #NPF); after its split, each 4K sibling faults alone', () => {
  const { dom, mode, bm } = setup('npt-wp', 1024, { populateOrder: 9 });
  mode.enable();
  const npf0 = exits(dom, ExitReason.Npf);
  for (const g of [512, 600, 1000]) load(dom, g);
  assert.equal(exits(dom, ExitReason.Npf) - npf0, 1, 'do_recalc retypes the superpage as one entry');
  store(dom, 516);
  assert.equal(exits(dom, ExitReason.Npf) - npf0, 2, 'the write splits it');
  mode.harvest(bm);
  const npf1 = exits(dom, ExitReason.Npf);
  for (const g of [512, 513, 600]) load(dom, g);
  assert.equal(exits(dom, ExitReason.Npf) - npf1, 3, 'the split leaves are 4K entries: one #NPF each');
});
