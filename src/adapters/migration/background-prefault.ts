/**
 * Destination memory for a standalone receiver, pre-faulted in the
 * background: when a stream's header says the guest's size, every slab is
 * allocated at once as shared memory (virtual only), and a helper thread
 * touches its pages in gfn order — the order round 0 writes them — so the
 * kernel's page faults (≈2.7 µs per 4 KiB page) are taken on another core
 * while this thread receives and copies, instead of inside each copy.
 * This is what `receive` does without --prealloc; --prealloc SIZE still
 * builds the memory before listening (a guaranteed warm start).
 *
 * Shared memory: the slabs. The helper only ever does `Atomics.or(word, 0)`
 * on the first word of each page: an atomic read-modify-write that leaves
 * the value as it is (whatever this thread copied there, before or after)
 * but is a write, so the kernel maps a private page. This thread writes the
 * slabs as before, with plain copies.
 *
 * A guest larger than half the free memory is left lazy (slabs on first
 * non-zero write): a sparse or mostly-zero guest must not commit memory it
 * never uses. So is every guest when no core is free (load average at or
 * above the cores − 0.5): the helper's faults then only compete with the
 * copies (bench/prefault.bench.ts on a saturated box: no gain, BENCHMARKS.md).
 */
import { availableParallelism, freemem, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import { PagedMemory } from '../../core/migration/paged-memory.ts';

const PAGE = 4096;

/** Plain JavaScript, evaluated: the helper needs no TypeScript loader. */
const PREFAULT_SOURCE = `
const { workerData } = require('node:worker_threads');
for (const sab of workerData.slabs) {
  const words = new Int32Array(sab);
  for (let w = 0; w < words.length; w += ${PAGE / 4}) Atomics.or(words, w, 0);
}
`;

export interface PrefaultedMemory {
  readonly memory: PagedMemory;
  /** Resolves when the helper has touched every page (or could not run: then the memory stays lazily faulted). */
  readonly done: Promise<void>;
}

/** A core is free for the helper: load average below the cores less a half. */
export function coreIsFree(): boolean {
  return loadavg()[0]! < availableParallelism() - 0.5;
}

/** Destination memory of `pageCount` pages, pre-faulted by a helper thread when it fits and a core is free; plain lazy memory otherwise. */
export function backgroundPrefaulted(pageCount: number, freeBytes = freemem(), coreFree = coreIsFree()): PrefaultedMemory {
  if (!coreFree || pageCount * PAGE > freeBytes / 2) return { memory: new PagedMemory(pageCount), done: Promise.resolve() };
  const memory = new PagedMemory(pageCount, (bytes) => new Uint8Array(new SharedArrayBuffer(bytes)));
  const slabs = memory.allocateAll().map((s) => s.buffer as SharedArrayBuffer);
  let worker: Worker;
  try {
    worker = new Worker(PREFAULT_SOURCE, { eval: true, workerData: { slabs } });
  } catch {
    return { memory, done: Promise.resolve() };
  }
  worker.unref();
  const done = new Promise<void>((resolve) => {
    worker.once('exit', () => resolve());
    worker.once('error', () => resolve());
  });
  return { memory, done };
}
