/**
 * Static HTML reports of `memvisor trace` (one mode, round by round) and
 * `memvisor compare` (every mode on the same source): one self-contained file
 * each, built from report/html.ts. What they show is exactly what `--json`
 * prints; the charts make the differences visible:
 *   trace:   dirty pages (and shadow fault_count) per round, VM exits per
 *            round by reason, vCPU and harvest cycles per round;
 *   compare: tracking cycles per million records, harvest cycles, tracking
 *            memory and exits by reason, one bar group per mode.
 */
import type { Round } from '../../core/runner/replay.ts';
import { barChart, dataTable, fmt, htmlPage, kvTable, PALETTE, type Series } from './html.ts';

/** What `trace --json` prints (cli/commands/trace.ts TraceRun). */
export interface TraceReportRun {
  readonly mode: string;
  readonly records: number;
  readonly rounds: readonly Round[];
  readonly totals: Round & { readonly tracking_bytes: number; readonly host_bytes: number };
}

export interface TraceReportMeta {
  /** The trace file, or "workload NAME". */
  readonly source: string;
  readonly cleanEvery: number;
}

/** Rows of the per-round table; a longer run says how many were left out (the JSON has them all). */
const MAX_TABLE_ROWS = 400;

function reasonsOf(exits: readonly Record<string, number>[]): string[] {
  return [...new Set(exits.flatMap((e) => Object.keys(e)))].sort();
}

function exitSeries(reasons: readonly string[], exits: readonly Record<string, number>[]): Series[] {
  return reasons.map((k, i) => ({ name: k, color: PALETTE[i % PALETTE.length]!, values: exits.map((e) => e[k] ?? 0) }));
}

export function renderTraceReport(run: TraceReportRun, meta: TraceReportMeta): string {
  const labels = run.rounds.map((_, i) => String(i));
  const reasons = reasonsOf(run.rounds.map((r) => r.exits));
  const t = run.totals;
  const shown = run.rounds.slice(0, MAX_TABLE_ROWS);
  const rows: (string | number)[][] = shown.map((r, i) => [i, r.records, r.dirty, r.fault_count, ...reasons.map((k) => r.exits[k] ?? 0), r.cycles, r.harvest_cycles]);
  rows.push(['total', t.records, t.dirty, t.fault_count, ...reasons.map((k) => t.exits[k] ?? 0), t.cycles, t.harvest_cycles]);
  const anyFaults = run.rounds.some((r) => r.fault_count > 0);
  const title = `memvisor trace — ${run.mode}`;
  return htmlPage(
    title,
    `<h1>${title}</h1>
${kvTable([
  ['source', meta.source],
  ['dirty-tracking mode', run.mode],
  ['records', run.records.toLocaleString('en-US')],
  ['CLEAN every', `${meta.cleanEvery.toLocaleString('en-US')} records (${run.rounds.length} rounds)`],
  ['dirty pages (sum of stats.dirty_count)', t.dirty.toLocaleString('en-US')],
  ['vCPU cycles', t.cycles.toLocaleString('en-US')],
  ['harvest cycles', t.harvest_cycles.toLocaleString('en-US')],
  ['tracking memory', `${fmt(t.tracking_bytes / 1024)} KiB`],
  ['host memory', `${fmt(t.host_bytes / 1048576, 2)} MiB`],
])}
<h2>Dirty pages per round</h2>
${barChart('Pages dirtied per round (the CLEAN that closed it)', 'pages', labels, [
  { name: 'dirty', color: PALETTE[1], values: run.rounds.map((r) => r.dirty) },
  ...(anyFaults ? [{ name: 'fault_count', color: PALETTE[0], values: run.rounds.map((r) => r.fault_count) }] : []),
])}
<h2>VM exits per round</h2>
${reasons.length > 0 ? barChart('VM exits per round, by reason', 'exits', labels, exitSeries(reasons, run.rounds.map((r) => r.exits))) : '<p class="note">No VM exits.</p>'}
<h2>Cycles per round</h2>
${barChart('Cycles per round (millions)', 'M cycles', labels, [
  { name: 'vCPU', color: PALETTE[0], values: run.rounds.map((r) => r.cycles / 1e6) },
  { name: 'harvest', color: PALETTE[4], values: run.rounds.map((r) => r.harvest_cycles / 1e6) },
])}
<h2>Rounds</h2>
${dataTable(['round', 'records', 'dirty', 'fault_count', ...reasons, 'cycles', 'harvest cycles'], rows, (i) => (i === rows.length - 1 ? 'stop' : undefined))}
${run.rounds.length > MAX_TABLE_ROWS ? `<p class="note">The first ${MAX_TABLE_ROWS} of ${run.rounds.length} rounds; \`--json\` prints them all.</p>` : ''}
<p class="note">A round is the records between two CLEANs; its dirty count is what that CLEAN returned (stats.dirty_count; in the KVM modes the distinct pages its harvest returned). vCPU cycles include exit handling; harvest cycles are the toolstack operation that closed the round.</p>`,
  );
}

/** What `compare --json` prints (cli/commands/compare.ts). */
export interface CompareReportResult {
  readonly source: string;
  readonly records: number;
  readonly clean_every: number;
  readonly modes: readonly {
    readonly mode: string;
    readonly rounds: number;
    readonly dirty_total: number;
    readonly exits: Record<string, number>;
    readonly tracking_cycles_per_million_records: number;
    readonly harvest_cycles: number;
    readonly tracking_bytes: number;
  }[];
}

export function renderCompareReport(c: CompareReportResult): string {
  const labels = c.modes.map((m) => m.mode);
  const reasons = reasonsOf(c.modes.map((m) => m.exits));
  const one = (name: string, color: string, values: number[]): Series[] => [{ name, color, values }];
  const title = 'memvisor compare';
  return htmlPage(
    title,
    `<h1>${title}: one source, every dirty-tracking mode</h1>
${kvTable([
  ['source', c.source],
  ['records', c.records.toLocaleString('en-US')],
  ['CLEAN every', `${c.clean_every.toLocaleString('en-US')} records`],
  ['modes', c.modes.length],
])}
<h2>Tracking cost</h2>
${barChart('Tracking cycles per million records (mode − untracked baseline)', 'cycles / M records', labels, one('tracking', PALETTE[0], c.modes.map((m) => m.tracking_cycles_per_million_records)), 'mode')}
${barChart('Harvest cycles (all CLEANs / GETs)', 'M cycles', labels, one('harvest', PALETTE[4], c.modes.map((m) => m.harvest_cycles / 1e6)), 'mode')}
${barChart('Tracking memory', 'KiB', labels, one('tracking structures', PALETTE[2], c.modes.map((m) => m.tracking_bytes / 1024)), 'mode')}
<h2>VM exits</h2>
${reasons.length > 0 ? barChart('VM exits by reason', 'exits', labels, exitSeries(reasons, c.modes.map((m) => m.exits)), 'mode') : '<p class="note">No VM exits.</p>'}
<h2>Table</h2>
${dataTable(
  ['mode', 'rounds', 'dirty', ...reasons, 'tracking cycles / M records', 'harvest cycles', 'tracking KiB'],
  c.modes.map((m) => [m.mode, m.rounds, m.dirty_total, ...reasons.map((k) => m.exits[k] ?? 0), m.tracking_cycles_per_million_records, m.harvest_cycles, (m.tracking_bytes / 1024).toFixed(1)]),
)}
<p class="note">Every mode ran the same records with the same CLEAN points, so their dirty totals agree; tracking cycles are the mode's vCPU cycles minus an untracked run on the same p2m format (shadow's include shadow paging itself).</p>`,
  );
}
