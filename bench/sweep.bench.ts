/**
 * Sweep throughput: a 64-point virtual-clock migrate grid (4 policies × 4
 * dirty rates × 4 seeds, 32 MiB guests), run as one sweep on this machine
 * (points per minute, every core), then as 4 shards one after another — what
 * 4 nodes of a Slurm array would each run — and their merge, timed. The
 * projection for N nodes is the measured per-shard rate × N, plus the merge.
 * Each run checks the merged files equal the single run's.
 *
 * Run: node --import tsx bench/sweep.bench.ts
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin/memvisor.js');
const dir = mkdtempSync(join(tmpdir(), 'memvisor-sweep-bench-'));
const grid = join(dir, 'grid.json');
writeFileSync(grid, JSON.stringify({
  command: 'migrate',
  base: { workload: 'uniform', mem: '32M', clock: 'virtual' },
  vary: { policy: ['xen', 'xen-legacy', 'qemu', 'adaptive'], 'dirty-rate': [2000, 10000, 40000, 100000] },
  seeds: [1, 2, 3, 4],
}));

function timed(args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`memvisor ${args.join(' ')} exited ${r.status}`);
  return performance.now() - t0;
}

console.log(`64-point migrate grid (virtual clock, 32 MiB); ${availableParallelism()} cores; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
const one = timed(['sweep', grid, '--out', 'one', '--json']);
const shards = [1, 2, 3, 4].map((k) => timed(['sweep', grid, '--shard', `${k}/4`, '--out', `s${k}`, '--json']));
const merge = timed(['sweep', 'merge', 's1', 's2', 's3', 's4', '--out', 'merged', '--json']);
const same = readFileSync(join(dir, 'merged/results.csv'), 'utf8') === readFileSync(join(dir, 'one/results.csv'), 'utf8');
const perMin = (points: number, ms: number) => (points / (ms / 60_000)).toFixed(1);
const slowest = Math.max(...shards);
console.log(`one machine, --jobs ${availableParallelism()}: 64 points in ${(one / 1000).toFixed(1)} s = ${perMin(64, one)} points/min`);
console.log(`4 shards of 16 (one after another here): ${shards.map((s) => (s / 1000).toFixed(1)).join(', ')} s; per-shard rate ${perMin(16, shards.reduce((a, b) => a + b, 0) / 4)} points/min`);
console.log(`merge of 4 shards: ${(merge / 1000).toFixed(2)} s (a process start included); merged files equal the single run: ${same}`);
for (const n of [4, 16, 64]) {
  const perNode = 16 / (shards.reduce((a, b) => a + b, 0) / 4 / 60_000);
  console.log(`projected on ${n} nodes: ${(perNode * n).toFixed(0)} points/min (measured per-node rate × ${n}), plus ${(merge / 1000).toFixed(1)} s of merge per sweep`);
}
console.log(`slowest shard ${(slowest / 1000).toFixed(1)} s; load average after ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
rmSync(dir, { recursive: true, force: true });
