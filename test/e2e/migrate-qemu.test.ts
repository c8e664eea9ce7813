/**
 * The QEMU run through the CLI, on its own (a 512 MiB guest takes a
 * while): `migrate --workload uniform --mem 512M --wss 256M --fill random
 * --dirty-rate 20000 --bandwidth 100 --policy qemu` verifies, its rounds run
 * from one bitmap sync to the next and follow the uniform law within 5%,
 * the never-written half goes as ZERO flags, and the switchover is uncapped.
 */
import { strict as assert } from 'node:assert';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './cli-entry.ts';
import { migrate } from './migrate-json.ts';



describe('the QEMU saver through the CLI', { timeout: 300_000 }, () => {
  it('the issue\'s qemu run (512M, --wss 256M, 100 MiB/s cap) verifies; rounds sync to sync follow the law within 5%', async () => {
    const ws = 65536; // 256 MiB
    const D = 20_000;
    const r = await migrate(['--workload', 'uniform', '--mem', '512M', '--wss', '256M', '--fill', 'random', '--dirty-rate', String(D), '--bandwidth', '100', '--policy', 'qemu'], ROOT, 200_000);
    assert.equal(r.verified, true);
    assert.equal(r.bandwidth_mib_s, 100);
    assert.equal(r.rounds[0]!.zero, 65536, 'the never-written half goes as ZERO flags');
    assert.deepEqual(r.rounds.map((x) => x.round), r.rounds.map((_, i) => i));
    assert.equal(r.bitmap_syncs, r.rounds.reduce((n, x) => n + x.bitmap_syncs, 0));
    for (let i = 0; i + 1 < r.rounds.length; i++) {
      const T = r.rounds[i]!.duration_ms / 1000;
      const expected = ws * (1 - Math.exp((-D * T) / ws));
      const got = r.rounds[i + 1]!.dirty;
      assert.ok(Math.abs(got - expected) / expected < 0.05, `round ${i + 1}: dirty ${got}, law ${expected.toFixed(0)} (T=${T.toFixed(4)} s)`);
    }
    assert.ok(r.downtime_ms < 100, `the switchover crosses at the link's speed: ${r.downtime_ms} ms`);
  });

});
