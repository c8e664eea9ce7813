/**
 * A real domain under migration: the Xen v2 saver's last CLEAN reaches Xen's
 * log-dirty op with XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL (and the op log counts
 * it), the legacy saver's does not, and PEEKs are the legacy saver's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { linkModel } from '../migration/link-model.ts';
import { createPolicy } from '../migration/policy/registry.ts';
import { migrate } from '../migration/sender.ts';
import { LoopbackTransport } from '../migration/testing/loopback-transport.ts';
import type { HapLogDirtyMode } from '../modes/hap-log-dirty.ts';
import type { ShadowMode } from '../modes/shadow.ts';
import { Xoshiro128 } from '../rng.ts';
import { createSyntheticWorkload } from '../workload/synthetic.ts';
import { createGuest } from './guest.ts';
import { fillGuestRandom, MigratableDomain } from './migratable-domain.ts';

async function run(mode: string, policy: string) {
  const guest = createGuest({ memBytes: 4 << 20, vcpus: 1, mode, addressing: 'identity', pageSize: '4k', populate: 'up-front' });
  fillGuestRandom(guest.domain, new Xoshiro128(1), 512); // half the guest holds data, the rest is zero
  const workload = createSyntheticWorkload('uniform', { pageCount: 512, rng: new Xoshiro128(2) });
  const src = new MigratableDomain({ domain: guest.domain, mode: guest.mode!, workload, accessesPerSecond: 20_000 });
  const r = await migrate(src, new LoopbackTransport(), { policy: createPolicy(policy), link: linkModel(64, 1) });
  return { r, mode: guest.mode! };
}

for (const mode of ['ept-pml', 'npt-wp', 'shadow']) {
  test(`${mode}: xen's final CLEAN carries LOGDIRTY_FINAL and the op log counts it; xen-legacy's does not and PEEKs per batch`, async () => {
    const v2 = await run(mode, 'xen');
    assert.equal(v2.r.verified, true);
    const ops = (v2.mode as HapLogDirtyMode | ShadowMode).logDirty.opCounts;
    assert.equal(ops.cleanFinal, 1);
    assert.equal(ops.clean, v2.r.bitmap_syncs, 'every CLEAN the saver issued');
    assert.equal(ops.peek, 0);
    assert.equal(ops.enable, 1);
    assert.equal(ops.off, 1);
    const legacy = await run(mode, 'xen-legacy');
    assert.equal(legacy.r.verified, true);
    const lops = (legacy.mode as HapLogDirtyMode | ShadowMode).logDirty.opCounts;
    assert.equal(lops.cleanFinal, 0);
    assert.equal(lops.clean, legacy.r.bitmap_syncs);
    assert.equal(lops.peek, legacy.r.peeks);
    assert.ok(lops.peek >= 1);
  });
}
