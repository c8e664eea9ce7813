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
import { traceOnce, type TraceFlags, type TraceRun } from './trace.ts';

export interface CompareFlags extends TraceFlags {
  modes?: string;
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
  const trace = file === '' ? undefined : file;
  if (trace === undefined && f.workload === undefined) throw new UsageError('give a trace file, or --workload NAME');
  // Every mode (and each format's baseline) reads the trace again from the start; stdin can be read once.
  if (trace === '-') throw new UsageError('compare reads the trace once per mode, so it needs a file, not - (stdin)');
  claimReportFile(f.report);
  const progress = new Progress(!f.json);
  const baselines = new Map<string, number>();
  const runs: { row: string; run: TraceRun; baseline: number }[] = [];
  for (const row of rows) {
    const base = row.split(':')[0]!;
    const format = modeEntry(base).format;
    if (!baselines.has(format)) baselines.set(format, await baselineCycles(trace, f, format, progress));
    const run = await traceOnce(trace, { ...f, ...VARIANTS[row] }, base, progress);
    runs.push({ row, run, baseline: baselines.get(format)! });
    progress.line(`${row}: done`);
  }
  const records = runs[0]?.run.records ?? 0;
  const perMillion = (c: number): number => (records > 0 ? Math.round((c / records) * 1e6) : 0);
  const result = {
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
  printCompare(result, f.json === true);
  if (f.report !== undefined) {
    const { renderCompareReport } = await import('../../adapters/report/trace-report.ts');
    writeReportFile(f.report, renderCompareReport(result));
  }
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
async function baselineCycles(trace: string | undefined, f: TraceFlags, format: 'ept' | 'npt' | 'arm', progress: Progress): Promise<number> {
  const g = parseGuestFlags(f, trace !== undefined);
  const guest = createGuest({ memBytes: g.memBytes, vcpus: g.vcpus, mode: null, format, addressing: g.addressing, pageSize: g.pageSize });
  const source = openSource({ trace, workload: f.workload, pageCount: g.memBytes / 4096, count: g.count, seed: g.seed });
  const { records } = await replay(guest, source, { cleanEvery: Infinity });
  requireRecords(trace, records);
  progress.line(`baseline (${format}, no tracking): done`);
  return guest.domain.totalStats()[STAT_CYCLES]!;
}
