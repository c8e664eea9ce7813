/**
 * kvm-ring against a naive model: every round's harvest equals the pages
 * written in its window, with PML and without, on 1 and 4 vCPUs, with the
 * default ring and with KVM's smallest (256 entries; 1024 with PML, which
 * reserves 512 more), where dirty_ring_full exits happen and lose nothing;
 * duplicates across vCPUs count once; peek; errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Domain } from '../domain/domain.ts';
import { KVM_DIRTY_RING_RSVD_ENTRIES, KVM_PML_DIRTY_LOG_SIZE } from '../logdirty/kvm-dirty-ring.ts';
import { ORDER_2M } from '../units.ts';
import { ExitReason } from '../vm-exit.ts';
import { AccessBatch, AccessKind } from '../workload/access-batch.ts';
import { DirtyModeError } from './hap-log-dirty.ts';
import { KVM_RING_DEFAULT_ENTRIES, KvmRingMode, createKvmRing } from './kvm-ring.ts';
import { MODES } from './registry.ts';
import { bitmapPages, runWindows } from './testing/dirty-windows.ts';

const PAGES = 2048;

function assertRoundsExact(run: ReturnType<typeof runWindows>): void {
  run.rounds.forEach((r, i) => {
    assert.deepEqual(r.harvested, r.written, `round ${i}: harvested set = written set`);
    assert.equal(r.dirtyCount, r.written.length, `round ${i}: dirtyCount = distinct pages`);
  });
  const mode = run.mode as KvmRingMode;
  assert.equal(mode.droppedPushes, 0, 'no push hit a hard-full ring');
  assert.equal(run.domain.totalExits()[ExitReason.DirtyRingFull], mode.kvmStats.ringFullExits);
  assert.equal(run.domain.totalExits()[ExitReason.EptMisconfig], 0);
  assert.equal(mode.ringsUsed, 0, 'every ring reset after the harvest');
}

test('kvm-ring is registered on ept', () => {
  assert.equal(MODES['kvm-ring']?.format, 'ept');
  assert.equal(MODES['kvm-ring']?.create, createKvmRing);
});

for (const kvmPml of [false, true]) {
  const smallest = kvmPml ? 1024 : 256;
  for (const ringEntries of [undefined, smallest]) {
    for (const vcpus of [1, 4]) {
      for (const [workload, seed] of [['uniform', 1], ['hotspot', 2], ['read-mostly', 3], ['zipf', 4]] as const) {
        test(`kvm-ring ${ringEntries ?? 'default'} entries, ${kvmPml ? 'PML' : 'no PML'}, ${vcpus} vCPU(s), ${workload}: each harvest = pages written in its window`, () => {
          const run = runWindows({
            create: createKvmRing, modeOptions: ringEntries === undefined ? { kvmPml } : { kvmPml, ringEntries }, vcpus, workload,
            seed: seed + 10 * vcpus, pageCount: PAGES, records: 8000, windowRecords: 2000,
          });
          assert.equal(run.rounds.length, 4);
          assertRoundsExact(run);
          const mode = run.mode as KvmRingMode;
          assert.equal(mode.ringEntries, ringEntries ?? KVM_RING_DEFAULT_ENTRIES);
          // uniform: a window's first writes outnumber a 256-entry ring's soft limit (192) on every vCPU,
          // and with PML one vCPU's outnumber a 1024-entry ring's (448).
          if (ringEntries === smallest && workload === 'uniform' && (!kvmPml || vcpus === 1)) {
            assert.ok(mode.kvmStats.ringFullExits > 0, 'small ring: dirty_ring_full exits');
          }
          if (ringEntries === undefined) assert.equal(mode.kvmStats.ringFullExits, 0, 'a 4096-entry ring never fills here');
          assert.equal(mode.kvmStats.entriesReaped, mode.mmuStats.writeFaults + mode.mmuStats.pmlEntriesFlushed, 'every push came from a fault or a PML flush');
          // One entry per first write in a window; a ring-full reset re-arms pages mid-window, and those
          // written again (the faulting write re-executed, at least) are pushed once more.
          const firstWrites = run.rounds.reduce((n, r) => n + r.written.length, 0);
          if (mode.kvmStats.ringFullExits === 0) assert.equal(mode.kvmStats.entriesReaped, firstWrites);
          else assert.ok(mode.kvmStats.entriesReaped > firstWrites);
          if (!kvmPml) assert.equal(mode.mmuStats.pmlEntriesFlushed, 0);
          else assert.ok(mode.mmuStats.pmlEntriesFlushed > 0);
        });
      }
    }
  }
}

for (const [kvmPml, ringEntries, vcpus] of [[false, 256, 4], [true, 1024, 1]] as const) {
  test(`kvm-ring ${ringEntries} entries, ${kvmPml ? 'PML' : 'no PML'}, on a 2 MiB guest: eager split at enable, ring-full exits, nothing lost`, () => {
    const run = runWindows({
      create: createKvmRing, modeOptions: { kvmPml, ringEntries }, vcpus, workload: 'uniform', seed: 9,
      pageCount: PAGES, records: 6000, windowRecords: 3000, populate: 'up-front', populateOrder: ORDER_2M,
    });
    assertRoundsExact(run);
    const mode = run.mode as KvmRingMode;
    assert.equal(mode.mmuStats.superpageSplits, PAGES / 512);
    assert.ok(mode.kvmStats.ringFullExits > 0);
    // Populated up front and split at enable: with PML no write faults at all.
    if (kvmPml) assert.equal(run.domain.totalExits()[ExitReason.EptViolation], 0);
  });
}

test('kvm-ring, no PML: a soft-full ring exits before re-entry; the VMM reaps and resets every ring; the write is logged again', () => {
  const dom = new Domain({ format: 'ept', memBytes: 1024 * 4096, vcpus: 1, populate: 'up-front' });
  const mode = createKvmRing(dom, { kvmPml: false, ringEntries: 256 }) as KvmRingMode;
  mode.enable();
  const soft = 256 - KVM_DIRTY_RING_RSVD_ENTRIES;
  const pages = Array.from({ length: soft + 10 }, (_, g) => g);
  runStores(dom, pages.slice(0, soft - 1));
  assert.equal(dom.vcpus[0]!.exits[ExitReason.DirtyRingFull], 0);
  assert.equal(mode.ringsUsed, soft - 1);
  runStores(dom, pages.slice(soft - 1, soft)); // the push that reaches the soft limit
  assert.equal(dom.vcpus[0]!.exits[ExitReason.DirtyRingFull], 1);
  assert.equal(mode.kvmStats.entriesReset, soft);
  // The faulting write re-executed on its re-protected page: logged once more.
  assert.equal(mode.ringsUsed, 1);
  assert.equal(dom.vcpus[0]!.exits[ExitReason.EptViolation], soft + 1);
  runStores(dom, pages.slice(soft));
  const bm = new Uint32Array(32);
  assert.equal(mode.harvest(bm).dirtyCount, pages.length);
  assert.equal(mode.kvmStats.ringFullExits, 1);
});

test('kvm-ring, PML: the 513th logged write exits PML-full; the flush pushes 512 entries at once into the 576-entry reserve; ring full, reaped, nothing lost', () => {
  const dom = new Domain({ format: 'ept', memBytes: 2048 * 4096, vcpus: 1, populate: 'up-front' });
  const mode = createKvmRing(dom, { ringEntries: 1024 }) as KvmRingMode;
  mode.enable();
  const ring = mode.rings[0]!;
  assert.equal(ring.softLimit, 1024 - KVM_DIRTY_RING_RSVD_ENTRIES - KVM_PML_DIRTY_LOG_SIZE);
  const v = dom.vcpus[0]!;
  runStores(dom, Array.from({ length: 512 }, (_, g) => g));
  assert.equal(v.exits[ExitReason.EptViolation] + v.exits[ExitReason.PmlFull], 0, '512 first writes: PML logs them all, no exit');
  assert.equal(mode.ringsUsed, 0, 'nothing pushed before an exit flushes the buffer');
  runStores(dom, [512]); // the 513th: PML-full exit, the flush pushes 512 ≥ soft limit → dirty_ring_full before re-entry
  assert.equal(v.exits[ExitReason.PmlFull], 1);
  assert.equal(v.exits[ExitReason.DirtyRingFull], 1);
  assert.equal(mode.kvmStats.entriesReset, 512, 'the VMM reaped and reset the 512');
  assert.equal(mode.droppedPushes, 0);
  runStores(dom, [0, 1, 513]); // 0 and 1 were re-armed (D cleared) by the reset: logged again
  const bm = new Uint32Array(64);
  assert.equal(mode.harvest(bm).dirtyCount, 514, 'the harvest reaps the earlier 512 and, after its kick, 0, 1, 512 and 513');
  assert.deepEqual(bitmapPages(bm, 2048), Array.from({ length: 514 }, (_, g) => g));
  assert.equal(mode.mmuStats.pmlEntriesFlushed, 516);
  assert.equal(v.exits[ExitReason.EptViolation], 0);
});

test('kvm-ring: pages written by several vCPUs count once; peek reaps without resetting', () => {
  const dom = new Domain({ format: 'ept', memBytes: 256 * 4096, vcpus: 4, quantumRecords: 1, populate: 'up-front' });
  const mode = createKvmRing(dom, {}) as KvmRingMode;
  mode.enable();
  // Each page written once per vCPU (quantum 1: record k runs on vCPU k mod 4) — but only the first write faults.
  const pages = [5, 5, 5, 5, 9, 9, 9, 9, 100, 101, 102, 103];
  runStores(dom, pages);
  assert.equal(mode.peek(null).dirtyCount, 6);
  assert.equal(mode.ringsUsed, 6, 'peek does not reset');
  runStores(dom, [5, 200]); // 5 is still writable: no new entry
  const bm = new Uint32Array(8);
  assert.equal(mode.harvest(bm).dirtyCount, 7);
  assert.equal(mode.ringsUsed, 0);
  runStores(dom, [7, 5, 7]); // 4 vCPUs; pages re-protected by the reset fault again
  assert.equal(mode.harvest(null).dirtyCount, 2);
  assert.equal(mode.harvest(null).dirtyCount, 0);
});

test('kvm-ring: duplicates across vCPUs after re-protection count once per harvest', () => {
  const dom = new Domain({ format: 'ept', memBytes: 256 * 4096, vcpus: 4, quantumRecords: 1, populate: 'up-front' });
  const mode = createKvmRing(dom, { kvmPml: false, ringEntries: 256 }) as KvmRingMode;
  mode.enable();
  // Fill vCPU 0's ring to soft-full with distinct pages interleaved with writes to page 7 by others.
  const recs: number[] = [];
  for (let k = 0; k < 200; k++) recs.push(10 + k, 7, 7, 7);
  runStores(dom, recs);
  assert.ok(mode.kvmStats.ringFullExits >= 1);
  assert.equal(mode.harvest(null).dirtyCount, 201);
});

test('kvm-ring: tracking bytes are 16 per entry per vCPU; bad ring sizes are refused', () => {
  const dom = new Domain({ format: 'ept', memBytes: 64 * 4096, vcpus: 3 });
  assert.equal(createKvmRing(dom, {}).trackingBytes(), 3 * 4096 * 16 + 3 * 4096, 'rings and PML pages');
  assert.equal(createKvmRing(dom, { kvmPml: false, ringEntries: 512 }).trackingBytes(), 3 * 512 * 16);
  assert.throws(() => createKvmRing(dom, { ringEntries: 1000 }), DirtyModeError);
  assert.throws(() => createKvmRing(dom, { kvmPml: false, ringEntries: 128 }), /must be in \[256, 65536\]/);
  assert.throws(() => createKvmRing(dom, { ringEntries: 512 }), /must be in \[576, 65536\] entries \(576 are reserved\) with PML/);
  assert.throws(() => createKvmRing(new Domain({ format: 'arm', memBytes: 64 * 4096 }), {}), /needs an ept p2m/);
  const mode = createKvmRing(dom, {});
  assert.throws(() => mode.peek(null), /not enabled/);
  mode.enable();
  assert.throws(() => mode.enable(), /already enabled/);
  mode.disable();
  assert.equal(mode.enabled, false);
});

/** Runs one store to each page, in order, on the domain's vCPUs. */
function runStores(dom: Domain, pages: readonly number[]): void {
  const b = new AccessBatch(pages.length);
  pages.forEach((p, k) => b.push(AccessKind.Store, p * 4096 + 8, 8, k + 1));
  assert.equal(dom.run(b), pages.length);
  assert.equal(dom.crashed, false, dom.crashReason);
}
