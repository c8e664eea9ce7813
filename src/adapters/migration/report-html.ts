/**
 * Static HTML report of one migration: one self-contained file (inline CSS
 * and SVG drawn here, no scripts, no external assets) with
 *   - dirty pages vs pages sent per round, and bytes per round,
 *   - the downtime and how it splits (final dirty pages, vCPU state,
 *     verification: source digest, END, receiver digest, verdict),
 *   - the policy and its parameters, the link and clock,
 *   - the verified flag and both digests, and the per-round table.
 */
import { writeFileSync } from 'node:fs';
import type { MigrationResult } from '../../core/migration/sender.ts';
import { barChart, dataTable, esc, fmt, htmlPage, kvTable, stackedBar } from '../report/html.ts';

export interface ReportMeta {
  readonly mode?: string;
  readonly workload?: string;
  readonly dirtyRate?: number;
  readonly memBytes?: number;
  readonly title?: string;
}

const STOP_AXIS = 'round (S = stop-and-copy)';

export function renderReport(r: MigrationResult, meta: ReportMeta = {}): string {
  const labels = r.rounds.map((x) => (x.stop_and_copy ? `${x.round}S` : String(x.round)));
  const MiB = 1024 * 1024;
  const s = r.downtime_split;
  const params = Object.entries(r.policy_params).map(([k, v]) => [k, v] as [string, unknown]);
  const roundsTable = dataTable(
    ['round', 'dirty', 'pending', 'pages sent', 'skipped re-dirtied', 'skipped unchanged', 'zero', 'bitmap syncs', 'MiB', 'ms'],
    r.rounds.map((x) => [
      `${x.round}${x.stop_and_copy ? ' (stop-and-copy)' : ''}`, x.dirty, x.pending, x.pages_sent, x.skipped_redirtied, x.skipped_unchanged, x.zero, x.bitmap_syncs,
      (x.bytes / MiB).toFixed(2), x.duration_ms.toFixed(2),
    ]),
    (i) => (r.rounds[i]!.stop_and_copy ? 'stop' : undefined),
  );
  const verifiedBadge = r.verified
    ? '<span class="ok">VERIFIED — destination digest equals source digest</span>'
    : '<span class="bad">NOT VERIFIED — digests differ; the source guest was resumed</span>';
  return htmlPage(meta.title ?? 'memvisor migration report', `<h1>${esc(meta.title ?? 'Live migration report')}</h1>
<p>${verifiedBadge}</p>
${kvTable([
  ['policy', r.policy],
  ['clock', r.clock],
  ['link', `${r.link_mib_s === null ? 'the real socket' : `${fmt(r.link_mib_s)} MiB/s`}, latency ${fmt(r.latency_ms, 2)} ms`],
  ['rate cap', r.bandwidth_mib_s === null ? 'none' : `${fmt(r.bandwidth_mib_s)} MiB/s`],
  ['guest', `${r.page_count} pages (${fmt((r.page_count * 4096) / MiB)} MiB), ${r.vcpu_count} vCPU`],
  ...(meta.mode !== undefined ? ([['dirty-tracking mode', meta.mode]] as [string, unknown][]) : []),
  ...(meta.workload !== undefined ? ([['workload', `${meta.workload}${meta.dirtyRate !== undefined ? ` @ ${meta.dirtyRate} pages/s` : ''}`]] as [string, unknown][]) : []),
  ['total time', `${fmt(r.total_ms, 2)} ms`],
  ['downtime', `${fmt(r.downtime_ms, 3)} ms`],
  ['pages sent', `${r.pages_sent} (${r.zero_pages} as ZERO flags); skipped: ${r.skipped_redirtied} dirtied again mid-pass, ${r.skipped_unchanged} unchanged`],
  ['bitmap syncs', `${r.bitmap_syncs}${r.peeks > 0 ? ` (and ${r.peeks} PEEKs)` : ''}`],
  ['bytes sent', `${fmt(r.bytes_sent / MiB, 2)} MiB`],
  ['source digest', r.source_digest],
  ['destination digest', r.dest_digest],
])}
<h2>Policy parameters</h2>
${kvTable(params)}
<h2>Dirty pages per round</h2>
${barChart('Pages per round', 'pages', labels, [
  { name: 'dirty (CLEAN)', color: '#d9822b', values: r.rounds.map((x) => x.dirty) },
  { name: 'sent', color: '#2b6cb0', values: r.rounds.map((x) => x.pages_sent) },
  { name: 'skipped', color: '#9aa5b1', values: r.rounds.map((x) => x.skipped) },
], STOP_AXIS)}
${barChart('Bytes per round', 'MiB', labels, [{ name: 'MiB on the wire', color: '#2f855a', values: r.rounds.map((x) => x.bytes / MiB) }], STOP_AXIS)}
<h2>Downtime</h2>
${stackedBar('Downtime split', [
  { name: 'final dirty pages', ms: s.final_pages_ms, color: '#c05621' },
  { name: 'vCPU state', ms: s.vcpu_state_ms, color: '#6b46c1' },
  { name: 'verification / receiver', ms: s.verification_ms, color: '#2c7a7b' },
])}
<p class="note">Verification covers the source digest (${fmt(s.source_digest_ms, 3)} ms), END, the receiver's digest of its memory (${fmt(s.receiver_digest_ms, 3)} ms, its clock) and the verdict's trip back.${r.clock === 'virtual' ? ' Under the virtual clock only link time is modelled; digest computation is not counted.' : ''}</p>
<h2>Rounds</h2>
${roundsTable}
<p class="note">Round 0 considers every guest page; round i &gt; 0 the pages the harvest at its start returned (QEMU: plus what the last round left pending), minus those the saver skips: dirtied again since the pass began (legacy Xen, Clark) or unchanged by content hash (--skip-unchanged, adaptive).</p>`);
}

export function writeReport(file: string, r: MigrationResult, meta: ReportMeta = {}): void {
  writeFileSync(file, renderReport(r, meta));
}
