/**
 * Regenerates the README's policy table: every saver on the same two
 * working-set workloads under the virtual clock (deterministic for the
 * seed), one that converges at the chosen rate cap and one that does not.
 * Every saver gets the same cap (`--bandwidth`, QEMU's max-bandwidth; for
 * the Xen savers a cap on every pass) on the same 10 GbE link (`--link`).
 *
 *   node --import tsx scripts/policy-table.ts
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

const BIN = join(resolve(import.meta.dirname, '..'), 'bin/memvisor.js');
const GUEST = ['--mem', '256M', '--wss', '128M', '--fill', 'random', '--mode', 'ept-pml', '--seed', '1', '--bandwidth', '100', '--link', '1250'];
const SCENARIOS = [
  { name: 'converges: hotspot, 20k pages/s', args: ['--workload', 'hotspot', '--dirty-rate', '20000'] },
  { name: 'does not converge: uniform, 50k pages/s', args: ['--workload', 'uniform', '--dirty-rate', '50000'] },
];
const POLICIES = ['xen', 'xen-legacy', 'qemu', 'clark', 'adaptive'];

console.log('| workload (256 MiB guest, --wss 128M, ept-pml, cap 100 MiB/s, link 1250 MiB/s, seed 1) | saver | rounds | bitmap syncs | pages sent | zero | skipped re-dirtied / unchanged | MiB sent | downtime ms | total ms | verified |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const s of SCENARIOS) {
  for (const p of POLICIES) {
    const r = spawnSync(process.execPath, [BIN, 'migrate', '--json', ...GUEST, '--policy', p, ...s.args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${p}: ${r.stderr}`);
    const o = JSON.parse(r.stdout);
    const n = (x: number) => x.toLocaleString('en-US');
    console.log(
      `| ${s.name} | ${p} | ${o.rounds.length} | ${o.bitmap_syncs} | ${n(o.pages_sent)} | ${n(o.zero_pages)} | ${n(o.skipped_redirtied)} / ${n(o.skipped_unchanged)} | ` +
        `${n(Number((o.bytes_sent / 1048576).toFixed(1)))} | ${o.downtime_ms.toFixed(1)} | ${n(Math.round(o.total_ms))} | ${o.verified} |`,
    );
  }
}
