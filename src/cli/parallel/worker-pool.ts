/**
 * A fixed pool of worker threads (node:worker_threads) that run CLI tasks —
 * a mode of `compare`, a point of `sweep` — each in its own thread, so a
 * 2-core machine runs two at once. Tasks are plain JSON-able objects; the
 * worker runs them with the same function the main thread uses for
 * `--jobs 1` (tasks.ts), so the results are the same bytes either way.
 *
 *   main thread                         worker k (task-worker.ts|.js)
 *   → { id, task }                      runTask(task)
 *   ← { id, ok: true, result }  |  { id, ok: false, error: { name, message, userFacing } }
 *
 * The worker entry sits next to this module: task-worker.ts under the
 * TypeScript loader (tests, `npx tsx`), task-worker.js once compiled to
 * dist/. Only when running from .ts does the worker register tsx's loader
 * itself (startWorker).
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { intFlag } from '../options.ts';

/** `--jobs N`: default the number of cores this process may use. */
export function jobsFlag(text: string | undefined): number {
  return intFlag('--jobs', text, availableParallelism(), 1, 1024);
}

/** A task's failure, carried across the thread boundary with the fields errors.ts looks at. */
export class TaskError extends Error {
  readonly userFacing: boolean;
  constructor(name: string, message: string, userFacing: boolean) {
    super(message);
    this.name = name;
    this.userFacing = userFacing;
  }
}

const fromTs = import.meta.url.endsWith('.ts');
const WORKER_ENTRY = new URL(fromTs ? './task-worker.ts' : './task-worker.js', import.meta.url);

/**
 * A worker running the entry: compiled JavaScript directly; TypeScript
 * through a tiny bootstrap that registers tsx's loader in the worker first
 * (hooks registered on the main thread do not reach workers in Node 20, and
 * neither does `--import` in a worker's execArgv).
 */
function startWorker(): Worker {
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--cpu-prof'));
  if (!fromTs) return new Worker(fileURLToPath(WORKER_ENTRY), { execArgv });
  const bootstrap = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_ENTRY.href)}); });`;
  return new Worker(bootstrap, { eval: true, execArgv });
}

interface Pending<T> {
  readonly index: number;
  readonly task: T;
}

/**
 * Runs every task on up to `jobs` worker threads and resolves to their
 * results in task order. `onDone` is called as each finishes (progress).
 * The first failure rejects, after the running tasks are stopped.
 */
export async function runInWorkers<T, R>(tasks: readonly T[], jobs: number, onDone?: (index: number, result: R) => void): Promise<R[]> {
  const results = new Array<R>(tasks.length);
  const queue: Pending<T>[] = tasks.map((task, index) => ({ index, task }));
  const n = Math.max(1, Math.min(jobs, tasks.length));
  const workers: Worker[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let running = 0;
      let failed = false;
      const fail = (e: Error): void => {
        if (failed) return;
        failed = true;
        reject(e);
      };
      const startOn = (w: Worker, slot: { task: Pending<T> | null }): void => {
        const next = queue.shift();
        slot.task = next ?? null;
        if (next === undefined) {
          if (running === 0) resolve();
          return;
        }
        running++;
        w.postMessage({ id: next.index, task: next.task });
      };
      for (let k = 0; k < n; k++) {
        const w = startWorker();
        // The task this worker runs now (one listener of each kind per worker, whatever the number of tasks).
        const slot: { task: Pending<T> | null } = { task: null };
        w.on('message', (m: { id: number; ok: boolean; result?: R; error?: { name: string; message: string; userFacing: boolean } }) => {
          const t = slot.task;
          if (t === null || m.id !== t.index) return;
          slot.task = null;
          running--;
          if (failed) return;
          if (!m.ok) return fail(new TaskError(m.error!.name, m.error!.message, m.error!.userFacing));
          results[t.index] = m.result!;
          onDone?.(t.index, m.result!);
          startOn(w, slot);
        });
        w.on('error', fail);
        w.on('exit', (code) => {
          if (slot.task !== null) fail(new Error(`worker thread exited (code ${code}) while running task ${slot.task.index}`));
        });
        workers.push(w);
        startOn(w, slot);
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return results;
}

/** Runs tasks one after another on this thread (`--jobs 1`). */
export async function runInProcess<T, R>(tasks: readonly T[], run: (task: T) => Promise<R>, onDone?: (index: number, result: R) => void): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < tasks.length; i++) {
    const r = await run(tasks[i]!);
    results.push(r);
    onDone?.(i, r);
  }
  return results;
}
