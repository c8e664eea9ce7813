/**
 * kvm-bitmap against a naive model: every round's harvest equals the pages
 * written in its window (classic GET, manual-protect GET + CLEAR, and
 * initially-set, whose first harvest reports every page), on 1 and 4 vCPUs,
 * 4 KiB and 2 MiB guests; CLEAR granularity; errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Domain } from '../domain/domain.ts';
import { P2mLookup } from '../p2m/p2m.ts';
import { P2mType } from '../p2m/p2m-type.ts';
import { ORDER_2M } from '../units.ts';
import { ExitReason } from '../vm-exit.ts';
import { AccessBatch, AccessKind } from '../workload/access-batch.ts';
import type { ModeOptions } from './dirty-mode.ts';
import { DirtyModeError } from './hap-log-dirty.ts';
import { KvmBitmapMode, createKvmBitmap } from './kvm-bitmap.ts';
import { MODES } from './registry.ts';
import { runWindows } from './testing/dirty-windows.ts';

const VARIANTS: ReadonlyArray<[string, ModeOptions]> = [
  ['classic GET', {}],
  ['manual protect', { kvmManualProtect: true }],
  ['manual protect, initially set', { kvmManualProtect: true, kvmInitiallySet: true }],
];
const PAGES = 2048;

function assertRoundsExact(run: ReturnType<typeof runWindows>, initiallySet: boolean): void {
  const all = Array.from({ length: PAGES }, (_, g) => g);
  run.rounds.forEach((r, i) => {
    if (initiallySet && i === 0) {
      assert.deepEqual(r.harvested, all, 'initially-set: the first harvest reports every page');
      assert.equal(r.dirtyCount, PAGES);
      return;
    }
    assert.deepEqual(r.harvested, r.written, `round ${i}: harvested set = written set`);
    assert.equal(r.dirtyCount, r.written.length, `round ${i}: dirtyCount = distinct pages harvested`);
  });
  assert.equal(run.domain.totalExits()[ExitReason.EptMisconfig], 0, 'KVM re-protects eagerly: no misconfig exits');
}

test('kvm-bitmap is registered on ept', () => {
  assert.equal(MODES['kvm-bitmap']?.format, 'ept');
  assert.equal(MODES['kvm-bitmap']?.create, createKvmBitmap);
});

for (const [label, opts] of VARIANTS) {
  for (const vcpus of [1, 4]) {
    for (const [workload, seed] of [['uniform', 1], ['hotspot', 2], ['read-mostly', 3], ['sequential', 4]] as const) {
      test(`kvm-bitmap ${label}, ${vcpus} vCPU(s), ${workload}: each harvest = pages written in its window`, () => {
        const run = runWindows({
          create: createKvmBitmap, modeOptions: opts, vcpus, workload, seed: seed + 10 * vcpus,
          pageCount: PAGES, records: 8000, windowRecords: 2000,
        });
        assert.equal(run.rounds.length, 4);
        assertRoundsExact(run, opts.kvmInitiallySet === true);
        assert.equal((run.mode as KvmBitmapMode).reportsAllOnFirstHarvest, opts.kvmInitiallySet === true);
      });
    }
  }

  test(`kvm-bitmap ${label}: 2 MiB guest populated up front, superpages split eagerly, nothing lost`, () => {
    const run = runWindows({
      create: createKvmBitmap, modeOptions: opts, vcpus: 4, workload: 'uniform', seed: 7,
      pageCount: PAGES, records: 6000, windowRecords: 1500, populate: 'up-front', populateOrder: ORDER_2M,
    });
    assertRoundsExact(run, opts.kvmInitiallySet === true);
    // Every 2 MiB block is split: at enable, or (initially set) at the first CLEAR over it.
    assert.equal((run.mode as KvmBitmapMode).mmuStats.superpageSplits, PAGES / 512);
  });

  test(`kvm-bitmap ${label}: 2 MiB guest populated on demand (protected superpage split on first write)`, () => {
    const run = runWindows({
      create: createKvmBitmap, modeOptions: opts, vcpus: 2, workload: 'hotspot', seed: 8,
      pageCount: PAGES, records: 6000, windowRecords: 1500, populateOrder: ORDER_2M,
    });
    assertRoundsExact(run, opts.kvmInitiallySet === true);
  });
}

test('kvm-bitmap classic: GET re-protects one 64-page word at a time, read-and-reset', () => {
  const dom = new Domain({ format: 'ept', memBytes: 1024 * 4096, populate: 'up-front' });
  const mode = createKvmBitmap(dom, {}) as KvmBitmapMode;
  mode.enable();
  const calls: number[] = [];
  const orig = mode.protectMasked.bind(mode);
  mode.protectMasked = (slot, offset, lo, hi) => {
    calls.push(offset);
    orig(slot, offset, lo, hi);
  };
  const pages = [3, 5, 63, 64, 200, 1023];
  runStores(dom, pages);
  assert.equal(mode.peek(null).dirtyCount, pages.length, 'peek does not reset');
  assert.equal(mode.harvest(null).dirtyCount, pages.length);
  assert.deepEqual(calls, [0, 64, 192, 960], 'one protectMasked per non-zero 64-bit word');
  assert.equal(mode.kvmStats.clearIoctls, 0);
  assert.equal(mode.harvest(null).dirtyCount, 0, 'GET reset the log');
  const r = new P2mLookup();
  for (const g of pages) {
    dom.p2m.lookup(g, r);
    assert.equal(r.type, P2mType.RamLogdirty, `gfn ${g} write-protected again`);
  }
});

test('kvm-bitmap manual protect: GET copies only; CLEAR in 64-page chunks re-protects exactly the harvested pages', () => {
  for (const chunk of [64, 128]) {
    const dom = new Domain({ format: 'ept', memBytes: 1000 * 4096, populate: 'up-front' }); // 1000: a partial last chunk
    const mode = createKvmBitmap(dom, { kvmManualProtect: true, kvmClearChunkPages: chunk }) as KvmBitmapMode;
    mode.enable();
    const offsets: number[] = [];
    const orig = mode.protectMasked.bind(mode);
    mode.protectMasked = (slot, offset, lo, hi) => {
      offsets.push(offset);
      orig(slot, offset, lo, hi);
    };
    const pages = [0, 1, 63, 64, 127, 130, 500, 999];
    runStores(dom, pages);
    assert.equal(mode.peek(null).dirtyCount, pages.length);
    assert.equal(mode.peek(null).dirtyCount, pages.length, 'GET in manual mode does not clear');
    const bm = new Uint32Array(32);
    assert.equal(mode.harvest(bm).dirtyCount, pages.length);
    assert.equal(mode.kvmStats.clearIoctls, new Set(pages.map((p) => Math.floor(p / chunk))).size, `one CLEAR per ${chunk}-page chunk with a dirty page`);
    assert.equal(mode.kvmStats.pagesCleared, pages.length);
    assert.ok(offsets.every((o) => o % 64 === 0), 're-protection by 64-page aligned masks');
    assert.deepEqual(offsets, [...new Set(pages.map((p) => p - (p % 64)))]);
    const r = new P2mLookup();
    for (let g = 0; g < 1000; g++) {
      dom.p2m.lookup(g, r);
      assert.equal(r.type, P2mType.RamLogdirty, `gfn ${g} write-protected`);
    }
    assert.equal(mode.harvest(null).dirtyCount, 0);
    assert.equal(mode.kvmStats.clearIoctls, new Set(pages.map((p) => Math.floor(p / chunk))).size, 'no CLEAR for clean chunks');
  }
});

test('kvm-bitmap initially set: no write protection until the first CLEAR; then writes fault and are logged', () => {
  const dom = new Domain({ format: 'ept', memBytes: 512 * 4096, vcpus: 2, populate: 'up-front', quantumRecords: 1 });
  const mode = createKvmBitmap(dom, { kvmManualProtect: true, kvmInitiallySet: true }) as KvmBitmapMode;
  mode.enable();
  runStores(dom, [1, 2, 3, 300]);
  assert.equal(dom.totalExits()[ExitReason.EptViolation], 0, 'nothing is write-protected before the first CLEAR');
  const bm = new Uint32Array(16);
  assert.equal(mode.harvest(bm).dirtyCount, 512, 'the first GET returns every page');
  assert.ok(bm.every((w) => w === 0xffffffff));
  assert.equal(mode.kvmStats.clearIoctls, 512 / 64);
  runStores(dom, [7, 7, 8, 400]);
  assert.equal(dom.totalExits()[ExitReason.EptViolation], 3, 'one write fault per page after the CLEAR');
  bm.fill(0);
  assert.equal(mode.harvest(bm).dirtyCount, 3);
  assert.deepEqual([bm[0], bm[12]], [(1 << 7) | (1 << 8), 1 << (400 - 384)]);
});

test('kvm-bitmap initially set on a 64 GiB sparse guest: the first CLEAR skips unpopulated memory', () => {
  const pages = 16 * 2 ** 20;
  const dom = new Domain({ format: 'ept', memBytes: pages * 4096, vcpus: 2 });
  const mode = createKvmBitmap(dom, { kvmManualProtect: true, kvmInitiallySet: true }) as KvmBitmapMode;
  mode.enable();
  const touched = [1, 5000, 3 * 2 ** 20, pages - 1];
  runStores(dom, touched);
  assert.equal(mode.harvest(null).dirtyCount, pages);
  assert.equal(mode.kvmStats.clearIoctls, pages / 64);
  assert.equal(mode.mmuStats.pagesProtected, touched.length, 'only populated pages had SPTEs to protect');
  runStores(dom, [5000, 7, pages - 1]);
  assert.equal(mode.harvest(null).dirtyCount, 3);
  assert.equal(mode.trackingBytes(), 2 * pages / 8);
});

test('kvm-bitmap: tracking bytes are twice the slot bitmap while logging; disable leaves the guest running', () => {
  const dom = new Domain({ format: 'ept', memBytes: 1000 * 4096, populate: 'up-front' });
  const mode = createKvmBitmap(dom, {}) as KvmBitmapMode;
  assert.equal(mode.trackingBytes(), 0);
  mode.enable();
  assert.equal(mode.trackingBytes(), 2 * Math.ceil(1000 / 64) * 8);
  runStores(dom, [10, 20]);
  mode.disable();
  assert.equal(mode.trackingBytes(), 0);
  assert.equal(mode.enabled, false);
  runStores(dom, [30, 40, 30]); // protected pages go writable, unlogged
  assert.equal(dom.crashed, false);
  assert.throws(() => mode.harvest(null), DirtyModeError);
  mode.enable(); // again: the slot is write-protected anew
  runStores(dom, [30, 50]);
  assert.equal(mode.harvest(null).dirtyCount, 2);
});

test('kvm-bitmap refuses bad set-ups with a clear error', () => {
  const ept = new Domain({ format: 'ept', memBytes: 64 * 4096 });
  assert.throws(() => createKvmBitmap(ept, { kvmInitiallySet: true }), /needs kvmManualProtect/);
  assert.throws(() => createKvmBitmap(ept, { kvmManualProtect: true, kvmClearChunkPages: 100 }), /multiple of 64/);
  assert.throws(() => createKvmBitmap(new Domain({ format: 'npt', memBytes: 64 * 4096 }), {}), /needs an ept p2m/);
  const mode = createKvmBitmap(ept, {});
  assert.throws(() => mode.harvest(null), /not enabled/);
  assert.throws(() => mode.disable(), DirtyModeError);
  mode.enable();
  assert.throws(() => mode.enable(), /already enabled/);
  assert.throws(() => mode.harvest(new Uint32Array(1)), /bitmap holds 32 bits/);
});

/** Runs one store to each page, in order, on the domain's vCPUs. */
function runStores(dom: Domain, pages: readonly number[]): void {
  const b = new AccessBatch(pages.length);
  pages.forEach((p, k) => b.push(AccessKind.Store, p * 4096 + 8, 8, k + 1));
  assert.equal(dom.run(b), pages.length);
  assert.equal(dom.crashed, false, dom.crashReason);
}
