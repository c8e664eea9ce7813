/**
 * MigratableDomain with kvm-bitmap in manual-protect mode, migrated by the
 * real sender to an in-process receiver: the sender drives QEMU's lazy
 * KVM_CLEAR_DIRTY_LOG (harvest only GETs; a chunk is cleared just before its
 * first page is read to be sent), and the destination still verifies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkModel } from '../migration/link-model.ts';
import { createPolicy } from '../migration/policy/registry.ts';
import { migrate } from '../migration/sender.ts';
import { LoopbackTransport } from '../migration/testing/loopback-transport.ts';
import type { KvmBitmapMode } from '../modes/kvm-bitmap.ts';
import { Xoshiro128 } from '../rng.ts';
import { MiB } from '../units.ts';
import { createSyntheticWorkload } from '../workload/synthetic.ts';
import { createGuest } from './guest.ts';
import { MigratableDomain, fillGuestRandom } from './migratable-domain.ts';

for (const kvmPml of [true, false]) {
  test(`kvm-bitmap manual protect (${kvmPml ? 'PML' : 'no PML'}) under the sender: CLEARs wait for the sends, chunk by chunk; the migration verifies`, async () => {
    const memBytes = 16 * MiB;
    const pageCount = memBytes / 4096;
    const guest = createGuest({
      memBytes, vcpus: 2, mode: 'kvm-bitmap', addressing: 'identity', pageSize: '4k', populate: 'up-front',
      modeOptions: { kvmPml, kvmManualProtect: true, kvmClearChunkPages: 256 },
    });
    fillGuestRandom(guest.domain, new Xoshiro128(3));
    const mode = guest.mode as KvmBitmapMode;
    const workload = createSyntheticWorkload('uniform', { pageCount, rng: new Xoshiro128(4) });
    const source = new MigratableDomain({ domain: guest.domain, mode, workload, accessesPerSecond: 20_000 });
    assert.ok(source.beforeSend !== undefined, 'the sender gets the hook');
    // Each harvest (CLEAN) only GETs: no CLEAR happens inside it.
    const harvest = mode.harvest.bind(mode);
    let harvests = 0;
    mode.harvest = (bm) => {
      const before = mode.kvmStats.clearIoctls;
      const r = harvest(bm);
      assert.equal(mode.kvmStats.clearIoctls, before, 'no CLEAR at harvest');
      harvests++;
      return r;
    };
    const t = new LoopbackTransport();
    const r = await migrate(source, t, { policy: createPolicy('xen'), link: linkModel(200, 0.1) });
    assert.equal(r.verified, true);
    assert.equal(r.source_digest, r.dest_digest);
    assert.ok(harvests >= 2);
    // Every page a later round sent had its chunk cleared first: at most one CLEAR per 256-page chunk per round.
    const laterRounds = r.rounds.slice(1);
    assert.ok(mode.kvmStats.clearIoctls > 0);
    assert.ok(mode.kvmStats.clearIoctls <= laterRounds.length * (pageCount / 256));
    const chunksSent = laterRounds.reduce((n, x) => n + Math.min(x.dirty, pageCount / 256), 0);
    assert.ok(mode.kvmStats.clearIoctls <= chunksSent);
  });
}
