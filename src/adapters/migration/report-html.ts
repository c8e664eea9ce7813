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

export interface ReportMeta {
  readonly mode?: string;
  readonly workload?: string;
  readonly dirtyRate?: number;
  readonly memBytes?: number;
  readonly title?: string;
}

function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function fmt(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return '—';
  return Math.abs(n) >= 1000 ? Math.round(n).toLocaleString('en-US') : n.toFixed(digits);
}

/** A "nice" axis maximum ≥ v (1, 2, 5 × 10^k). */
function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

interface Series {
  readonly name: string;
  readonly color: string;
  readonly values: readonly number[];
}

/** Grouped bar chart, one group per round. */
function barChart(title: string, unit: string, labels: readonly string[], series: readonly Series[]): string {
  const W = 720, H = 260, L = 64, R = 16, T = 28, B = 40;
  const plotW = W - L - R, plotH = H - T - B;
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const groupW = plotW / Math.max(1, labels.length);
  const barW = Math.max(2, Math.min(40, (groupW * 0.8) / series.length));
  const y = (v: number) => T + plotH - (v / max) * plotH;
  const parts: string[] = [];
  parts.push(`<text x="${L}" y="16" class="t">${esc(title)}</text>`);
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`);
    parts.push(`<text x="${L - 6}" y="${y(v) + 4}" class="ax" text-anchor="end">${esc(fmt(v, v < 10 ? 1 : 0))}</text>`);
  }
  labels.forEach((lab, g) => {
    const gx = L + g * groupW + (groupW - barW * series.length) / 2;
    series.forEach((s, k) => {
      const v = s.values[g] ?? 0;
      const x = gx + k * barW;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(barW - 1).toFixed(1)}" height="${(T + plotH - y(v)).toFixed(1)}" fill="${s.color}"><title>${esc(`${s.name}, round ${lab}: ${fmt(v, 2)} ${unit}`)}</title></rect>`,
      );
    });
    parts.push(`<text x="${(L + g * groupW + groupW / 2).toFixed(1)}" y="${H - B + 16}" class="ax" text-anchor="middle">${esc(lab)}</text>`);
  });
  parts.push(`<text x="${L + plotW / 2}" y="${H - 6}" class="ax" text-anchor="middle">round (S = stop-and-copy)</text>`);
  parts.push(`<text x="14" y="${T + plotH / 2}" class="ax" text-anchor="middle" transform="rotate(-90 14 ${T + plotH / 2})">${esc(unit)}</text>`);
  series.forEach((s, k) => {
    const lx = W - R - 160 * (series.length - k);
    parts.push(`<rect x="${lx}" y="6" width="10" height="10" fill="${s.color}"/><text x="${lx + 14}" y="15" class="ax">${esc(s.name)}</text>`);
  });
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">${parts.join('')}</svg>`;
}

/** One horizontal stacked bar. */
function stackedBar(title: string, parts: readonly { name: string; ms: number; color: string }[]): string {
  const W = 720, H = 96, L = 16, R = 16;
  const total = parts.reduce((n, p) => n + Math.max(0, p.ms), 0);
  const out: string[] = [`<text x="${L}" y="16" class="t">${esc(title)} — ${esc(fmt(total, 3))} ms</text>`];
  let x = L;
  for (const p of parts) {
    const w = total > 0 ? (Math.max(0, p.ms) / total) * (W - L - R) : 0;
    out.push(`<rect x="${x.toFixed(1)}" y="26" width="${w.toFixed(1)}" height="28" fill="${p.color}"><title>${esc(`${p.name}: ${fmt(p.ms, 3)} ms`)}</title></rect>`);
    x += w;
  }
  parts.forEach((p, k) => {
    const lx = L + k * 235;
    out.push(`<rect x="${lx}" y="66" width="10" height="10" fill="${p.color}"/><text x="${lx + 14}" y="75" class="ax">${esc(`${p.name}: ${fmt(p.ms, 3)} ms`)}</text>`);
  });
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">${out.join('')}</svg>`;
}

export function renderReport(r: MigrationResult, meta: ReportMeta = {}): string {
  const labels = r.rounds.map((x) => (x.stop_and_copy ? `${x.round}S` : String(x.round)));
  const MiB = 1024 * 1024;
  const s = r.downtime_split;
  const kv = (rows: [string, unknown][]) =>
    `<table class="kv">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>`;
  const params = Object.entries(r.policy_params).map(([k, v]) => [k, v] as [string, unknown]);
  const roundsTable = `<table class="rounds"><tr><th>round</th><th>dirty</th><th>pages sent</th><th>skipped (unchanged)</th><th>zero</th><th>MiB</th><th>ms</th></tr>${r.rounds
    .map(
      (x) =>
        `<tr${x.stop_and_copy ? ' class="stop"' : ''}><td>${x.round}${x.stop_and_copy ? ' (stop-and-copy)' : ''}</td><td>${x.dirty}</td><td>${x.pages_sent}</td><td>${x.skipped}</td><td>${x.zero}</td><td>${(x.bytes / MiB).toFixed(2)}</td><td>${x.duration_ms.toFixed(2)}</td></tr>`,
    )
    .join('')}</table>`;
  const verifiedBadge = r.verified
    ? '<span class="ok">VERIFIED — destination digest equals source digest</span>'
    : '<span class="bad">NOT VERIFIED — digests differ; the source guest was resumed</span>';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(meta.title ?? 'memvisor migration report')}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:760px;color:#1d232a}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.t{font:600 13px system-ui,sans-serif;fill:#1d232a}.ax{font:11px system-ui,sans-serif;fill:#4b5560}.grid{stroke:#e3e7eb}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #e3e7eb;text-align:right}
.kv th{text-align:left;font-weight:500;color:#4b5560}.kv td{text-align:left;font-family:ui-monospace,monospace}
tr.stop td{background:#fff4e5}.ok{color:#0a7a33;font-weight:600}.bad{color:#b3261e;font-weight:600}
.note{color:#4b5560;font-size:12px}
</style></head><body>
<h1>${esc(meta.title ?? 'Live migration report')}</h1>
<p>${verifiedBadge}</p>
${kv([
  ['policy', r.policy],
  ['clock', r.clock],
  ['link', `${r.bandwidth_mib_s === null ? 'uncapped' : `${fmt(r.bandwidth_mib_s)} MiB/s`}, latency ${fmt(r.latency_ms, 2)} ms`],
  ['guest', `${r.page_count} pages (${fmt((r.page_count * 4096) / MiB)} MiB), ${r.vcpu_count} vCPU`],
  ...(meta.mode !== undefined ? ([['dirty-tracking mode', meta.mode]] as [string, unknown][]) : []),
  ...(meta.workload !== undefined ? ([['workload', `${meta.workload}${meta.dirtyRate !== undefined ? ` @ ${meta.dirtyRate} pages/s` : ''}`]] as [string, unknown][]) : []),
  ['total time', `${fmt(r.total_ms, 2)} ms`],
  ['downtime', `${fmt(r.downtime_ms, 3)} ms`],
  ['pages sent', `${r.pages_sent} (${r.zero_pages} as ZERO flags; ${r.skipped} dirty but unchanged, skipped)`],
  ['bytes sent', `${fmt(r.bytes_sent / MiB, 2)} MiB`],
  ['source digest', r.source_digest],
  ['destination digest', r.dest_digest],
])}
<h2>Policy parameters</h2>
${kv(params)}
<h2>Dirty pages per round</h2>
${barChart('Pages per round', 'pages', labels, [
  { name: 'dirty (CLEAN)', color: '#d9822b', values: r.rounds.map((x) => x.dirty) },
  { name: 'sent', color: '#2b6cb0', values: r.rounds.map((x) => x.pages_sent) },
  { name: 'skipped (unchanged)', color: '#9aa5b1', values: r.rounds.map((x) => x.skipped) },
])}
${barChart('Bytes per round', 'MiB', labels, [{ name: 'MiB on the wire', color: '#2f855a', values: r.rounds.map((x) => x.bytes / MiB) }])}
<h2>Downtime</h2>
${stackedBar('Downtime split', [
  { name: 'final dirty pages', ms: s.final_pages_ms, color: '#c05621' },
  { name: 'vCPU state', ms: s.vcpu_state_ms, color: '#6b46c1' },
  { name: 'verification / receiver', ms: s.verification_ms, color: '#2c7a7b' },
])}
<p class="note">Verification covers the source digest (${fmt(s.source_digest_ms, 3)} ms), END, the receiver's digest of its memory (${fmt(s.receiver_digest_ms, 3)} ms, its clock) and the verdict's trip back.${r.clock === 'virtual' ? ' Under the virtual clock only link time is modelled; digest computation is not counted.' : ''}</p>
<h2>Rounds</h2>
${roundsTable}
<p class="note">Round 0 sends every guest page; round i &gt; 0 sends the pages the CLEAN at its start returned, minus those whose content hash is unchanged since their last send.</p>
</body></html>
`;
}

export function writeReport(file: string, r: MigrationResult, meta: ReportMeta = {}): void {
  writeFileSync(file, renderReport(r, meta));
}
