/**
 * Replay speed against `zcat FILE | wc -l`, and compare's speed-up with
 * --jobs, measured in the same run, alternating, on the same file.
 *
 * Input: a 10 M-record gzip trace, built once in the temp directory from
 * ../shared/traces/sort-2m.lackey.gz repeated five times (its 6 '==' header
 * lines repeat too and are skipped), recompressed with gzip -6 — or the file
 * MEMVISOR_BENCH_TRACE names.
 *
 * "replay" is the pipeline in this process, timed from opening the trace to
 * the last round's CLEAN: reader (a worker thread reads and inflates;
 * lackey-reader.ts parses) → engine under the mode, CLEAN every 100,000
 * records, exactly what `memvisor trace` runs. "command" is `memvisor trace
 * FILE --mode M --json` as a user runs it, process start-up included (node
 * plus the TypeScript loader). Each sample pairs one zcat | wc -l with one
 * replay right after it; the ratio reported is the median of the pairs'
 * ratios (zcat time / replay time: 0.5 means replay takes twice as long).
 *
 * Run: node --import tsx bench/replay.bench.ts   (RUNS=n pairs, default 3; MODES=a,b to pick;
 * COMPARE_TRACE=file for the compare rows; SKIP_COMPARE=1 to leave them out)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { LackeyReader } from '../src/adapters/lackey-reader.ts';
import { MODES } from '../src/core/modes/registry.ts';
import { createGuest } from '../src/core/runner/guest.ts';
import { replay } from '../src/core/runner/replay.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin/memvisor.js');
const SHARED = resolve(ROOT, '../shared/traces/sort-2m.lackey.gz');
const RUNS = Number(process.env.RUNS ?? 3);

function trace10m(): string {
  if (process.env.MEMVISOR_BENCH_TRACE) return process.env.MEMVISOR_BENCH_TRACE;
  const out = join(tmpdir(), 'memvisor-bench-sort-10m.lackey.gz');
  if (!existsSync(out)) {
    const one = gunzipSync(readFileSync(SHARED));
    writeFileSync(out, gzipSync(Buffer.concat([one, one, one, one, one]), { level: 6 }));
  }
  return out;
}

/** Wall time of `zcat FILE | wc -l`, and the CPU time of its two processes (the shell's `times`: children's user and sys). */
function zcatWc(file: string): { ms: number; cpuMs: number } {
  const t0 = performance.now();
  const out = execFileSync('sh', ['-c', `zcat '${file}' | wc -l >/dev/null; times`], { encoding: 'utf8' });
  const ms = performance.now() - t0;
  // times: "0m0.00s 0m0.00s\n0m0.41s 0m0.05s" (shell, then children)
  const t = out.trim().split('\n').pop()!.match(/(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s/)!;
  return { ms, cpuMs: (Number(t[1]) * 60 + Number(t[2]) + Number(t[3]) * 60 + Number(t[4])) * 1000 };
}

/** CPU time of this process's main thread so far (Linux /proc; 10 ms ticks), ms. */
function mainThreadCpuMs(): number {
  try {
    const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

/** One replay: wall time, and CPU time of the main thread (parse + engine) and of the others (the reader's worker: read + inflate). */
async function replayOnce(file: string, mode: string, addressing: 'identity' | 'paged'): Promise<{ ms: number; mainCpuMs: number; otherCpuMs: number }> {
  const c0 = process.cpuUsage();
  const m0 = mainThreadCpuMs();
  const t0 = performance.now();
  const guest = createGuest({ memBytes: addressing === 'identity' ? 1024 ** 4 : 1024 ** 3, vcpus: 1, mode, addressing, pageSize: '4k' });
  await replay(guest, new LackeyReader(file), { cleanEvery: 100_000 });
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const mainCpuMs = mainThreadCpuMs() - m0;
  return { ms, mainCpuMs, otherCpuMs: (c.user + c.system) / 1000 - mainCpuMs };
}

function commandOnce(args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`memvisor ${args.join(' ')} exited ${r.status}`);
  return performance.now() - t0;
}

function med(xs: readonly number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[v.length >> 1]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
}

async function main(): Promise<void> {
  const file = trace10m();
  const modes = process.env.MODES ? process.env.MODES.split(',') : Object.keys(MODES);
  console.log(`${file}; ${cpus().length} cores (${cpus()[0]?.model}); load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}; ${RUNS} pairs per row, median of the pair ratios`);
  console.log('| case | replay wall (median) | zcat \\| wc -l wall (median) | **wall ratio** zcat/replay (median of pairs, range) | CPU: replay main thread / worker; zcat\\|wc | CPU ratio zcat / max(main, worker) |');
  console.log('|---|---|---|---|---|---|');
  for (const addressing of ['identity', 'paged'] as const) {
    for (const mode of modes) {
      const ratios: number[] = [];
      const cpuRatios: number[] = [];
      const zs: number[] = [];
      const rs: number[] = [];
      const mains: number[] = [];
      const others: number[] = [];
      const zcpus: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const z = zcatWc(file);
        const r = await replayOnce(file, mode, addressing);
        zs.push(z.ms);
        rs.push(r.ms);
        mains.push(r.mainCpuMs);
        others.push(r.otherCpuMs);
        zcpus.push(z.cpuMs);
        ratios.push(z.ms / r.ms);
        cpuRatios.push(z.cpuMs / Math.max(r.mainCpuMs, r.otherCpuMs));
      }
      console.log(
        `| replay ${mode}, ${addressing} | ${med(rs).toFixed(0)} ms | ${med(zs).toFixed(0)} ms | **${med(ratios).toFixed(2)}** (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}) ` +
          `| ${med(mains).toFixed(0)} / ${med(others).toFixed(0)} ms; ${med(zcpus).toFixed(0)} ms | ${med(cpuRatios).toFixed(2)} |`,
      );
    }
  }
  {
    const ratios: number[] = [];
    const zs: number[] = [];
    const cs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const z = zcatWc(file);
      const c = commandOnce(['trace', file, '--mode', 'ept-wp', '--json']);
      zs.push(z.ms);
      cs.push(c);
      ratios.push(z.ms / c);
    }
    console.log(`| command \`memvisor trace FILE --mode ept-wp --json\` (start-up included) | ${med(cs).toFixed(0)} ms | ${med(zs).toFixed(0)} ms | **${med(ratios).toFixed(2)}** (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}) | | |`);
  }
  if (process.env.SKIP_COMPARE !== '1') {
    const jobs = availableParallelism();
    // COMPARE_TRACE: the file compare runs on (default the 10 M-record trace; the 2 M shared one is quicker on a busy box).
    const compareFile = process.env.COMPARE_TRACE ?? file;
    const one: number[] = [];
    const many: number[] = [];
    const ratios: number[] = [];
    for (let i = 0; i < Math.max(2, RUNS - 1); i++) {
      const a = commandOnce(['compare', compareFile, '--jobs', '1', '--json']);
      const b = commandOnce(['compare', compareFile, '--json']);
      one.push(a);
      many.push(b);
      ratios.push(a / b);
    }
    console.log(`\n| compare (all default rows) | --jobs 1 | --jobs ${jobs} (default) | speed-up (median of pairs) |`);
    console.log('|---|---|---|---|');
    console.log(`| ${compareFile.split('/').pop()} | ${(med(one) / 1000).toFixed(2)} s | ${(med(many) / 1000).toFixed(2)} s | **${med(ratios).toFixed(2)}×** (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}) |`);
  }
  console.log(`load average after: ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
}

await main();
