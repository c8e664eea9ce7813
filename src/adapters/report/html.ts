/**
 * The pieces every static HTML report is made of: escaping, number
 * formatting, SVG bar charts drawn here (no scripts, no external assets), a
 * key/value table, a data table and the page around them. One file per
 * report uses them: migration/report-html.ts, report/trace-report.ts.
 */

export function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export function fmt(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return '—';
  return Math.abs(n) >= 1000 ? Math.round(n).toLocaleString('en-US') : n.toFixed(digits);
}

/** An axis tick: short enough for the margin (12.5M, 250k, 7.5). */
function axisLabel(v: number): string {
  const short = (x: number) => String(Number(x.toPrecision(3)));
  if (v >= 1e6) return `${short(v / 1e6)}M`;
  if (v >= 1e4) return `${short(v / 1e3)}k`;
  return short(v);
}

/**
 * A "nice" axis maximum ≥ v, close above it: m × 10^k with m in 1, 1.2, 1.5,
 * 2, 2.5, 3, 4, 5, 6, 8 (a quarter of each is a short tick label). 1-2-5 steps
 * left up to 2.5× of the plot empty (262k pages drawn on a 500k axis).
 */
export function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of NICE_STEPS) if (m * p >= v * (1 - 1e-12)) return Number((m * p).toPrecision(12));
  return 10 * p;
}

const NICE_STEPS = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];

/** A bar's value in its tooltip: counts as integers (860 pages), other values with two decimals. */
function barValue(v: number): string {
  return Number.isInteger(v) ? fmt(v, 0) : fmt(v, 2);
}

export interface Series {
  readonly name: string;
  readonly color: string;
  readonly values: readonly number[];
}

/** Grouped bar chart: one group per label (a round, a mode), one bar per series. */
export function barChart(title: string, unit: string, labels: readonly string[], series: readonly Series[], xLabel = 'round'): string {
  // Long labels (mode names) are slanted, with room below for them; many groups show every k-th label.
  const slant = labels.some((l) => l.length > 6);
  const maxLen = Math.max(0, ...labels.map((l) => l.length));
  // Up to three series: the legend sits top right; more: rows of five under the title.
  const legendRows = series.length > 3 ? Math.ceil(series.length / 5) : 0;
  const W = 720, L = 64, R = 16, T = 28 + 16 * legendRows, B = slant ? 40 + Math.min(80, maxLen * 5) : 40, H = 192 + T + B;
  const every = Math.max(1, Math.ceil(labels.length / 24));
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
    parts.push(`<text x="${L - 6}" y="${y(v) + 4}" class="ax" text-anchor="end">${esc(axisLabel(v))}</text>`);
  }
  labels.forEach((lab, g) => {
    const gx = L + g * groupW + (groupW - barW * series.length) / 2;
    series.forEach((s, k) => {
      const v = s.values[g] ?? 0;
      const x = gx + k * barW;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(barW - 1).toFixed(1)}" height="${(T + plotH - y(v)).toFixed(1)}" fill="${s.color}"><title>${esc(`${s.name}, ${xLabel.split(' ')[0]} ${lab}: ${barValue(v)} ${unit}`)}</title></rect>`,
      );
    });
    if (g % every !== 0) return;
    const lx = (L + g * groupW + groupW / 2).toFixed(1);
    const ly = T + plotH + 14;
    parts.push(
      slant
        ? `<text x="${lx}" y="${ly}" class="ax" text-anchor="end" transform="rotate(-35 ${lx} ${ly})">${esc(lab)}</text>`
        : `<text x="${lx}" y="${ly}" class="ax" text-anchor="middle">${esc(lab)}</text>`,
    );
  });
  parts.push(`<text x="${L + plotW / 2}" y="${H - 6}" class="ax" text-anchor="middle">${esc(xLabel)}</text>`);
  parts.push(`<text x="14" y="${T + plotH / 2}" class="ax" text-anchor="middle" transform="rotate(-90 14 ${T + plotH / 2})">${esc(unit)}</text>`);
  series.forEach((s, k) => {
    const lx = legendRows === 0 ? W - R - 160 * (series.length - k) : L + (k % 5) * 130;
    const ly = legendRows === 0 ? 6 : 24 + 16 * Math.floor(k / 5);
    parts.push(`<rect x="${lx}" y="${ly}" width="10" height="10" fill="${s.color}"/><text x="${lx + 14}" y="${ly + 9}" class="ax">${esc(s.name)}</text>`);
  });
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">${parts.join('')}</svg>`;
}

/** Line chart: x positions are the labels (evenly spaced, in order), one polyline with dots per series. */
export function lineChart(title: string, unit: string, labels: readonly string[], series: readonly Series[], xLabel: string): string {
  const legendRows = Math.ceil(series.length / 5);
  const W = 720, L = 64, R = 16, T = 28 + 16 * legendRows, B = 40, H = 192 + T + B;
  const plotW = W - L - R, plotH = H - T - B;
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values.filter(Number.isFinite))));
  const x = (i: number) => (labels.length <= 1 ? L + plotW / 2 : L + 12 + (i * (plotW - 24)) / (labels.length - 1));
  const y = (v: number) => T + plotH - (v / max) * plotH;
  const parts: string[] = [`<text x="${L}" y="16" class="t">${esc(title)}</text>`];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`);
    parts.push(`<text x="${L - 6}" y="${y(v) + 4}" class="ax" text-anchor="end">${esc(axisLabel(v))}</text>`);
  }
  labels.forEach((lab, i) => parts.push(`<text x="${x(i).toFixed(1)}" y="${T + plotH + 14}" class="ax" text-anchor="middle">${esc(lab)}</text>`));
  for (const s of series) {
    const pts = s.values.map((v, i) => [x(i), v] as const).filter(([, v]) => Number.isFinite(v));
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.map(([px, v]) => `${px.toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`);
    for (const [px, v] of pts) parts.push(`<circle cx="${px.toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(`${s.name}: ${fmt(v, 2)} ${unit}`)}</title></circle>`);
  }
  parts.push(`<text x="${L + plotW / 2}" y="${H - 6}" class="ax" text-anchor="middle">${esc(xLabel)}</text>`);
  parts.push(`<text x="14" y="${T + plotH / 2}" class="ax" text-anchor="middle" transform="rotate(-90 14 ${T + plotH / 2})">${esc(unit)}</text>`);
  series.forEach((s, k) => {
    const lx = L + (k % 5) * 130;
    const ly = 24 + 16 * Math.floor(k / 5);
    parts.push(`<rect x="${lx}" y="${ly}" width="10" height="10" fill="${s.color}"/><text x="${lx + 14}" y="${ly + 9}" class="ax">${esc(s.name)}</text>`);
  });
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">${parts.join('')}</svg>`;
}

/** One horizontal stacked bar. */
export function stackedBar(title: string, parts: readonly { name: string; ms: number; color: string }[]): string {
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

/** A two-column table of labels and values. */
export function kvTable(rows: readonly (readonly [string, unknown])[]): string {
  return `<table class="kv">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>`;
}

/** A data table: header cells, then rows (numbers right-aligned by the CSS); `rowClass` marks rows. */
export function dataTable(head: readonly string[], rows: readonly (readonly unknown[])[], rowClass?: (i: number) => string | undefined): string {
  const tr = (cells: readonly unknown[], i: number) => {
    const c = rowClass?.(i);
    return `<tr${c ? ` class="${c}"` : ''}>${cells.map((x) => `<td>${esc(Number.isInteger(x) ? (x as number).toLocaleString('en-US') : x)}</td>`).join('')}</tr>`;
  };
  return `<div class="wide"><table class="rounds"><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows.map(tr).join('')}</table></div>`;
}

/** The self-contained page: title, inline CSS, body. */
export function htmlPage(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:760px;color:#1d232a}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.t{font:600 13px system-ui,sans-serif;fill:#1d232a}.ax{font:11px system-ui,sans-serif;fill:#4b5560}.grid{stroke:#e3e7eb}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #e3e7eb;text-align:right}
.kv th{text-align:left;font-weight:500;color:#4b5560}.kv td{text-align:left;font-family:ui-monospace,monospace}
tr.stop td{background:#fff4e5}.ok{color:#0a7a33;font-weight:600}.bad{color:#b3261e;font-weight:600}
.note{color:#4b5560;font-size:12px}
.wide{overflow-x:auto}.rounds td,.rounds th{font-size:12px;padding:3px 6px}
</style></head><body>
${body}
</body></html>
`;
}

/** Colours for up to eight series, in order. */
export const PALETTE = ['#2b6cb0', '#d9822b', '#2f855a', '#6b46c1', '#c05621', '#2c7a7b', '#b83280', '#718096'] as const;
