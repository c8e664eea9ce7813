/**
 * `memvisor sweep GRID.json [--jobs N] [--shard K/N] --out DIR [--json]`:
 * expands the grid (sweep/grid.ts) into points, checks every point's flags
 * as its command would before anything runs, then runs the points of this
 * shard in-process — on N worker threads, or on this thread with --jobs 1 —
 * writing DIR/results.jsonl, results.csv and report.html (sweep/results.ts).
 * `memvisor sweep merge DIR... --out DIR` joins shards into the files one
 * run would have written.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { renderSweepReport } from '../../adapters/report/sweep-report.ts';
import { UsageError } from '../errors.ts';
import { Progress, renderTable } from '../output.ts';
import { runInProcess, runInWorkers, jobsFlag } from '../parallel/worker-pool.ts';
import { runTask, type SweepCommand, type Task } from '../parallel/tasks.ts';
import { expandGrid, gridIdentity, parseGrid, parseShard, shardPoints, type FlagSpec, type Grid, type Point } from '../sweep/grid.ts';
import { appendRow, CSV, JSONL, mergeShards, readManifest, readRows, REPORT, writeCsv, writeManifest, writeResults, type Manifest, type Row } from '../sweep/results.ts';
import { checkPoint, headline } from './sweep-point.ts';

export interface SweepFlags {
  jobs?: string;
  shard?: string;
  out?: string;
  resume?: boolean;
  json?: boolean;
}

/** The options commander knows for each command the sweep can run. */
export function flagSpecsFrom(program: Command): (command: SweepCommand) => FlagSpec[] {
  return (command) => {
    const c = program.commands.find((x) => x.name() === command);
    if (c === undefined) return [];
    return c.options.filter((o) => o.long !== undefined).map((o) => ({ long: o.long!, attr: o.attributeName(), takesValue: o.required || o.optional }));
  };
}

function readGrid(path: string, flagsOf: (c: SweepCommand) => FlagSpec[]): Grid {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`${path}: cannot read grid (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseGrid(text, path, flagsOf);
}

const axesOf = (g: Grid): string[] => [...g.vary.map(([k]) => k), ...(g.seeds !== null ? ['seed'] : [])];

function headlineOf(command: SweepCommand): (r: Row) => Record<string, number | boolean> {
  return (r) => headline(command, r.result);
}

function writeReport(dir: string, m: Manifest, rows: readonly Row[]): void {
  const h = headlineOf(m.command);
  writeFileSync(join(dir, REPORT), renderSweepReport({ command: m.command, grid: m.grid, axes: m.axes, rows: rows.map((r) => ({ point: r.point, flags: r.flags, metrics: h(r) })) }));
}

function formatEta(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export async function sweepCommand(gridPath: string, f: SweepFlags, program: Command): Promise<void> {
  if (f.out === undefined) throw new UsageError("required option '--out <dir>' not specified");
  const flagsOf = flagSpecsFrom(program);
  const grid = readGrid(gridPath, flagsOf);
  const shard = parseShard(f.shard);
  const jobs = jobsFlag(f.jobs);
  const all = expandGrid(grid, flagsOf);
  const mine = shardPoints(all, shard);
  // Every point is checked before the first runs: a bad value fails now, naming the point's flags.
  for (const p of all) {
    try {
      checkPoint(grid.command, p.file, p.flags);
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      throw new UsageError(`${gridPath}: point ${p.index} (${describe(p)}): ${e.message}`);
    }
  }
  const manifest: Manifest = { command: grid.command, grid: gridIdentity(grid), points_total: all.length, axes: axesOf(grid), shard };
  const dir = f.out;
  const existing = readManifest(dir);
  const prior = existing === null ? [] : readRows(dir);
  if (existing !== null && !f.resume && prior.length > 0) {
    throw new UsageError(`--out: ${dir} already holds ${prior.length} results of a sweep (--resume to finish it, or choose another directory)`);
  }
  if (existing !== null && f.resume && (existing.grid !== manifest.grid || existing.shard.join('/') !== shard.join('/'))) {
    throw new UsageError(`--resume: ${dir} holds a different grid or shard (${existing.shard.join('/')}); resume with the same grid and --shard`);
  }
  writeManifest(dir, manifest);
  const done = new Map<number, Row>();
  if (f.resume) for (const r of prior) if (mine.some((p) => p.index === r.point)) done.set(r.point, r);
  if (!f.resume) writeFileSync(join(dir, JSONL), '');
  const todo = mine.filter((p) => !done.has(p.index));

  const progress = new Progress(!f.json);
  const started = Date.now();
  let finished = 0;
  progress.start(`sweep ${shard.join('/')}`, todo.length);
  const h = headlineOf(grid.command);
  const onDone = (i: number, result: unknown): void => {
    const p = todo[i]!;
    const row: Row = { point: p.index, flags: p.varied, result: result as Record<string, unknown> };
    done.set(p.index, row);
    appendRow(dir, row);
    writeCsv(dir, manifest.axes, [...done.values()], h);
    finished++;
    const eta = ((Date.now() - started) / finished) * (todo.length - finished);
    progress.update(finished, `points | ETA ${formatEta(eta)}`);
    progress.line(`point ${p.index} (${describe(p)}): done, ${finished}/${todo.length}, ETA ${formatEta(eta)}`);
  };
  const onInterrupt = (): void => {
    progress.stop();
    process.stderr.write(`memvisor: sweep interrupted: ${done.size} of ${mine.length} points are in ${join(dir, JSONL)}; run again with --resume to finish\n`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  try {
    const tasks = todo.map((p): Task => ({ t: 'point', command: grid.command, file: p.file, flags: p.flags }));
    if (jobs === 1 || tasks.length <= 1) await runInProcess(tasks, runTask, onDone);
    else await runInWorkers(tasks, jobs, onDone);
  } finally {
    process.off('SIGINT', onInterrupt);
    progress.stop();
  }
  const rows = writeResults(dir, manifest.axes, [...done.values()], h);
  writeReport(dir, manifest, rows);
  printSummary(f.json === true, { grid: gridPath, command: grid.command, shard, points_total: all.length, points: mine.length, ran: todo.length, resumed: mine.length - todo.length, out: dir }, manifest, rows);
}

export interface SweepMergeFlags {
  out?: string;
  json?: boolean;
}

export async function sweepMergeCommand(dirs: string[], f: SweepMergeFlags): Promise<void> {
  if (f.out === undefined) throw new UsageError("required option '--out <dir>' not specified");
  const { manifest, rows } = mergeShards(dirs);
  writeManifest(f.out, manifest);
  const sorted = writeResults(f.out, manifest.axes, rows, headlineOf(manifest.command));
  writeReport(f.out, manifest, sorted);
  printSummary(f.json === true, { merged: dirs, command: manifest.command, points_total: manifest.points_total, points: sorted.length, out: f.out }, manifest, sorted);
}

function describe(p: Point): string {
  return Object.entries(p.varied).map(([k, v]) => `${k}=${v}`).join(' ');
}

function printSummary(json: boolean, summary: Record<string, unknown>, m: Manifest, rows: readonly Row[]): void {
  const files = { csv: join(String(summary.out), CSV), jsonl: join(String(summary.out), JSONL), report: join(String(summary.out), REPORT) };
  if (json) {
    process.stdout.write(`${JSON.stringify({ ...summary, files })}\n`);
    return;
  }
  const h = headlineOf(m.command);
  const heads = rows.map(h);
  const metrics = [...new Set(heads.flatMap((x) => Object.keys(x)))].slice(0, 6);
  process.stdout.write(`${renderTable(['point', ...m.axes, ...metrics], rows.map((r, i) => [r.point, ...m.axes.map((a) => String(r.flags[a])), ...metrics.map((k) => { const v = heads[i]![k]; return typeof v === 'boolean' ? String(v) : (v ?? ''); })]))}\n`);
  process.stdout.write(`${rows.length} points: ${files.csv}, ${files.jsonl}, ${files.report}\n`);
}
