/**
 * A sweep's grid file, parsed once at the edge:
 *
 *   { "command": "migrate" | "trace" | "compare" | "access",
 *     "base":  { "flag": value, ... },          every point gets these
 *     "vary":  { "flag": [v1, v2, ...], ... },  the cartesian product of these
 *     "seeds": [1, 2, ...] }                    optional: --seed, innermost
 *
 * Flags are named as on the command line, with or without the leading
 * dashes ("clean-every" or "--clean-every"); "file" is the trace argument of
 * trace and compare. A switch takes true (present) or false (absent).
 *
 * Points are numbered in a fixed order — the first varied flag outermost,
 * seeds innermost — so a point's index means the same thing in every run,
 * shard and merge. Shard K of N holds the points whose index is K−1 mod N
 * (round-robin, so slow corners of the grid spread over the shards).
 */
import { UsageError } from '../errors.ts';
import type { SweepCommand } from '../parallel/tasks.ts';

export const SWEEP_COMMANDS: readonly SweepCommand[] = ['migrate', 'trace', 'compare', 'access'];

/** A command's option, as the sweep needs to know it (from commander's definition). */
export interface FlagSpec {
  /** '--clean-every' */
  readonly long: string;
  /** 'cleanEvery': the key the command's action receives. */
  readonly attr: string;
  /** false for a switch (--json), true for a flag that takes a value. */
  readonly takesValue: boolean;
}

export type GridValue = string | number | boolean;

export interface Grid {
  readonly command: SweepCommand;
  /** Trace argument of trace/compare, when the grid gives one in base. */
  readonly base: readonly (readonly [string, GridValue])[];
  /** Varied flags in grid order, each with its values. */
  readonly vary: readonly (readonly [string, readonly GridValue[]])[];
  readonly seeds: readonly number[] | null;
}

export interface Point {
  readonly index: number;
  /** The varied flags' values (and seed), keyed by flag name without dashes. */
  readonly varied: Readonly<Record<string, GridValue>>;
  /** The trace argument of trace/compare. */
  readonly file: string | undefined;
  /** Flags as the command's action receives them. */
  readonly flags: Readonly<Record<string, string | boolean>>;
}

/** Flags a sweep point may not set: the sweep decides where output goes. */
const SWEEP_OWNED = new Set(['json', 'report', 'help']);
const FILE_KEY = 'file';

function bad(where: string, why: string): UsageError {
  return new UsageError(`${where}: ${why}`);
}

/**
 * Parses and checks a grid's text. `flagsOf` lists the options of a
 * command. Every problem is a UsageError naming the grid and the key.
 */
export function parseGrid(text: string, gridName: string, flagsOf: (command: SweepCommand) => readonly FlagSpec[]): Grid {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw bad(gridName, `not JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(gridName, 'expected an object {"command", "base", "vary", "seeds"}');
  const g = raw as Record<string, unknown>;
  for (const k of Object.keys(g)) if (!['command', 'base', 'vary', 'seeds'].includes(k)) throw bad(`${gridName}: ${k}`, 'unknown key (expected command, base, vary, seeds)');
  if (typeof g.command !== 'string' || !(SWEEP_COMMANDS as readonly string[]).includes(g.command)) {
    throw bad(`${gridName}: command`, `expected one of ${SWEEP_COMMANDS.join(', ')}, got ${JSON.stringify(g.command)}`);
  }
  const command = g.command as SweepCommand;
  const specs = flagsOf(command);
  const takesFile = command === 'trace' || command === 'compare';
  const name = (where: string, key: string): string => {
    const n = key.replace(/^--/, '');
    if (n === FILE_KEY && takesFile) return n;
    if (SWEEP_OWNED.has(n)) throw bad(`${gridName}: ${where}.${key}`, `a sweep sets --${n} itself`);
    if (!specs.some((s) => s.long === `--${n}`)) throw bad(`${gridName}: ${where}.${key}`, `${command} has no flag --${n}`);
    return n;
  };
  const value = (where: string, v: unknown): GridValue => {
    if (typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) return v;
    throw bad(`${gridName}: ${where}`, `expected a string, number or boolean, got ${JSON.stringify(v)}`);
  };
  const objectOf = (key: string): Record<string, unknown> => {
    const v = g[key] ?? {};
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${gridName}: ${key}`, 'expected an object of flags');
    return v as Record<string, unknown>;
  };
  const base = Object.entries(objectOf('base')).map(([k, v]) => [name('base', k), value(`base.${k}`, v)] as const);
  const varyObj = objectOf('vary');
  if (Object.keys(varyObj).length === 0) throw bad(`${gridName}: vary`, 'empty: give at least one flag with a list of values');
  const vary = Object.entries(varyObj).map(([k, vs]) => {
    const n = name('vary', k);
    if (!Array.isArray(vs) || vs.length === 0) throw bad(`${gridName}: vary.${k}`, 'expected a non-empty list of values');
    if (base.some(([b]) => b === n)) throw bad(`${gridName}: vary.${k}`, 'also set in base');
    return [n, vs.map((v, i) => value(`vary.${k}[${i}]`, v))] as const;
  });
  let seeds: number[] | null = null;
  if (g.seeds !== undefined) {
    if (!Array.isArray(g.seeds) || g.seeds.length === 0 || !g.seeds.every((s) => Number.isInteger(s) && s >= 0)) {
      throw bad(`${gridName}: seeds`, 'expected a non-empty list of integers ≥ 0');
    }
    if (!specs.some((s) => s.long === '--seed')) throw bad(`${gridName}: seeds`, `${command} has no --seed`);
    if ([...base, ...vary].some(([k]) => k === 'seed')) throw bad(`${gridName}: seeds`, 'seed is also set in base or vary');
    seeds = g.seeds as number[];
  }
  return { command, base, vary, seeds };
}

/** Every point of the grid, in index order. */
export function expandGrid(grid: Grid, flagsOf: (command: SweepCommand) => readonly FlagSpec[]): Point[] {
  const specs = flagsOf(grid.command);
  const combos: [string, GridValue][][] = [[]];
  const axes: (readonly [string, readonly GridValue[]])[] = [...grid.vary];
  if (grid.seeds !== null) axes.push(['seed', grid.seeds]);
  let acc = combos;
  for (const [k, vs] of axes) {
    const next: [string, GridValue][][] = [];
    for (const c of acc) for (const v of vs) next.push([...c, [k, v]]);
    acc = next;
  }
  return acc.map((combo, index) => {
    let file: string | undefined;
    const flags: Record<string, string | boolean> = {};
    for (const [k, v] of [...grid.base, ...combo]) {
      if (k === FILE_KEY && (grid.command === 'trace' || grid.command === 'compare')) {
        file = String(v);
        continue;
      }
      const spec = specs.find((s) => s.long === `--${k}`)!;
      if (spec.takesValue) flags[spec.attr] = String(v);
      else if (v === true || v === 'true') flags[spec.attr] = true;
      else if (v !== false && v !== 'false') throw new UsageError(`--${k} is a switch: give true or false, got ${JSON.stringify(v)}`);
    }
    return { index, varied: Object.fromEntries(combo), file, flags };
  });
}

/** `--shard K/N` → [K, N], 1 ≤ K ≤ N. */
export function parseShard(text: string | undefined): readonly [number, number] {
  if (text === undefined) return [1, 1];
  const m = /^(\d+)\/(\d+)$/.exec(text);
  if (m === null) throw new UsageError(`--shard: expected K/N (e.g. 2/4), got '${text}'`);
  const k = Number(m[1]);
  const n = Number(m[2]);
  if (n < 1 || k < 1 || k > n) throw new UsageError(`--shard: ${text} is out of range (1 ≤ K ≤ N)`);
  return [k, n];
}

/** The points of shard K of N (round-robin over the index). */
export function shardPoints(points: readonly Point[], [k, n]: readonly [number, number]): Point[] {
  return points.filter((p) => p.index % n === k - 1);
}

/** Canonical text of a grid (the manifest's identity: shards of one grid merge, of two do not). */
export function gridIdentity(grid: Grid): string {
  return JSON.stringify({ command: grid.command, base: grid.base, vary: grid.vary, seeds: grid.seeds });
}
