/**
 * `memvisor compare`: the same trace or workload under each dirty-tracking
 * mode, one table — exits by reason, the hypervisor cycles tracking cost per
 * million records (mode cycles minus an untracked baseline run on the same
 * p2m format), cycles spent harvesting, and host memory the tracking
 * structures hold. A mode may carry a variant after a colon:
 * `ept-pml:every-exit`, `arm-wp:list`, `kvm-bitmap:manual`, `kvm-ring:no-pml`,
 * `shadow:prealloc`. The KVM rows follow --kvm-pml (default on) unless the
 * variant names it (`:pml`, `:no-pml`).
 * Shadow's baseline is an untracked HAP run on its software p2m's format, so
 * its tracking cycles include the cost of shadow paging itself.
 */
import { modeEntry, modeNames, registeredModes } from '../../core/modes/registry.ts';
import { createGuest } from '../../core/runner/guest.ts';
import { replay } from '../../core/runner/replay.ts';
import { STAT_CYCLES } from '../../core/mmu/mmu-stats.ts';
import { UsageError } from '../errors.ts';
import { intFlag, parseGuestFlags } from '../options.ts';
import { Progress, renderTable } from '../output.ts';
import { claimReportFile, writeReportFile } from '../report-file.ts';
import { openSource, requireRecords } from '../source.ts';
import type { CompareReportResult } from '../../adapters/report/trace-report.ts';
import { runInProcess, runInWorkers, jobsFlag } from '../parallel/worker-pool.ts';
import { runTask, type Task, type TaskResult } from '../parallel/tasks.ts';
import { modeOptionsFrom, traceOnce, type TraceFlags, type TraceRun } from './trace.ts';

export interface CompareFlags extends TraceFlags {
  modes?: string;
  /** Worker threads (default: the number of cores). */
  jobs?: string;
}

const DEFAULT_ROWS = [
  'ept-wp', 'ept-pml', 'ept-pml:every-exit', 'npt-wp', 'arm-wp', 'arm-wp:list',
  'kvm-bitmap', 'kvm-bitmap:no-pml', 'kvm-bitmap:manual', 'kvm-ring', 'kvm-ring:no-pml', 'shadow', 'shadow:prealloc',
];

const VARIANTS: Record<string, Partial<TraceFlags>> = {
  'ept-pml:every-exit': { pmlFlush: 'every-exit' },
  'ept-pml:on-demand': { pmlFlush: 'on-demand' },
  'arm-wp:list': { armDirtySet: 'list' },
  'arm-wp:bitmap': { armDirtySet: 'bitmap' },
  'kvm-bitmap:pml': { kvmPml: 'on' },
  'kvm-bitmap:no-pml': { kvmPml: 'off' },
  'kvm-bitmap:manual': { kvmManualProtect: true },
  'kvm-bitmap:manual:no-pml': { kvmManualProtect: true, kvmPml: 'off' },
  'kvm-bitmap:initially-set': { kvmInitiallySet: true },
  'kvm-ring:pml': { kvmPml: 'on' },
  'kvm-ring:no-pml': { kvmPml: 'off' },
  'shadow:xen': { shadowPool: 'xen' },
  'shadow:prealloc': { shadowPool: 'prealloc' },
};

export async function compareCommand(file: string, f: CompareFlags): Promise<void> {
  claimReportFile(f.report);
  const result = await compareResult(file, f, new Progress(!f.json));
  printCompare(result, f.json === true);
  if (f.report !== undefined) {
    const { renderCompareReport } = await import('../../adapters/report/trace-report.ts');
    writeReportFile(f.report, renderCompareReport(result));
  }
}

/** The rows `--modes` names (default: every row), each checked against the modes and variants. */
export function compareRows(f: CompareFlags): string[] {
  // Default: every built-in row, then each mode a --plugin registered.
  const rows = f.modes === undefined ? [...DEFAULT_ROWS, ...registeredModes().map((m) => m.name)] : f.modes.split(',').map((s) => s.trim()).filter(Boolean);
  if (rows.length === 0) throw new UsageError(`--modes: no mode given in '${f.modes}' (a comma-separated list, e.g. ept-wp,ept-pml; omit --modes for all)`);
  const names = modeNames();
  for (const r of rows) {
    const base = r.split(':')[0]!;
    if (!names.includes(base) || (r.includes(':') && VARIANTS[r] === undefined)) {
      throw new UsageError(`--modes: unknown mode '${r}' (expected ${names.join(', ')}, or a variant: ${Object.keys(VARIANTS).join(', ')})`);
    }
  }
  return rows;
}

/**
 * What `compare --json` prints. Every row and each format's untracked
 * baseline is one task; `--jobs N` (default: the cores) runs them on N
 * worker threads, each reading the trace itself, and `--jobs 1` on this
 * thread: the same tasks, so the same result.
 */
export async function compareResult(file: string, f: CompareFlags, progress: Progress): Promise<CompareReportResult & { modes: (CompareReportResult['modes'][number] & { cycles: number; tracking_cycles: number })[] }> {
  const rows = compareRows(f);
  const jobs = jobsFlag(f.jobs);
  const trace = file === '' ? undefined : file;
  if (trace === undefined && f.workload === undefined) throw new UsageError('give a trace file, or --workload NAME');
  // Every mode (and each format's baseline) reads the trace again from the start; stdin can be read once.
  if (trace === '-') throw new UsageError('compare reads the trace once per mode, so it needs a file, not - (stdin)');
  // Flags are checked here, once, before any thread starts.
  parseGuestFlags(f, trace !== undefined);
  intFlag('--clean-every', f.cleanEvery, 100_000);
  for (const row of rows) modeOptionsFrom({ ...f, ...VARIANTS[row] });
  const { ...flags } = f;
  delete flags.report;
  const formats = [...new Set(rows.map((row) => modeEntry(row.split(':')[0]!).format))];
  const tasks: Task[] = [
    ...formats.map((format): Task => ({ t: 'baseline', file: trace, flags, format })),
    ...rows.map((row): Task => ({ t: 'compare-row', file: trace, flags, row })),
  ];
  const label = (i: number): string => (i < formats.length ? `baseline (${formats[i]}, no tracking)` : rows[i - formats.length]!);
  const onDone = (i: number): void => progress.line(`${label(i)}: done`);
  const done = jobs === 1 || tasks.length === 1 ? await runInProcess(tasks, runTask, onDone) : await runInWorkers<Task, TaskResult>(tasks, jobs, onDone);
  const baselines = new Map(formats.map((format, i) => [format, done[i] as number]));
  const runs = rows.map((row, i) => ({ row, run: done[formats.length + i] as TraceRun, baseline: baselines.get(modeEntry(row.split(':')[0]!).format)! }));
  const records = runs[0]?.run.records ?? 0;
  const perMillion = (c: number): number => (records > 0 ? Math.round((c / records) * 1e6) : 0);
  return {
    source: trace ?? `workload ${f.workload}`,
    records,
    clean_every: intFlag('--clean-every', f.cleanEvery, 100_000),
    modes: runs.map(({ row, run, baseline }) => ({
      mode: row,
      rounds: run.rounds.length,
      dirty_total: run.totals.dirty,
      exits: run.totals.exits,
      cycles: run.totals.cycles,
      tracking_cycles: Math.max(0, run.totals.cycles - baseline),
      tracking_cycles_per_million_records: perMillion(Math.max(0, run.totals.cycles - baseline)),
      harvest_cycles: run.totals.harvest_cycles,
      tracking_bytes: run.totals.tracking_bytes,
    })),
  };
}

/** One row of the comparison: the mode (and its variant's flags) over the source. */
export async function compareRow(file: string | undefined, f: TraceFlags, row: string): Promise<TraceRun> {
  const base = row.split(':')[0]!;
  return traceOnce(file, { ...f, ...VARIANTS[row] }, base, new Progress(false));
}

function printCompare(result: CompareReportResult, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const records = result.records;
  const reasons = [...new Set(result.modes.flatMap((m) => Object.keys(m.exits)))].sort();
  process.stdout.write(`${result.source}: ${records} records, CLEAN every ${result.clean_every}\n`);
  process.stdout.write(
    `${renderTable(
      ['mode', 'dirty', ...reasons, 'tracking cycles / M records', 'harvest cycles', 'tracking KiB'],
      result.modes.map((m) => [m.mode, m.dirty_total, ...reasons.map((k) => m.exits[k] ?? 0), m.tracking_cycles_per_million_records, m.harvest_cycles, (m.tracking_bytes / 1024).toFixed(1)]),
    )}\n`,
  );
}

/** vCPU cycles of the same source with no dirty tracking, on `format`. */
export async function baselineCycles(trace: string | undefined, f: TraceFlags, format: 'ept' | 'npt' | 'arm'): Promise<number> {
  const g = parseGuestFlags(f, trace !== undefined);
  const guest = createGuest({ memBytes: g.memBytes, vcpus: g.vcpus, mode: null, format, addressing: g.addressing, pageSize: g.pageSize });
  const source = openSource({ trace, workload: f.workload, pageCount: g.memBytes / 4096, count: g.count, seed: g.seed });
  const { records } = await replay(guest, source, { cleanEvery: Infinity });
  requireRecords(trace, records);
  return guest.domain.totalStats()[STAT_CYCLES]!;
}
