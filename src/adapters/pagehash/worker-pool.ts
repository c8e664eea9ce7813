/**
 * A PageHashPool on one worker thread (node:worker_threads). The worker runs
 * the page-hash kernel (the same compiled WebAssembly module, posted to it)
 * over the same shared memories, so a page hashed there reads the very bytes
 * this thread would. Messages, in order on one port:
 *
 *   → { t: 'memory', id, memory }     register a shared memory under id
 *   → { t: 'hash', seq, locs, count, out, outAt, zeroLo, zeroHi }
 *   ← { t: 'done', seq } | { t: 'failed', seq, message }
 *
 * The worker is unref'd (it never keeps the process alive) and closed after
 * each migration, which lets go of the guest memories it was shown.
 */
import { Worker } from 'node:worker_threads';
import { hashPage, pageKernelModule, sharedMemoryOf } from '../../core/pagehash/page-hash.ts';
import type { PageHashPool } from '../../core/pagehash/pool.ts';

/** Plain JavaScript: a worker started from a string does not go through the TypeScript loader. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const kernels = [];
parentPort.on('message', (m) => {
  if (m.t === 'memory') {
    const ex = new WebAssembly.Instance(workerData.module, { env: { mem: m.memory } }).exports;
    kernels[m.id] = ex;
    return;
  }
  try {
    const { locs, count, out, outAt, zeroLo, zeroHi } = m;
    for (let i = 0; i < count; i++) {
      const id = locs[2 * i];
      const o = outAt + 2 * i;
      if (id < 0) { out[o] = zeroLo; out[o + 1] = zeroHi; continue; }
      const k = kernels[id];
      out[o] = k.page(locs[2 * i + 1]);
      out[o + 1] = k.hi.value;
    }
    parentPort.postMessage({ t: 'done', seq: m.seq });
  } catch (e) {
    parentPort.postMessage({ t: 'failed', seq: m.seq, message: String(e && e.message || e) });
  }
});
`;

export class WorkerPageHashPool implements PageHashPool {
  private readonly ids = new WeakMap<ArrayBufferLike, number>();
  private nextId = 0;
  private seq = 0;
  private readonly pending = new Map<number, { count: number; resolve: () => void; reject: (e: Error) => void }>();
  private readonly zero = new Uint32Array(2);
  private dead: Error | undefined;
  /** Pages the worker has hashed (for tests and reports). */
  pagesHashed = 0;

  private constructor(private readonly worker: Worker) {
    hashPage(new Uint8Array(4096), 0, this.zero, 0);
    worker.unref();
    worker.on('message', (m: { t: 'done' | 'failed'; seq: number; message?: string }) => {
      const p = this.pending.get(m.seq);
      if (!p) return;
      this.pending.delete(m.seq);
      if (m.t === 'done') {
        this.pagesHashed += p.count;
        p.resolve();
      }
      else p.reject(new Error(`page-hash worker: ${m.message}`));
    });
    const fail = (e: Error): void => {
      this.dead ??= e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', () => fail(new Error('page-hash worker exited')));
  }

  /** A pool, or undefined where shared WebAssembly memories or workers are not available. */
  static start(): WorkerPageHashPool | undefined {
    const module = pageKernelModule(true);
    if (!module) return undefined;
    try {
      return new WorkerPageHashPool(new Worker(WORKER_SOURCE, { eval: true, workerData: { module } }));
    } catch {
      return undefined;
    }
  }

  memoryId(bytes: Uint8Array): number {
    if (this.dead) return -1;
    let id = this.ids.get(bytes.buffer);
    if (id !== undefined) return id;
    const memory = sharedMemoryOf(bytes);
    if (!memory) return -1;
    id = this.nextId++;
    this.ids.set(bytes.buffer, id);
    this.worker.postMessage({ t: 'memory', id, memory });
    return id;
  }

  sharedI32(n: number): Int32Array {
    return new Int32Array(new SharedArrayBuffer(4 * n));
  }

  sharedU32(n: number): Uint32Array {
    return new Uint32Array(new SharedArrayBuffer(4 * n));
  }

  hash(locs: Int32Array, count: number, out: Uint32Array, outAt: number): Promise<void> {
    if (this.dead) return Promise.reject(this.dead);
    const seq = ++this.seq;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(seq, { count, resolve, reject });
      this.worker.postMessage({ t: 'hash', seq, locs, count, out, outAt, zeroLo: this.zero[0], zeroHi: this.zero[1] });
    });
  }

  /** Stops the worker (pending hashes are rejected: their caller hashes them itself). */
  close(): Promise<number> {
    return this.worker.terminate();
  }
}
