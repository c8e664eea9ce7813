/**
 * The KVM modes against Xen on the same workload, through the runner every
 * command uses (createGuest + replay): round by round the same dirty set (the
 * contract: the same trace gives the same dirty set in every mode), identity
 * and paged addressing (guest page tables, A/D writes), 4 vCPUs. With PML the
 * reference is ept-pml: with EPT A/D on, the CPU's accesses to guest page
 * tables count as writes (SDM Vol. 3C §29.3.5), so in paged addressing a
 * table page the walk only read is dirty too; without PML it is ept-wp.
 * Initially-set's first round reports every page instead (KVM semantics).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Domain } from '../domain/domain.ts';
import { Xoshiro128 } from '../rng.ts';
import { createGuest, type Addressing } from '../runner/guest.ts';
import { replay } from '../runner/replay.ts';
import { MiB } from '../units.ts';
import { ExitReason } from '../vm-exit.ts';
import { AccessBatch, AccessKind } from '../workload/access-batch.ts';
import { createSyntheticWorkload } from '../workload/synthetic.ts';
import type { ModeOptions } from './dirty-mode.ts';
import { MODES } from './registry.ts';
import { bitmapPages } from './testing/dirty-windows.ts';

const MEM = 8 * MiB;
const PAGES = MEM / 4096;

async function roundsOf(mode: string, modeOptions: ModeOptions, addressing: Addressing, workload: string): Promise<{ sets: number[][]; dirty: number[] }> {
  const guest = createGuest({ memBytes: MEM, vcpus: 4, mode, modeOptions, addressing, pageSize: '4k' });
  // Paged: the guest OS needs frames for its tables, so the workload spans half of memory.
  const src = createSyntheticWorkload(workload, { pageCount: PAGES / 2, rng: new Xoshiro128(42), count: 12000 });
  const sets: number[][] = [];
  const res = await replay(guest, src, { cleanEvery: 3000, batchCapacity: 1000, onHarvestBitmap: (bm) => sets.push(bitmapPages(bm, PAGES)) });
  assert.equal(guest.domain.crashed, false, guest.domain.crashReason);
  return { sets, dirty: res.rounds.map((r) => r.dirty) };
}

for (const addressing of ['identity', 'paged'] as const) {
  for (const workload of ['uniform', 'read-mostly'] as const) {
    test(`kvm modes give the same dirty set as ept-pml (PML) and ept-wp (no PML) every round (${addressing}, ${workload}, 4 vCPUs)`, async () => {
      const refPml = await roundsOf('ept-pml', {}, addressing, workload);
      const refWp = await roundsOf('ept-wp', {}, addressing, workload);
      assert.equal(refWp.sets.length, 4);
      if (addressing === 'identity') assert.deepEqual(refPml.sets, refWp.sets, 'identity: no guest tables, one dirty set');
      const variants: Array<[string, ModeOptions]> = [false, true].flatMap((kvmPml): Array<[string, ModeOptions]> => [
        ['kvm-bitmap', { kvmPml }],
        ['kvm-bitmap', { kvmPml, kvmManualProtect: true }],
        ['kvm-bitmap', { kvmPml, kvmManualProtect: true, kvmClearChunkPages: 64 }],
        ['kvm-bitmap', { kvmPml, kvmManualProtect: true, kvmInitiallySet: true }],
        ['kvm-ring', { kvmPml }],
        ['kvm-ring', { kvmPml, ringEntries: kvmPml ? 1024 : 256 }],
      ]);
      for (const [mode, opts] of variants) {
        const ref = opts.kvmPml ? refPml : refWp;
        const got = await roundsOf(mode, opts, addressing, workload);
        const label = `${mode} ${JSON.stringify(opts)}`;
        assert.equal(got.sets.length, ref.sets.length, label);
        for (let i = 0; i < ref.sets.length; i++) {
          if (i === 0 && opts.kvmInitiallySet) {
            assert.equal(got.dirty[0], PAGES, `${label}: initially set, round 0 reports every page`);
            continue;
          }
          assert.deepEqual(got.sets[i], ref.sets[i], `${label}: round ${i} dirty set`);
          assert.equal(got.dirty[i], ref.dirty[i], `${label}: round ${i} dirty count`);
        }
      }
    });
  }
}

test('kvm modes with PML: gfns at and above 2^20 (4 GiB) come out of the PML buffer, the bitmap and the ring at their own gfn', () => {
  const pages = 2 ** 22; // 16 GiB, sparse
  const written = [7, 2 ** 20, 2 ** 20 + 7, 2 ** 21 + 64, pages - 1];
  for (const name of ['kvm-bitmap', 'kvm-ring'] as const) {
    for (const opts of [{ kvmPml: true }, { kvmPml: true, kvmManualProtect: true }]) {
      if (name === 'kvm-ring' && opts.kvmManualProtect) continue;
      const dom = new Domain({ format: 'ept', memBytes: pages * 4096, vcpus: 2, quantumRecords: 1, populate: 'on-demand' });
      const mode = MODES[name]!.create(dom, opts);
      mode.enable();
      const bm = new Uint32Array(pages / 32);
      for (let round = 0; round < 2; round++) {
        // Round 0 populates with a read first, so the write is PML's; round 1 writes populated pages.
        const b = new AccessBatch(2 * written.length);
        for (const g of written) {
          b.push(AccessKind.Load, g * 4096, 8, 1);
          b.push(AccessKind.Store, g * 4096 + 16, 8, 2);
        }
        assert.equal(dom.run(b), b.length);
        bm.fill(0);
        assert.equal(mode.harvest(bm).dirtyCount, written.length);
        assert.deepEqual(bitmapPages(bm, pages), written, `${name} ${JSON.stringify(opts)} round ${round}`);
      }
      assert.equal(dom.totalExits()[ExitReason.EptViolation], written.length, `${name}: the only EPT violations populated the frames`);
    }
  }
});
