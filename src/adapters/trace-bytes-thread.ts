/**
 * A trace file's bytes — decompressed when the file is gzip (magic 1f 8b) —
 * produced by a worker thread and handed to this thread through a ring of
 * shared buffers, so that reading and inflating (one core) overlap parsing
 * and the engine (the other). The lackey reader takes these chunks instead of
 * its own fs/zlib streams (LackeyReader's `thread` option); what it parses,
 * and every error it reports, is the same.
 *
 * Shared memory (one SharedArrayBuffer), the one place it is described:
 *
 *   ctl  Int32[8]      [EPOCH]     worker: +1 after each publish and at the end (what this thread waits on)
 *                      [CONSUMED]  this thread: chunks released (the worker waits on it when the ring is full)
 *                      [PUBLISHED] worker: chunks written
 *                      [STATE]     worker: RUNNING, ENDED or FAILED; this thread: CANCELLED (close)
 *                      [COMPRESSED] worker: -1 before the first bytes, then 0 or 1
 *                      [READER_WANTS] this thread, before sleeping: wake me when PUBLISHED reaches this (0: awake)
 *                      [WORKER_WANTS] worker, before sleeping: wake me when CONSUMED reaches this (0: awake)
 *   len  Int32[SLOTS]  worker: bytes in each slot (written before PUBLISHED)
 *   data u8[SLOTS × SLOT_BYTES]  worker writes slot k while k is free; this thread reads it until it releases it
 *
 * Chunk i sits in slot i mod SLOTS. This thread holds at most one chunk at a
 * time: asking for the next releases the previous one. A failure (open,
 * read, zlib) is posted on a MessagePort as {message, code, syscall} before
 * STATE becomes FAILED and read synchronously (receiveMessageOnPort), so the
 * reader sees the same error object fields its own streams would give.
 *
 * The worker is plain JavaScript evaluated from a string: it needs no
 * TypeScript loader, so it starts in milliseconds, from .ts or from dist/.
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';

const EPOCH = 0;
const CONSUMED = 1;
const PUBLISHED = 2;
const STATE = 3;
const COMPRESSED = 4;
const READER_WANTS = 5;
const WORKER_WANTS = 6;
const CTL_WORDS = 8;

const RUNNING = 0;
const ENDED = 1;
const FAILED = 2;
const CANCELLED = 3;

const SLOTS = 32;
/**
 * Hysteresis: a side that finds the ring empty (this thread) or full (the
 * worker) sleeps until WAKE_BATCH slots are ready for it, not one: on a busy
 * machine every wake-up costs a trip through the scheduler, so they are made
 * rare (one per WAKE_BATCH chunks at worst).
 */
const WAKE_BATCH = 8;

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const zlib = require('node:zlib');
const { Readable, pipeline } = require('node:stream');
const { path, sab, slots, slotBytes, port } = workerData;
const ctl = new Int32Array(sab, 0, ${CTL_WORDS});
const len = new Int32Array(sab, ${CTL_WORDS * 4}, slots);
const data = new Uint8Array(sab, ${CTL_WORDS * 4} + 4 * slots, slots * slotBytes);
let published = 0;
function publish(chunk) {
  for (let off = 0; off < chunk.length; ) {
    for (;;) {
      if (Atomics.load(ctl, ${STATE}) === ${CANCELLED}) throw new Error('cancelled');
      const consumed = Atomics.load(ctl, ${CONSUMED});
      if (published - consumed < slots) break;
      // Full: sleep until the reader has freed a batch of slots.
      Atomics.store(ctl, ${WORKER_WANTS}, published - slots + Math.min(${WAKE_BATCH}, slots));
      if (Atomics.load(ctl, ${CONSUMED}) === consumed) Atomics.wait(ctl, ${CONSUMED}, consumed);
      Atomics.store(ctl, ${WORKER_WANTS}, 0);
    }
    const slot = published % slots;
    const n = Math.min(slotBytes, chunk.length - off);
    data.set(chunk.subarray(off, off + n), slot * slotBytes);
    len[slot] = n;
    off += n;
    published++;
    Atomics.store(ctl, ${PUBLISHED}, published);
    Atomics.add(ctl, ${EPOCH}, 1);
    const wants = Atomics.load(ctl, ${READER_WANTS});
    if (wants !== 0 && published >= wants) Atomics.notify(ctl, ${EPOCH});
  }
}
function finish(state) {
  Atomics.store(ctl, ${STATE}, state);
  Atomics.add(ctl, ${EPOCH}, 1);
  Atomics.notify(ctl, ${EPOCH});
}
(async () => {
  const raw = fs.createReadStream(path, { highWaterMark: slotBytes });
  const it = raw[Symbol.asyncIterator]();
  const head = [];
  let headBytes = 0;
  let ended = false;
  while (headBytes < 2) {
    const r = await it.next();
    if (r.done) { ended = true; break; }
    head.push(r.value);
    headBytes += r.value.length;
  }
  const first = Buffer.concat(head);
  const gz = headBytes >= 2 && first[0] === 0x1f && first[1] === 0x8b;
  Atomics.store(ctl, ${COMPRESSED}, gz ? 1 : 0);
  async function* rest() {
    if (first.length > 0) yield first;
    if (ended) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  let chunks = rest();
  if (gz) {
    const gunzip = zlib.createGunzip({ chunkSize: Math.max(64, slotBytes) });
    pipeline(Readable.from(rest(), { objectMode: false }), gunzip, () => {});
    chunks = gunzip;
  }
  for await (const c of chunks) publish(c);
})().then(
  () => finish(${ENDED}),
  (e) => {
    if (Atomics.load(ctl, ${STATE}) === ${CANCELLED}) return;
    port.postMessage({ message: String((e && e.message) || e), code: e && e.code, syscall: e && e.syscall });
    finish(${FAILED});
  },
);
`;

/** The trace's bytes as an async iterator of chunks, read and inflated on a worker thread. */
export class TraceBytesThread implements AsyncIterator<Buffer> {
  private readonly sab: SharedArrayBuffer;
  private readonly ctl: Int32Array;
  private readonly len: Int32Array;
  private readonly dataOffset: number;
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly slotBytes: number;
  /** Chunks taken so far; chunk `taken - 1` is held until the next call. */
  private taken = 0;
  private holding = false;
  private closed = false;

  /** Starts the worker; throws if worker threads are unavailable (the caller falls back to its own streams). */
  /** @param slotBytes bytes per chunk (the file's read size and gunzip's output chunk). */
  constructor(path: string, slotBytes: number) {
    this.slotBytes = slotBytes;
    this.dataOffset = CTL_WORDS * 4 + 4 * SLOTS;
    this.sab = new SharedArrayBuffer(this.dataOffset + SLOTS * slotBytes);
    this.ctl = new Int32Array(this.sab, 0, CTL_WORDS);
    this.len = new Int32Array(this.sab, CTL_WORDS * 4, SLOTS);
    Atomics.store(this.ctl, COMPRESSED, -1);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path, sab: this.sab, slots: SLOTS, slotBytes, port: port2 },
      transferList: [port2],
    });
    // Never keeps the process alive; a reader that stops early closes it.
    this.worker.unref();
    this.port.unref();
  }

  /** True once the input was found to be gzip; null before the first bytes. */
  get compressed(): boolean | null {
    const c = Atomics.load(this.ctl, COMPRESSED);
    return c < 0 ? null : c === 1;
  }

  /**
   * The next chunk (a view of shared memory, valid until the next call).
   * Blocks this thread while the worker has nothing ready: the engine has
   * nothing else to do then.
   */
  async next(): Promise<IteratorResult<Buffer>> {
    return this.nextSync();
  }

  nextSync(): IteratorResult<Buffer> {
    if (this.holding) {
      this.holding = false;
      const consumed = Atomics.add(this.ctl, CONSUMED, 1) + 1;
      const wants = Atomics.load(this.ctl, WORKER_WANTS);
      if (wants !== 0 && consumed >= wants) Atomics.notify(this.ctl, CONSUMED);
    }
    if (this.closed) return { done: true, value: undefined };
    for (;;) {
      const epoch = Atomics.load(this.ctl, EPOCH);
      // STATE before PUBLISHED: the worker stores its last PUBLISHED before ENDED or FAILED, so a chunk is never missed.
      const state = Atomics.load(this.ctl, STATE);
      if (Atomics.load(this.ctl, PUBLISHED) > this.taken) {
        const slot = this.taken % SLOTS;
        this.taken++;
        this.holding = true;
        return { done: false, value: Buffer.from(this.sab, this.dataOffset + slot * this.slotBytes, this.len[slot]!) };
      }
      if (state === ENDED) {
        this.close();
        return { done: true, value: undefined };
      }
      if (state === FAILED) {
        const m = receiveMessageOnPort(this.port)?.message as { message: string; code?: string; syscall?: string } | undefined;
        this.close();
        const e = new Error(m?.message ?? 'trace reader thread failed') as NodeJS.ErrnoException;
        if (m?.code !== undefined) e.code = m.code;
        if (m?.syscall !== undefined) e.syscall = m.syscall;
        throw e;
      }
      // Empty: sleep until a batch of chunks is ready (or the worker ends, which always wakes us).
      Atomics.store(this.ctl, READER_WANTS, this.taken + Math.min(WAKE_BATCH, SLOTS));
      Atomics.wait(this.ctl, EPOCH, epoch);
      Atomics.store(this.ctl, READER_WANTS, 0);
    }
  }

  async return(): Promise<IteratorResult<Buffer>> {
    this.close();
    return { done: true, value: undefined };
  }

  /** Stops the worker (safe to call twice). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (Atomics.load(this.ctl, STATE) === RUNNING) {
      Atomics.store(this.ctl, STATE, CANCELLED);
      Atomics.notify(this.ctl, CONSUMED);
    }
    this.port.close();
    void this.worker.terminate();
  }
}
