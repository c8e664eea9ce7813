/**
 * One point of a sweep: a command (migrate, trace, compare, access) run
 * in-process with its flags, giving the object the command prints with
 * --json, and the headline numbers results.csv keeps of it. `checkPoint`
 * parses the flags the way the command does, without running anything, so
 * a bad grid fails before the first point starts.
 *
 * Flags arrive as commander would hand them to the command's action: keys
 * are attribute names (cleanEvery), values strings, or true for a switch.
 */
import { existsSync } from 'node:fs';
import { UsageError } from '../errors.ts';
import { intFlag, modeFlag, parseGuestFlags } from '../options.ts';
import { Progress } from '../output.ts';
import type { SweepCommand } from '../parallel/tasks.ts';
import { accessResult, parseAccessFlags, type AccessFlags } from './access.ts';
import { compareResult, compareRows, type CompareFlags } from './compare.ts';
import { migrateResult, parseMigrateFlags, type MigrateFlags } from './migrate.ts';
import { modeOptionsFrom, traceOnce, type TraceFlags } from './trace.ts';

export type PointFlags = Record<string, string | boolean>;

function requireFile(flag: string, path: string | undefined): void {
  if (path !== undefined && path !== '-' && !existsSync(path)) throw new UsageError(`${flag}: no such file '${path}'`);
  if (path === '-') throw new UsageError(`${flag}: a sweep point cannot read stdin (-); give a file`);
}

/** Parses a point's flags as its command would; throws the command's own UsageError. */
export function checkPoint(command: SweepCommand, file: string | undefined, flags: PointFlags): void {
  switch (command) {
    case 'trace': {
      const f = flags as TraceFlags;
      if (f.mode === undefined) throw new UsageError('--mode is required by trace');
      modeFlag(f.mode, 'ept-wp');
      if (file === undefined && f.workload === undefined) throw new UsageError('trace needs a file or --workload NAME');
      requireFile('file', file);
      parseGuestFlags(f, file !== undefined);
      intFlag('--clean-every', f.cleanEvery, 100_000);
      modeOptionsFrom(f);
      return;
    }
    case 'compare': {
      const f = flags as CompareFlags;
      compareRows(f);
      if (file === undefined && f.workload === undefined) throw new UsageError('compare needs a file or --workload NAME');
      requireFile('file', file);
      parseGuestFlags(f, file !== undefined);
      intFlag('--clean-every', f.cleanEvery, 100_000);
      modeOptionsFrom(f);
      return;
    }
    case 'migrate': {
      const f = flags as MigrateFlags;
      parseMigrateFlags(f);
      requireFile('--trace', f.trace);
      return;
    }
    case 'access': {
      const f = flags as AccessFlags;
      parseAccessFlags(f);
      requireFile('--trace', f.trace);
      return;
    }
  }
}

/** Runs the point and returns what the command prints with --json (nothing is printed). */
export async function runPoint(command: SweepCommand, file: string | undefined, flags: PointFlags): Promise<Record<string, unknown>> {
  const quiet = new Progress(false);
  switch (command) {
    case 'trace': {
      const f = { ...flags, json: true } as TraceFlags;
      return { ...(await traceOnce(file, f, modeFlag(f.mode, 'ept-wp'), quiet)) };
    }
    case 'compare': {
      // Points already run one per thread: a compare point runs its modes one after another unless the grid says --jobs.
      const f = { jobs: '1', ...flags, json: true } as CompareFlags;
      return { ...(await compareResult(file ?? '', f, quiet)) };
    }
    case 'migrate': {
      const f = { ...flags, json: true } as MigrateFlags;
      const { out } = await migrateResult(f, parseMigrateFlags(f), quiet);
      return out;
    }
    case 'access': {
      const f = { ...flags, json: true } as AccessFlags;
      const { out } = await accessResult(f, parseAccessFlags(f), quiet);
      return out;
    }
  }
}

type Json = Record<string, unknown>;
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
const sum = (o: unknown): number => Object.values((o ?? {}) as Record<string, number>).reduce((a, b) => a + b, 0);

/**
 * The numbers results.csv keeps of a point, by command: migrate's rounds,
 * pages_sent, bytes_sent, downtime_ms, total_ms, verified; trace's records,
 * rounds, dirty, faults, exits, cycles; compare's per-mode dirty, exits and
 * tracking cycles; access's events.
 */
export function headline(command: SweepCommand, r: Json): Record<string, number | boolean> {
  switch (command) {
    case 'migrate':
      return { rounds: (r.rounds as unknown[]).length, pages_sent: num(r.pages_sent), bytes_sent: num(r.bytes_sent), downtime_ms: num(r.downtime_ms), total_ms: num(r.total_ms), verified: r.verified === true };
    case 'trace': {
      const t = r.totals as Json;
      return { records: num(r.records), rounds: (r.rounds as unknown[]).length, dirty: num(t.dirty), fault_count: num(t.fault_count), exits: sum(t.exits), cycles: num(t.cycles), harvest_cycles: num(t.harvest_cycles), tracking_bytes: num(t.tracking_bytes) };
    }
    case 'compare': {
      const out: Record<string, number> = { records: num(r.records) };
      for (const m of r.modes as Json[]) {
        out[`${m.mode}.dirty`] = num(m.dirty_total);
        out[`${m.mode}.exits`] = sum(m.exits);
        out[`${m.mode}.tracking_cycles_per_million_records`] = num(m.tracking_cycles_per_million_records);
      }
      return out;
    }
    case 'access': {
      const c = r.counts as Json;
      return { records: num(r.records), events: num(c.total), sync: num(c.sync), async: num(c.async), cycles: num(r.cycles) };
    }
  }
}
