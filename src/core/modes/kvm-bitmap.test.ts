/**
 * kvm-bitmap against a naive model: every round's harvest equals the pages
 * written in its window (classic GET, manual-protect GET + CLEAR, and
 * initially-set, whose first harvest reports every page), with PML and
 * without, on 1 and 4 vCPUs, 4 KiB and 2 MiB guests; CLEAR granularity
 * (QEMU's chunks, KVM's 64-page masks), lazy CLEAR before a send; errors.
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
import { bitmapPages, runWindows } from './testing/dirty-windows.ts';

const VARIANTS: ReadonlyArray<[string, ModeOptions]> = [false, true].flatMap((kvmPml): Array<[string, ModeOptions]> => {
  const pml = kvmPml ? 'PML' : 'no PML';
  return [
    [`classic GET, ${pml}`, { kvmPml }],
    [`manual protect, ${pml}`, { kvmPml, kvmManualProtect: true }],
    [`manual protect, 64-page CLEARs, ${pml}`, { kvmPml, kvmManualProtect: true, kvmClearChunkPages: 64 }],
    [`manual protect, initially set, ${pml}`, { kvmPml, kvmManualProtect: true, kvmInitiallySet: true }],
  ];
});
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
        const mode = run.mode as KvmBitmapMode;
        assert.equal(mode.reportsAllOnFirstHarvest, opts.kvmInitiallySet === true);
        // The pages are populated on demand: with PML a write faults only to populate its frame.
        if (opts.kvmPml) assert.ok(mode.mmuStats.pmlEntriesFlushed > 0, 'PML logged the writes to populated pages');
        else assert.equal(mode.mmuStats.pmlEntriesFlushed, 0);
        // Each first write to a page in a window is logged once: by a write fault or by PML.
        if (!opts.kvmInitiallySet) {
          const firstWrites = run.rounds.reduce((n, r) => n + r.written.length, 0);
          assert.equal(mode.mmuStats.writeFaults + mode.mmuStats.pmlEntriesFlushed, firstWrites);
        }
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

test('kvm-bitmap manual protect, QEMU chunks: at harvest one CLEAR per chunk holding a GET bit, in order, the last one clipped to the slot', () => {
  for (const kvmPml of [false, true]) {
    const dom = new Domain({ format: 'ept', memBytes: 1000 * 4096, populate: 'up-front' });
    const mode = createKvmBitmap(dom, { kvmPml, kvmManualProtect: true, kvmClearChunkPages: 256 }) as KvmBitmapMode;
    mode.enable();
    const clears: Array<[number, number, number[]]> = [];
    const orig = mode.log.clearDirtyLog.bind(mode.log);
    mode.log.clearDirtyLog = (first, num, mask) => {
      const bits: number[] = [];
      const m = mask as Uint32Array;
      for (let i = 0; i < num; i++) if (((m[i >>> 5]! >>> (i & 31)) & 1) === 1) bits.push(first + i);
      clears.push([first, num, bits]);
      return orig(first, num, mask);
    };
    runStores(dom, [999, 3, 600, 255, 3]);
    assert.equal(mode.harvest(null).dirtyCount, 4);
    // Chunks [0,256) and [512,768) and [768,1000) hold bits; [256,512) has none and gets no ioctl.
    assert.deepEqual(clears, [[0, 256, [3, 255]], [512, 256, [600]], [768, 232, [999]]], `kvmPml=${kvmPml}`);
    assert.equal(mode.kvmStats.clearIoctls, 3);
    assert.equal(mode.kvmStats.pagesCleared, 4);
    const r = new P2mLookup();
    for (const g of [3, 255, 600, 999]) {
      dom.p2m.lookup(g, r);
      assert.equal(r.type, P2mType.RamLogdirty, `gfn ${g} re-armed (kvmPml=${kvmPml})`);
    }
  }
});

test('kvm-bitmap manual protect with a sender: GET only at harvest; a chunk is cleared just before its first page is sent', () => {
  const dom = new Domain({ format: 'ept', memBytes: 1024 * 4096, populate: 'up-front' });
  const mode = createKvmBitmap(dom, { kvmPml: false, kvmManualProtect: true, kvmClearChunkPages: 256 }) as KvmBitmapMode;
  mode.enable();
  mode.deferClearsToSender();
  runStores(dom, [10, 300, 700]);
  const bm = new Uint32Array(32);
  assert.equal(mode.harvest(bm).dirtyCount, 3);
  assert.equal(mode.kvmStats.clearIoctls, 0, 'no CLEAR at harvest');
  const r = new P2mLookup();
  dom.p2m.lookup(10, r);
  assert.equal(r.type, P2mType.RamRw, 'not re-protected before its chunk is cleared');
  // Written again between GET and the chunk's CLEAR: not logged again (its send, after the CLEAR, carries it).
  runStores(dom, [10, 20]);
  assert.equal(mode.mmuStats.writeFaults, 4, 'gfn 10 still writable; gfn 20 faults');
  mode.beforeSend(10);
  assert.equal(mode.kvmStats.clearIoctls, 1);
  assert.equal(mode.kvmStats.pagesCleared, 1, 'the mask is what GET returned: gfn 10, not gfn 20');
  dom.p2m.lookup(10, r);
  assert.equal(r.type, P2mType.RamLogdirty);
  mode.beforeSend(11);
  mode.beforeSend(10);
  assert.equal(mode.kvmStats.clearIoctls, 1, 'a chunk is cleared once per GET');
  mode.beforeSend(700);
  assert.equal(mode.kvmStats.clearIoctls, 2);
  // Chunk 1 (gfn 300) was never sent: its bit stays in KVM's log, and the next GET returns it again.
  runStores(dom, [10]);
  bm.fill(0);
  assert.equal(mode.harvest(bm).dirtyCount, 3);
  assert.deepEqual(bitmapPages(bm, 1024), [10, 20, 300]);
  assert.equal(mode.kvmStats.clearIoctls, 2);
});

test('kvm-bitmap initially set, no PML: no write protection until the first CLEAR; then writes fault and are logged', () => {
  const dom = new Domain({ format: 'ept', memBytes: 512 * 4096, vcpus: 2, populate: 'up-front', quantumRecords: 1 });
  const mode = createKvmBitmap(dom, { kvmPml: false, kvmManualProtect: true, kvmInitiallySet: true, kvmClearChunkPages: 64 }) as KvmBitmapMode;
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

test('kvm-bitmap initially set, PML: the first CLEAR clears D bits; later first writes are logged by PML with no exit', () => {
  const dom = new Domain({ format: 'ept', memBytes: 512 * 4096, vcpus: 2, populate: 'up-front', quantumRecords: 1 });
  const mode = createKvmBitmap(dom, { kvmManualProtect: true, kvmInitiallySet: true }) as KvmBitmapMode;
  mode.enable();
  runStores(dom, [1, 2, 3, 300]);
  assert.equal(mode.mmuStats.pmlEntriesFlushed, 0, 'every SPTE still has D set: nothing to log');
  assert.equal(mode.harvest(null).dirtyCount, 512);
  assert.equal(mode.kvmStats.clearIoctls, 1, 'one QEMU chunk (2^18 pages) covers this 512-page slot');
  runStores(dom, [7, 7, 8, 400]);
  assert.equal(dom.totalExits()[ExitReason.EptViolation], 0, 'no write faults with PML');
  const bm = new Uint32Array(16);
  assert.equal(mode.harvest(bm).dirtyCount, 3);
  assert.deepEqual([bm[0], bm[12]], [(1 << 7) | (1 << 8), 1 << (400 - 384)]);
  assert.equal(mode.mmuStats.pmlEntriesFlushed, 3, 'one PML entry per first write, flushed at the GET\'s kick');
  assert.equal(mode.mmuStats.kicks, 2 * 2 * 2, 'GET and CLEAR each kick both vCPUs, in two harvests');
});

test('kvm-bitmap initially set on a 64 GiB sparse guest: the first CLEAR skips unpopulated memory', () => {
  const pages = 16 * 2 ** 20;
  const dom = new Domain({ format: 'ept', memBytes: pages * 4096, vcpus: 2 });
  const mode = createKvmBitmap(dom, { kvmManualProtect: true, kvmInitiallySet: true }) as KvmBitmapMode;
  mode.enable();
  const touched = [1, 5000, 3 * 2 ** 20, pages - 1];
  runStores(dom, touched);
  assert.equal(mode.harvest(null).dirtyCount, pages);
  assert.equal(mode.kvmStats.clearIoctls, pages / 2 ** 18, 'one CLEAR per QEMU chunk of 2^18 pages');
  assert.equal(mode.mmuStats.pagesProtected, touched.length, 'only populated pages had SPTEs to protect');
  runStores(dom, [5000, 7, pages - 1]);
  assert.equal(mode.harvest(null).dirtyCount, 3);
  assert.equal(mode.trackingBytes(), 2 * pages / 8 + 2 * 4096, 'two slot bitmaps and two vCPUs\' PML pages');
});

test('kvm-bitmap: tracking bytes are twice the slot bitmap while logging; disable leaves the guest running', () => {
  const dom = new Domain({ format: 'ept', memBytes: 1000 * 4096, populate: 'up-front' });
  const mode = createKvmBitmap(dom, {}) as KvmBitmapMode;
  const pmlPage = 4096; // one vCPU: one PML page, allocated with the vCPU
  assert.equal(mode.trackingBytes(), pmlPage);
  mode.enable();
  assert.equal(mode.trackingBytes(), 2 * Math.ceil(1000 / 64) * 8 + pmlPage);
  runStores(dom, [10, 20]);
  mode.disable();
  assert.equal(mode.trackingBytes(), pmlPage);
  assert.equal(dom.pmlEnabled, false, 'PML goes off with logging');
  assert.equal(createKvmBitmap(new Domain({ format: 'ept', memBytes: 64 * 4096 }), { kvmPml: false }).trackingBytes(), 0);
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
  for (const bad of [100, 32, 192, 2 ** 32]) {
    assert.throws(() => createKvmBitmap(ept, { kvmManualProtect: true, kvmClearChunkPages: bad }), /power of two from 2\^6 to 2\^31/);
  }
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
