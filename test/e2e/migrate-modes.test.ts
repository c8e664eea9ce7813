/**
 * Live migration of a real guest (p2m, walker, dirty-tracking mode, paced
 * workload) through the CLI: `memvisor migrate` starts the receiver as a
 * separate process on loopback. Every mode, several workloads and policies,
 * 1 and 4 vCPUs: the destination verifies the source's digest. Also the
 * uniform-workload law under the virtual clock, on the real engine:
 * round i+1 dirty ≈ M·(1 − e^(−D·Tᵢ/M)).
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './cli-entry.ts';
import { migrate } from './migrate-json.ts';

const SHARED_TRACE = resolve(ROOT, '../shared/traces/sort-2m.lackey.gz');
const TRACE = existsSync(SHARED_TRACE) ? SHARED_TRACE : join(ROOT, 'test/fixtures/sort-small.lackey.gz');


const MODES = ['ept-wp', 'ept-pml', 'npt-wp', 'arm-wp', 'kvm-bitmap', 'kvm-ring'];

describe('migrate a running guest between processes', { timeout: 600_000 }, () => {
  for (const vcpus of [1, 4]) {
    it(`every mode verifies, ${vcpus} vCPU(s)`, async () => {
      const workloads = ['uniform', 'hotspot', 'zipf', 'sequential', 'read-mostly', 'hotspot'];
      const policies = ['xen', 'xen-legacy', 'qemu', 'clark', 'adaptive', 'xen'];
      for (let i = 0; i < MODES.length; i++) {
        const args = ['--mem', '16M', '--vcpus', String(vcpus), '--mode', MODES[i]!, '--workload', workloads[i]!, '--policy', policies[i]!, '--dirty-rate', '20000', '--bandwidth', '200', '--seed', String(7 + i)];
        const r = await migrate(args);
        assert.equal(r.verified, true, args.join(' '));
        assert.equal(r.source_digest, r.dest_digest);
        // Round 0 considers every page; xen-legacy and clark skip those dirtied again since the pass began.
        assert.equal(r.rounds[0]!.pages_sent + r.rounds[0]!.skipped_redirtied, 4096, 'round 0 sends every page');
        for (const round of r.rounds.slice(1)) {
          assert.ok(round.pages_sent <= round.pending, 'later rounds send at most the pending pages');
          // Xen-style savers send from the CLEAN's bitmap alone; QEMU's bitmap also carries what the last round left.
          if (policies[i] !== 'qemu') assert.equal(round.pending, round.dirty);
        }
        assert.equal(r.policy, policies[i]);
      }
    });
  }

  it('a trace-driven guest (paged addressing, guest OS page tables) migrates and verifies in every mode', { skip: !existsSync(TRACE) }, async () => {
    for (const mode of MODES) {
      const r = await migrate(['--trace', TRACE, '--mode', mode, '--mem', '16M', '--bandwidth', '20', '--dirty-rate', '200000', '--vcpus', mode === 'kvm-ring' ? '4' : '1']);
      assert.equal(r.verified, true, mode);
      assert.ok(r.rounds.length >= 3 && r.rounds[1]!.dirty > 0, `${mode}: the trace dirtied pages while round 0 ran`);
    }
  });

  it('a freshly booted guest: qemu sends zero pages as flags, xen with their data (run from another directory)', async () => {
    const r = await migrate(['--mem', '16M', '--fill', 'zero', '--workload', 'hotspot', '--dirty-rate', '1000', '--policy', 'qemu'], tmpdir());
    assert.equal(r.verified, true);
    assert.ok(r.bytes_sent < 16 * 1024 * 1024 * 0.2, `zero pages carry no payload (${r.bytes_sent} bytes)`);
    const x = await migrate(['--mem', '16M', '--fill', 'zero', '--workload', 'hotspot', '--dirty-rate', '1000', '--policy', 'xen'], tmpdir());
    assert.equal(x.verified, true);
    assert.ok(x.bytes_sent > 16 * 1024 * 1024, `xen sends every page with data (${x.bytes_sent} bytes)`);
  });

  it('the real clock moves the guest over the real socket and verifies', async () => {
    const r = await migrate(['--mem', '32M', '--clock', 'real', '--workload', 'uniform', '--dirty-rate', '5000', '--mode', 'ept-wp']);
    assert.equal(r.clock, 'real');
    assert.equal(r.verified, true);
  });

  it('uniform workload: dirty pages per round follow M(1 − e^(−D·T/M)) within 5% (virtual clock)', async () => {
    const M = 65536; // 256 MiB
    const D = 100_000;
    const r = await migrate(['--mem', '256M', '--workload', 'uniform', '--dirty-rate', String(D), '--bandwidth', '500', '--latency', '0', '--policy', 'xen-legacy', '--mode', 'ept-pml', '--seed', '3']);
    assert.equal(r.verified, true);
    assert.ok(r.rounds.length >= 4, `need 4 rounds, got ${r.rounds.length}`);
    for (let i = 0; i < 3; i++) {
      const T = r.rounds[i]!.duration_ms / 1000;
      const expected = M * (1 - Math.exp((-D * T) / M));
      const got = r.rounds[i + 1]!.dirty;
      assert.ok(Math.abs(got - expected) / expected < 0.05, `round ${i + 1}: dirty ${got}, law ${expected.toFixed(0)} (T=${T.toFixed(4)} s)`);
    }
  });
});
