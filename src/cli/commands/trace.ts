/**
 * `memvisor trace`: replays a trace (or workload) under one dirty-tracking
 * mode with log-dirty rounds, and prints the rounds (table, or the contract's
 * JSON: {mode, records, rounds[{records, dirty, fault_count, exits, cycles}], totals}).
 */
import type { ModeOptions } from '../../core/modes/dirty-mode.ts';
import {
  KVM_DIRTY_RING_MAX_ENTRIES, KVM_DIRTY_RING_MIN_ENTRIES, KVM_DIRTY_RING_RSVD_ENTRIES, KVM_PML_DIRTY_LOG_SIZE,
} from '../../core/logdirty/kvm-dirty-ring.ts';
import { QEMU_CLEAR_BITMAP_SHIFT_DEFAULT, QEMU_CLEAR_BITMAP_SHIFT_MAX, QEMU_CLEAR_BITMAP_SHIFT_MIN } from '../../core/modes/kvm-bitmap.ts';
import { KVM_RING_DEFAULT_ENTRIES as KVM_DIRTY_RING_DEFAULT } from '../../core/modes/kvm-ring.ts';
import { createGuest } from '../../core/runner/guest.ts';
import { replay, totalsOf, type Round } from '../../core/runner/replay.ts';
import { UsageError } from '../errors.ts';
import { choiceFlag, intFlag, modeFlag, parseGuestFlags } from '../options.ts';
import { Progress, renderTable } from '../output.ts';
import { claimReportFile, writeReportFile } from '../report-file.ts';
import { openSource, requireRecords } from '../source.ts';

export interface TraceFlags {
  mode?: string;
  cleanEvery?: string;
  vcpus?: string;
  pageSize?: string;
  addressing?: string;
  mem?: string;
  workload?: string;
  count?: string;
  seed?: string;
  pmlFlush?: string;
  armDirtySet?: string;
  kvmPml?: string;
  kvmManualProtect?: boolean;
  kvmInitiallySet?: boolean;
  kvmClearShift?: string;
  ringEntries?: string;
  shadowPool?: string;
  shadowPoolPages?: string;
  json?: boolean;
  report?: string;
}

/**
 * --ring-entries: KVM takes a power of two in [256, 65536] (KVM_DIRTY_RING_MIN/MAX_ENTRIES)
 * holding more than its reserved entries: 64, plus the 512 of a PML buffer with PML.
 */
function ringEntriesFlag(text: string, pml: boolean): number {
  const n = intFlag('--ring-entries', text, KVM_DIRTY_RING_DEFAULT, KVM_DIRTY_RING_MIN_ENTRIES, KVM_DIRTY_RING_MAX_ENTRIES);
  if ((n & (n - 1)) !== 0) throw new UsageError(`--ring-entries: ${text} is not a power of two (KVM rings are 256, 512, … 65536 entries)`);
  const reserved = KVM_DIRTY_RING_RSVD_ENTRIES + (pml ? KVM_PML_DIRTY_LOG_SIZE : 0);
  if (n < reserved) {
    throw new UsageError(`--ring-entries: ${n} is below the ${reserved} entries KVM reserves with PML (64 + a 512-entry PML buffer): give 1024 or more, or --kvm-pml off`);
  }
  return n;
}

export function modeOptionsFrom(f: TraceFlags): ModeOptions {
  const kvmPml = choiceFlag('--kvm-pml', f.kvmPml, ['on', 'off'] as const, 'on') === 'on';
  return {
    pmlFlush: choiceFlag('--pml-flush', f.pmlFlush, ['on-demand', 'every-exit'] as const, 'on-demand'),
    armDirtySet: choiceFlag('--arm-dirty-set', f.armDirtySet, ['bitmap', 'list'] as const, 'bitmap'),
    kvmPml,
    kvmManualProtect: f.kvmManualProtect === true || f.kvmInitiallySet === true,
    kvmInitiallySet: f.kvmInitiallySet === true,
    kvmClearChunkPages: 2 ** intFlag('--kvm-clear-shift', f.kvmClearShift, QEMU_CLEAR_BITMAP_SHIFT_DEFAULT, QEMU_CLEAR_BITMAP_SHIFT_MIN, QEMU_CLEAR_BITMAP_SHIFT_MAX),
    ...(f.ringEntries !== undefined ? { ringEntries: ringEntriesFlag(f.ringEntries, kvmPml) } : {}),
    shadowPool: choiceFlag('--shadow-pool', f.shadowPool, ['xen', 'prealloc'] as const, 'xen'),
    ...(f.shadowPoolPages !== undefined ? { shadowPoolPages: intFlag('--shadow-pool-pages', f.shadowPoolPages, 0, 8, 2 ** 31) } : {}),
  };
}

export interface TraceRun {
  readonly mode: string;
  readonly records: number;
  readonly rounds: Round[];
  readonly totals: ReturnType<typeof totalsOf> & { tracking_bytes: number; host_bytes: number };
}

/** Runs one mode over the source; shared by `trace` and `compare`. */
export async function traceOnce(file: string | undefined, f: TraceFlags, mode: string, progress: Progress): Promise<TraceRun> {
  const isTrace = file !== undefined;
  if (!isTrace && f.workload === undefined) throw new UsageError('give a trace file (or - for stdin), or --workload NAME');
  // Identity is every mode's default, so the same trace gives the same dirty set in every mode;
  // shadow mode then shadows a guest with paging off (Xen's unpaged identity map); --addressing
  // paged gives it real guest page tables to shadow.
  const guestFlags = f;
  const { memBytes, vcpus, count, seed, addressing, pageSize } = parseGuestFlags(guestFlags, isTrace);
  const cleanEvery = intFlag('--clean-every', f.cleanEvery, 100_000);
  const guest = createGuest({ memBytes, vcpus, mode, addressing, pageSize, modeOptions: modeOptionsFrom(f) });
  const source = openSource({ trace: file, workload: f.workload, pageCount: memBytes / 4096, count, seed });
  progress.start(mode, isTrace ? 0 : count);
  const result = await replay(guest, source, {
    cleanEvery,
    onProgress: (n) => progress.update(n, isTrace ? 'records' : ''),
    // A round of no records closes only an empty source, which requireRecords refuses below.
    onRound: (r, i) => r.records > 0 && progress.line(`${mode} round ${i}: ${r.records} records, ${r.dirty} dirty, exits ${JSON.stringify(r.exits)}`),
  });
  progress.stop();
  requireRecords(file, result.records);
  const totals = {
    ...totalsOf(result.rounds),
    tracking_bytes: guest.mode?.trackingBytes() ?? 0,
    host_bytes: guest.domain.hostBytes,
  };
  return { mode, records: result.records, rounds: result.rounds, totals };
}

export async function traceCommand(file: string, f: TraceFlags): Promise<void> {
  const mode = modeFlag(f.mode, 'ept-wp');
  if (f.mode === undefined) throw new UsageError('--mode is required (one of: ept-wp, ept-pml, npt-wp, arm-wp, kvm-bitmap, kvm-ring, shadow)');
  claimReportFile(f.report);
  const trace = file === '' ? undefined : file;
  const run = await traceOnce(trace, f, mode, new Progress(!f.json));
  printTrace(run, mode, f.json === true);
  if (f.report !== undefined) {
    const { renderTraceReport } = await import('../../adapters/report/trace-report.ts');
    writeReportFile(f.report, renderTraceReport(run, { source: trace ?? `workload ${f.workload}`, cleanEvery: intFlag('--clean-every', f.cleanEvery, 100_000) }));
  }
}

function printTrace(run: TraceRun, mode: string, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(run)}\n`);
    return;
  }
  const reasons = [...new Set(run.rounds.flatMap((r) => Object.keys(r.exits)))].sort();
  const rows: (string | number)[][] = run.rounds.map((r, i) => [i, r.records, r.dirty, r.fault_count, ...reasons.map((k) => r.exits[k] ?? 0), r.cycles, r.harvest_cycles]);
  const t = run.totals;
  rows.push(['total', t.records, t.dirty, t.fault_count, ...reasons.map((k) => t.exits[k] ?? 0), t.cycles, t.harvest_cycles]);
  process.stdout.write(`mode ${mode}: ${run.records} records, ${run.rounds.length} rounds\n`);
  process.stdout.write(`${renderTable(['round', 'records', 'dirty', 'fault_count', ...reasons, 'cycles', 'harvest cycles'], rows)}\n`);
}
