/**
 * `sweep`'s report.html: for each headline number of the points, a line
 * chart against the first varied flag, one line per value of the second
 * (one line when only one flag varies); a point of a line is the mean over
 * the seeds and any further varied flags. Then the table of every point.
 * Built from the same pieces as the trace and migration reports (html.ts).
 */
import { dataTable, esc, htmlPage, kvTable, lineChart, PALETTE } from './html.ts';

export interface SweepReportInput {
  readonly command: string;
  readonly grid: string;
  /** Varied flags in grid order, then 'seed' when seeded. */
  readonly axes: readonly string[];
  readonly rows: readonly { readonly point: number; readonly flags: Readonly<Record<string, unknown>>; readonly metrics: Readonly<Record<string, number | boolean>> }[];
}

const key = (v: unknown): string => String(v);

export function renderSweepReport(s: SweepReportInput): string {
  const metrics: string[] = [];
  for (const r of s.rows) for (const k of Object.keys(r.metrics)) if (!metrics.includes(k)) metrics.push(k);
  const varied = s.axes.filter((a) => a !== 'seed');
  const xAxis = varied[0]!;
  const lineAxis = varied[1];
  const distinct = (axis: string): string[] => [...new Set(s.rows.map((r) => key(r.flags[axis])))];
  const xs = distinct(xAxis);
  const lines = lineAxis === undefined ? [''] : distinct(lineAxis);
  const charts = metrics.map((m) => {
    const series = lines.map((lv, k) => ({
      name: lineAxis === undefined ? m : `${lineAxis}=${lv}`,
      color: PALETTE[k % PALETTE.length]!,
      values: xs.map((xv) => {
        const vals = s.rows
          .filter((r) => key(r.flags[xAxis]) === xv && (lineAxis === undefined || key(r.flags[lineAxis]) === lv))
          .map((r) => Number(r.metrics[m] ?? NaN))
          .filter(Number.isFinite);
        return vals.length === 0 ? NaN : vals.reduce((a, b) => a + b, 0) / vals.length;
      }),
    }));
    return lineChart(m, m, xs, series, xAxis);
  });
  const title = `memvisor sweep: ${s.command}`;
  return htmlPage(
    title,
    `<h1>${esc(title)}</h1>
${kvTable([
  ['command', s.command],
  ['points', s.rows.length],
  ['varied', s.axes.join(', ')],
  ['grid', s.grid],
])}
<h2>Headline numbers against ${esc(xAxis)}</h2>
<p class="note">One line per value of ${esc(lineAxis ?? xAxis)}; each dot is the mean over ${esc(['seed', ...varied.slice(2)].filter((a) => s.axes.includes(a)).join(' and ') || 'its one point')}.</p>
${charts.join('\n')}
<h2>Points</h2>
${dataTable(['point', ...s.axes, ...metrics], s.rows.map((r) => [r.point, ...s.axes.map((a) => r.flags[a]), ...metrics.map((m) => r.metrics[m])]))}`,
  );
}
