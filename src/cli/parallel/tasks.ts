/**
 * The units of work `compare` and `sweep` spread over threads, as plain
 * JSON-able objects, and the one function that runs them — on the main
 * thread for `--jobs 1`, in a worker thread otherwise (task-worker.ts), so
 * both give the same result.
 */
import type { TraceFlags, TraceRun } from '../commands/trace.ts';

export type Task =
  /** One compare row: `row` is a mode or mode:variant (compare.ts resolves it). */
  | { readonly t: 'compare-row'; readonly file: string | undefined; readonly flags: TraceFlags; readonly row: string }
  /** An untracked run on a p2m format: compare's baseline cycles. */
  | { readonly t: 'baseline'; readonly file: string | undefined; readonly flags: TraceFlags; readonly format: 'ept' | 'npt' | 'arm' }
  /** One sweep point: a command with its flags, as it would print with --json. */
  | { readonly t: 'point'; readonly command: SweepCommand; readonly file: string | undefined; readonly flags: Record<string, string | boolean> };

export type SweepCommand = 'migrate' | 'trace' | 'compare' | 'access';

export type TaskResult = TraceRun | number | Record<string, unknown>;

export async function runTask(task: Task): Promise<TaskResult> {
  // A worker thread has its own registries: the --plugin files the command loaded are loaded here too.
  const plugins = (task.flags as { plugin?: unknown }).plugin;
  if (Array.isArray(plugins) && plugins.length > 0) await (await import('../plugins.ts')).loadPlugins(plugins as string[]);
  switch (task.t) {
    case 'compare-row': {
      const { compareRow } = await import('../commands/compare.ts');
      return compareRow(task.file, task.flags, task.row);
    }
    case 'baseline': {
      const { baselineCycles } = await import('../commands/compare.ts');
      return baselineCycles(task.file, task.flags, task.format);
    }
    case 'point': {
      const { runPoint } = await import('../commands/sweep-point.ts');
      return runPoint(task.command, task.file, task.flags);
    }
  }
}
