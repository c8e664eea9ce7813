/**
 * Regenerates the README's policy table: every stop policy on the same two
 * workloads under the virtual clock (deterministic for the seed), one that
 * converges at the chosen bandwidth and one that does not.
 *
 *   node --import tsx scripts/policy-table.ts
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

const BIN = join(resolve(import.meta.dirname, '..'), 'bin/memvisor.js');
const SCENARIOS = [
  { name: 'converges: hotspot, 20k pages/s, 1000 MiB/s', args: ['--workload', 'hotspot', '--dirty-rate', '20000', '--bandwidth', '1000'] },
  { name: 'does not converge: uniform, 100k pages/s, 200 MiB/s', args: ['--workload', 'uniform', '--dirty-rate', '100000', '--bandwidth', '200'] },
];
const POLICIES = ['xen', 'xen-legacy', 'qemu', 'clark', 'adaptive'];

console.log('| workload (256 MiB guest, ept-pml, seed 1) | policy | rounds | pages sent | MiB sent | downtime ms | total ms | verified |');
console.log('|---|---|---|---|---|---|---|---|');
for (const s of SCENARIOS) {
  for (const p of POLICIES) {
    const r = spawnSync(process.execPath, [BIN, 'migrate', '--json', '--mem', '256M', '--mode', 'ept-pml', '--seed', '1', '--policy', p, ...s.args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${p}: ${r.stderr}`);
    const o = JSON.parse(r.stdout);
    console.log(`| ${s.name} | ${p} | ${o.rounds.length} | ${o.pages_sent} | ${(o.bytes_sent / 1048576).toFixed(1)} | ${o.downtime_ms.toFixed(1)} | ${o.total_ms.toFixed(0)} | ${o.verified} |`);
  }
}
