/**
 * A sweep's output directory:
 *
 *   DIR/sweep.json     manifest: the grid (canonical), the shard, its points
 *   DIR/results.jsonl  one line per finished point: {point, flags, result}
 *   DIR/results.csv    one row per finished point: point, varied flags, seed, headline numbers
 *   DIR/report.html    charts of each headline number against the first varied flag
 *
 * results.jsonl is appended as each point finishes (in finishing order), so
 * an interrupted sweep keeps what it finished and `--resume` skips it; when
 * the sweep (or a merge) completes, both files are rewritten in point order,
 * which makes one run, and the merge of its shards, the same bytes.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.ts';
import type { SweepCommand } from '../parallel/tasks.ts';
import type { GridValue } from './grid.ts';

export interface Row {
  readonly point: number;
  /** Varied flags (and seed) of the point. */
  readonly flags: Readonly<Record<string, GridValue>>;
  /** What the command prints with --json. */
  readonly result: Record<string, unknown>;
}

export interface Manifest {
  readonly command: SweepCommand;
  /** gridIdentity(): shards merge only when theirs are equal. */
  readonly grid: string;
  readonly points_total: number;
  /** Varied flag names in grid order, then 'seed' when seeded: the CSV's columns. */
  readonly axes: readonly string[];
  readonly shard: readonly [number, number];
}

export const MANIFEST = 'sweep.json';
export const JSONL = 'results.jsonl';
export const CSV = 'results.csv';
export const REPORT = 'report.html';

export function readManifest(dir: string): Manifest | null {
  const p = join(dir, MANIFEST);
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as Manifest;
  } catch (e) {
    throw new UsageError(`${p}: not a sweep manifest (${(e as Error).message})`);
  }
}

export function writeManifest(dir: string, m: Manifest): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, MANIFEST), `${JSON.stringify(m)}\n`);
}

/** The rows a directory holds (a line cut short by an interruption is dropped: that point runs again). */
export function readRows(dir: string): Row[] {
  const p = join(dir, JSONL);
  if (!existsSync(p)) return [];
  const rows: Row[] = [];
  for (const line of readFileSync(p, 'utf8').split('\n')) {
    if (line === '') continue;
    try {
      rows.push(JSON.parse(line) as Row);
    } catch {
      // The last line of an interrupted write.
    }
  }
  return rows;
}

export function appendRow(dir: string, row: Row): void {
  appendFileSync(join(dir, JSONL), `${JSON.stringify(row)}\n`);
}

function csvCell(v: unknown): string {
  const s = typeof v === 'number' || typeof v === 'boolean' ? String(v) : v === undefined ? '' : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The CSV text of rows (in the order given): point, the axes, then every headline column in first-seen order. */
export function csvText(axes: readonly string[], rows: readonly Row[], headlineOf: (r: Row) => Record<string, number | boolean>): string {
  const heads = rows.map(headlineOf);
  const metrics: string[] = [];
  for (const h of heads) for (const k of Object.keys(h)) if (!metrics.includes(k)) metrics.push(k);
  const lines = [['point', ...axes, ...metrics].map(csvCell).join(',')];
  rows.forEach((r, i) => lines.push([r.point, ...axes.map((a) => r.flags[a]), ...metrics.map((m) => heads[i]![m])].map(csvCell).join(',')));
  return `${lines.join('\n')}\n`;
}

/** Rewrites results.jsonl and results.csv with `rows` in point order. */
export function writeResults(dir: string, axes: readonly string[], rows: readonly Row[], headlineOf: (r: Row) => Record<string, number | boolean>): Row[] {
  const sorted = [...rows].sort((a, b) => a.point - b.point);
  writeFileSync(join(dir, JSONL), sorted.map((r) => `${JSON.stringify(r)}\n`).join(''));
  writeFileSync(join(dir, CSV), csvText(axes, sorted, headlineOf));
  return sorted;
}

/** The CSV alone, in point order (after each finished point, so an interrupted sweep leaves a readable table). */
export function writeCsv(dir: string, axes: readonly string[], rows: readonly Row[], headlineOf: (r: Row) => Record<string, number | boolean>): void {
  writeFileSync(join(dir, CSV), csvText(axes, [...rows].sort((a, b) => a.point - b.point), headlineOf));
}

/**
 * Joins shard directories: same grid in every manifest, every point present
 * once (a point found twice must be the same row). Throws a UsageError naming
 * the directory or the missing points.
 */
export function mergeShards(dirs: readonly string[]): { manifest: Manifest; rows: Row[] } {
  let first: { dir: string; m: Manifest } | null = null;
  const byPoint = new Map<number, { dir: string; text: string; row: Row }>();
  for (const dir of dirs) {
    const m = readManifest(dir);
    if (m === null) throw new UsageError(`${dir}: no ${MANIFEST} (not a sweep output directory)`);
    if (first === null) first = { dir, m };
    else if (m.grid !== first.m.grid) throw new UsageError(`${dir}: a different grid from ${first.dir} (shards of one grid only)`);
    for (const row of readRows(dir)) {
      const text = JSON.stringify(row);
      const seen = byPoint.get(row.point);
      if (seen !== undefined && seen.text !== text) throw new UsageError(`${dir}: point ${row.point} differs from the one in ${seen.dir}`);
      byPoint.set(row.point, { dir, text, row });
    }
  }
  if (first === null) throw new UsageError('sweep merge: give at least one directory');
  const missing: number[] = [];
  for (let i = 0; i < first.m.points_total; i++) if (!byPoint.has(i)) missing.push(i);
  if (missing.length > 0) {
    throw new UsageError(`sweep merge: ${missing.length} of ${first.m.points_total} points missing (${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', …' : ''}): a shard not given or not finished (--resume it)`);
  }
  return { manifest: { ...first.m, shard: [1, 1] }, rows: [...byPoint.values()].map((v) => v.row) };
}
