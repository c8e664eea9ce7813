/**
 * PageHashPool: page hashes computed on another thread, so the sender's
 * final digest (every page of paused memory, re-read) is split between two
 * cores while the receiver, which has nothing left to do, waits for END.
 * The adapter (src/adapters/pagehash/worker-pool.ts) runs the same
 * WebAssembly kernel in a worker over the same shared memories.
 *
 * Only pages in shared memories (allocHashable(n, true): guest frames) can
 * be handed over; `memoryId` says −1 for anything else and the caller hashes
 * those itself.
 *
 * Shared memory, who writes what (the one place it is written down):
 *   guest memory   written by the owning thread only (the guest runs there);
 *                  the helper reads it only inside `hash`, which the sender
 *                  calls with the guest paused, so nothing changes under it.
 *   locs           written by the caller before `hash`, then only read.
 *   out            the helper writes out[outAt, outAt + 2·count); the caller
 *                  writes only outside that range, and reads it only after
 *                  the promise resolves (the worker's reply message orders it).
 * No Atomics: the messages that start and end a job are the synchronisation.
 */
export interface PageHashPool {
  /** The id under which the helper reads the memory `bytes` lies in; −1 if it cannot. */
  memoryId(bytes: Uint8Array): number;
  /** An Int32Array / Uint32Array the helper can read and write (SharedArrayBuffer). */
  sharedI32(n: number): Int32Array;
  sharedU32(n: number): Uint32Array;
  /**
   * Hashes `count` pages: page i is at byte offset locs[2i + 1] of memory
   * locs[2i] (−1 ⇒ unpopulated: the zero-page hash). Writes (lo, hi) to
   * out[outAt + 2i], out[outAt + 2i + 1]. `locs` and `out` come from sharedI32/sharedU32.
   */
  hash(locs: Int32Array, count: number, out: Uint32Array, outAt: number): Promise<void>;
}
