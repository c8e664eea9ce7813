/**
 * Shadow mode: Xen acceptance behaviours 19 (log-dirty) and 20 (OOS eviction),
 * the two pools under pressure, paged guests against ept-wp, refusals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Domain } from '../domain/domain.ts';
import { PTE_P, PTE_RW, gvaIndex, pteGfn } from '../formats/x86-pte.ts';
import { STAT_CYCLES } from '../mmu/mmu-stats.ts';
import { createGuest } from '../runner/guest.ts';
import { SHADOW_OOS_PAGES } from '../shadow/oos.ts';
import { MiB } from '../units.ts';
import { ExitReason } from '../vm-exit.ts';
import { AccessBatch, AccessKind } from '../workload/access-batch.ts';
import type { ModeOptions } from './dirty-mode.ts';
import { DirtyModeError } from './hap-log-dirty.ts';
import { ShadowMode, createShadow } from './shadow.ts';

function bits(bm: Uint32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < bm.length * 32; i++) if ((bm[i >>> 5]! >>> (i & 31)) & 1) out.push(i);
  return out;
}

function identityGuest(opts: ModeOptions = {}, vcpus = 1): { dom: Domain; mode: ShadowMode } {
  const dom = new Domain({ format: 'npt', memBytes: 1024 * MiB, vcpus });
  const mode = createShadow(dom, opts);
  return { dom, mode };
}

test('behaviour 19: read of a clean page maps it read-only; the write faults, marks, counts; CLEAN drops every shadow', () => {
  const { dom, mode } = identityGuest();
  const v = dom.vcpus[0]!;
  mode.enable();
  const gfn = 0x123;
  assert.equal(v.load(gfn * 4096, 4), 0);
  const l1 = mode.shadow.shadowOf(1, Math.floor(gfn / 512))!;
  const [lo] = mode.shadow.entry(l1, gfn & 511);
  assert.equal(lo & PTE_P, PTE_P, 'mapped');
  assert.equal(lo & PTE_RW, 0, 'read-only: the page is clean');
  const pf0 = v.exits[ExitReason.ShadowPf]!;
  assert.equal(v.store(gfn * 4096, 4, 7), 0);
  assert.equal(v.exits[ExitReason.ShadowPf]! - pf0, 1, 'the write faulted once');
  assert.equal(mode.shadow.entry(l1, gfn & 511)[0] & PTE_RW, PTE_RW, 'writable after the fault');
  v.store(gfn * 4096 + 8, 4, 8);
  assert.equal(v.exits[ExitReason.ShadowPf]! - pf0, 1, 'no second fault on a dirty page');
  const bm = new Uint32Array(1024 * MiB / 4096 / 32);
  const r = mode.harvest(bm);
  assert.deepEqual(bits(bm), [gfn]);
  assert.equal(r.dirtyCount, 1);
  assert.equal(r.faultCount, 2, 'the read fault and the write fault were fixed');
  assert.equal(mode.shadow.liveShadows, 1, 'only the top-level shadow is left');
  assert.equal(l1.live, false);
  const r2 = mode.harvest(bm);
  assert.deepEqual([r2.dirtyCount, r2.faultCount], [0, 0]);
  // The next write faults again (mapped read-only afresh, then written).
  const pf1 = v.exits[ExitReason.ShadowPf]!;
  v.store(gfn * 4096, 4, 9);
  assert.ok(v.exits[ExitReason.ShadowPf]! > pf1);
  assert.equal(mode.harvest(bm).dirtyCount, 1);
  mode.disable();
});

/** gfn of the guest L1 table mapping gva (software walk of the guest's tables). */
function l1GfnOf(dom: Domain, cr3Gfn: number, gva: number): number {
  let table = cr3Gfn;
  for (let level = 4; level >= 2; level--) {
    const gpa = table * 4096 + gvaIndex(gva, level) * 8;
    table = pteGfn(dom.memory.readU32(gpa), dom.memory.readU32(gpa + 4));
  }
  return table;
}

test('behaviour 20: a 4th L1 unsynced with the hash slots full resyncs an OOS page from its snapshot diff', () => {
  const g = createGuest({ memBytes: 64 * MiB, vcpus: 1, mode: 'shadow', addressing: 'paged', pageSize: '4k' });
  const mode = g.mode as ShadowMode;
  const sh = mode.shadow;
  const v = g.domain.vcpus[0]!;
  const os = g.os!;
  const region = (k: number): number => k * 2 * MiB;
  // Each region: the first touch maps it (and shadows its new L1), the second touch writes a
  // PTE into that shadowed, in-sync L1: the write faults and unsyncs it. Go on until the vCPU's
  // three slots are full (a collision on the way may already crush one: mfn % 3 homes).
  const slots = sh.oos[0]!;
  let k = 0;
  for (; [...slots.gfn].some((g) => g < 0); k++) {
    v.store(region(k), 4, 1);
    const pt = l1GfnOf(g.domain, os.cr3Gfn, region(k));
    assert.ok(sh.isPageTable(pt));
    assert.equal(sh.isOutOfSync(pt), false);
    v.store(region(k) + 4096, 4, 2);
    assert.equal(sh.isOutOfSync(pt), true, `L1 ${pt} out of sync after a guest write`);
  }
  const pts = [...slots.gfn];
  const regionOf = new Map<number, number>();
  for (let j = 0; j < k; j++) regionOf.set(l1GfnOf(g.domain, os.cr3Gfn, region(j)), j);
  const evictions0 = sh.stats.oosEvictions;
  const resyncs0 = sh.stats.resyncs;
  // While OOS, the guest unmaps the first page of each OOS region: no trap, the shadow is stale.
  const emulated0 = sh.stats.emulated;
  for (const p of pts) assert.equal(os.unmap(region(regionOf.get(p)!)), true);
  assert.equal(sh.stats.emulated, emulated0, 'writes to OOS pages do not trap');
  for (const p of pts) assert.equal(sh.entry(sh.shadowOf(1, p)!, 0)[0] & PTE_P, PTE_P, 'stale while OOS');
  // A 4th L1: its unsync crushes one of the three.
  v.store(region(k), 4, 3);
  const pt3 = l1GfnOf(g.domain, os.cr3Gfn, region(k));
  v.store(region(k) + 4096, 4, 4);
  assert.equal(sh.isOutOfSync(pt3), true);
  assert.equal(sh.stats.oosEvictions - evictions0, 1);
  assert.equal(sh.stats.resyncs - resyncs0, 1);
  const resynced = pts.filter((p) => !sh.isOutOfSync(p));
  assert.equal(resynced.length, 1, 'exactly one OOS page was resynced');
  const victim = resynced[0]!;
  assert.equal(sh.entry(sh.shadowOf(1, victim)!, 0)[0] & PTE_P, 0, 'the unmapped entry left the shadow (guest ≠ snapshot)');
  assert.equal(sh.entry(sh.shadowOf(1, victim)!, 1)[0] & PTE_P, PTE_P, 'unchanged entries kept');
  assert.equal(sh.writableMappings(victim), 0, 'write-protected again');
  for (const p of pts) if (p !== victim) assert.equal(sh.entry(sh.shadowOf(1, p)!, 0)[0] & PTE_P, PTE_P, 'others stay OOS, stale');
  // A guest write to the resynced page traps again (emulated, shadows updated at once).
  const em = sh.stats.emulated;
  v.store(region(regionOf.get(victim)!), 4, 5); // remaps the unmapped page: writes into the now in-sync L1
  assert.ok(sh.stats.emulated > em || sh.isOutOfSync(victim), 'the write trapped (emulated or unsynced again)');
  // CR3 reload resyncs every OOS page of this vCPU.
  v.mmu.setCr3(os.cr3);
  for (const p of [...pts, pt3]) assert.equal(sh.isOutOfSync(p), false);
  assert.equal(g.domain.crashed, false, g.domain.crashReason);
});

function strided(n: number, strideBytes: number): AccessBatch {
  const b = new AccessBatch(2 * n);
  for (let k = 0; k < n; k++) b.push(k % 2 === 0 ? AccessKind.Store : AccessKind.Load, k * strideBytes + 64, 4, k);
  for (let k = 0; k < n; k++) b.push(AccessKind.Store, k * strideBytes + 128, 4, n + k);
  return b;
}

test('pools under pressure: Xen unhooks everything, the preallocated pool evicts one shadow at a time; same dirty set', () => {
  const b = strided(300, 2 * MiB); // 300 L1 shadows wanted, 140-page pools
  const sets: number[][] = [];
  const perFault: number[] = [];
  for (const shadowPool of ['xen', 'prealloc'] as const) {
    const { dom, mode } = identityGuest({ shadowPool, shadowPoolPages: 140 });
    mode.enable();
    assert.equal(dom.run(b), b.length, dom.crashReason);
    const bm = new Uint32Array(1024 * MiB / 4096 / 32);
    const r = mode.harvest(bm);
    sets.push(bits(bm));
    assert.equal(r.dirtyCount, 300);
    const s = mode.shadow.stats;
    assert.ok(s.peakPages <= mode.shadow.poolPages);
    if (shadowPool === 'xen') {
      assert.ok(s.unhookAlls > 0, 'Xen stage two ran');
      assert.equal(s.evictions, 0);
    } else {
      assert.ok(s.evictions > 0);
      assert.equal(s.unhookAlls, 0);
    }
    perFault.push(dom.vcpus[0]!.stats[STAT_CYCLES]! / dom.vcpus[0]!.exits[ExitReason.ShadowPf]!);
  }
  assert.deepEqual(sets[0], sets[1]);
  assert.ok(perFault.every((c) => c > 0));
});

test('pool sizes: Xen never below sh_min_allocation; the preallocated pool takes what it is given and still runs (one path at a time)', () => {
  const { mode } = identityGuest({ shadowPool: 'xen', shadowPoolPages: 8 });
  assert.ok(mode.shadow.poolPages >= 128 + 7);
  const { dom, mode: m2 } = identityGuest({ shadowPool: 'prealloc', shadowPoolPages: 4 });
  assert.equal(m2.shadow.poolPages, 5);
  dom.run(strided(4, 1024 * MiB / 4));
  assert.equal(dom.crashed, false, dom.crashReason);
});

test('paged guests: the same dirty sets as ept-wp, 1 and 4 vCPUs, both pools', () => {
  const n = 6000;
  const b = new AccessBatch(n);
  let x = 12345;
  for (let k = 0; k < n; k++) {
    x = (x * 1103515245 + 12345) >>> 0;
    const page = (x >>> 8) % 3000;
    b.push((x & 3) === 0 ? AccessKind.Store : (x & 3) === 1 ? AccessKind.Modify : AccessKind.Load, page * 4096 + (x & 4088), 8, k);
  }
  for (const vcpus of [1, 4]) {
    const runs: number[][][] = [];
    for (const [mode, opts] of [['ept-wp', {}], ['shadow', { shadowPool: 'xen' }], ['shadow', { shadowPool: 'prealloc' }]] as const) {
      const g = createGuest({ memBytes: 64 * MiB, vcpus, mode, addressing: 'paged', pageSize: '4k', modeOptions: opts });
      g.mode!.enable();
      const bm = new Uint32Array(64 * MiB / 4096 / 32);
      const sets: number[][] = [];
      for (let c = 0; c < n; c += 1000) {
        assert.equal(g.domain.run(b, c, c + 1000), c + 1000, g.domain.crashReason);
        g.mode!.harvest(bm);
        sets.push(bits(bm));
      }
      runs.push(sets);
    }
    assert.deepEqual(runs[1], runs[0], `shadow(xen) vs ept-wp, ${vcpus} vCPUs`);
    assert.deepEqual(runs[2], runs[0], `shadow(prealloc) vs ept-wp, ${vcpus} vCPUs`);
  }
});

test('refusals: a non-npt p2m; PEEK before ENABLE', () => {
  assert.throws(() => new ShadowMode(new Domain({ format: 'ept', memBytes: 4 * MiB })), DirtyModeError);
  const { mode } = identityGuest();
  assert.throws(() => mode.peek(null), /ENABLE it first/);
});
