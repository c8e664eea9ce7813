/**
 * The page hash (stream major 3): the content hash of one 4 KiB page, used
 * by the sender to skip unchanged pages, inside every batch checksum, and
 * in the end-to-end digest. 16 lanes of the checksum.ts lane step, so that
 * it runs as four 128-bit SIMD vectors:
 *
 *   a 128-byte block holds four 32-byte stripes; stripe k feeds vector k:
 *     lane (k, j) ← rotl13(lane ⊕ w[8k + j]) · P1 + w[8k + 4 + j]     j = 0…3
 *   fold: v_j = lane(0, j); v_j ← rotl11(v_j) · P2 ⊕ lane(k, j)   for k = 1…3
 *   then checksum.ts's finish over v_0…v_3 (word count 1024, extra 0).
 *
 * Every step is a bijection of a lane for fixed words, and of each word for
 * a fixed lane, so a one-word change always reaches the output (as in
 * checksum.ts, whose strength notes apply lane by lane).
 *
 * Speed. `pageHashRef` is the definition in plain TypeScript (≈1.7 µs per
 * page). The kernel (kernel.ts) runs it as WebAssembly SIMD:
 * ≈0.11 µs per page in cache, memory-bound beyond (≈0.3 µs from DRAM),
 * against 0.7 µs for the JS 4-lane hash of major 2. WebAssembly reads only
 * its own memory, so the buffers that matter are WebAssembly memories
 * (`allocHashable`): guest frames, the sender's batch payloads, the
 * receiver's socket slabs — each page is hashed where it sits. A page
 * anywhere else is copied into a scratch page first (≈0.2–0.4 µs), still
 * cheaper than plain JS. Where WebAssembly SIMD is missing, everything falls
 * back to `pageHashRef`, with the same values.
 *
 * A memory made here never grows: growing would detach every view of it.
 */
import { finishLanes, P1, P2, P5 } from './lanes.ts';
import { pageKernelBytes } from './kernel.ts';

export const PAGE_BYTES = 4096;
const LANES = 16;
const BLOCK_BYTES = 128;
const BLOCKS = PAGE_BYTES / BLOCK_BYTES;

/** The 16 starting lanes for `seed`, vector-major: lane (k, j) at 4k + j. */
function initialLanes(seed: number): Uint32Array {
  const base = [seed + P1 + P2, seed + P2, seed, seed - P1];
  const out = new Uint32Array(LANES);
  for (let k = 0; k < 4; k++) for (let j = 0; j < 4; j++) out[4 * k + j] = (base[j]! + Math.imul(k, P5)) | 0;
  return out;
}

/** Folds the 16 lanes (vector-major) to four and finishes into out[i], out[i+1]. */
function foldAndFinish(lanes: Uint32Array, at: number, out: Uint32Array, outIndex: number): number {
  let v0 = lanes[at]! | 0;
  let v1 = lanes[at + 1]! | 0;
  let v2 = lanes[at + 2]! | 0;
  let v3 = lanes[at + 3]! | 0;
  for (let k = 1; k < 4; k++) {
    const o = at + 4 * k;
    v0 = Math.imul((v0 << 11) | (v0 >>> 21), P2) ^ lanes[o]!;
    v1 = Math.imul((v1 << 11) | (v1 >>> 21), P2) ^ lanes[o + 1]!;
    v2 = Math.imul((v2 << 11) | (v2 >>> 21), P2) ^ lanes[o + 2]!;
    v3 = Math.imul((v3 << 11) | (v3 >>> 21), P2) ^ lanes[o + 3]!;
  }
  return finishLanes(v0, v1, v2, v3, PAGE_BYTES >>> 2, 0, out, outIndex);
}

/**
 * The page hash by its definition, at any alignment: 4096 bytes of `bytes`
 * from `byteOffset`, seed `seed`, written to out[i], out[i+1]; returns lo.
 */
export function pageHashRef(bytes: Uint8Array, byteOffset: number, seed: number, out: Uint32Array, outIndex: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset + byteOffset, PAGE_BYTES);
  const lanes = initialLanes(seed);
  for (let b = 0; b < PAGE_BYTES; b += BLOCK_BYTES) {
    for (let k = 0; k < 4; k++) {
      const s = b + 32 * k;
      for (let j = 0; j < 4; j++) {
        const x = lanes[4 * k + j]! ^ view.getUint32(s + 4 * j, true);
        lanes[4 * k + j] = Math.imul((x << 13) | (x >>> 19), P1) + view.getUint32(s + 16 + 4 * j, true);
      }
    }
  }
  return foldAndFinish(lanes, 0, out, outIndex);
}

const PAGE_SEED = 0x50414745; // "PAGE", as checksum.ts's SEED_PAGE
const WASM_PAGE = 64 * 1024;

/** The kernel bound to one memory: the page hash of the 4096 bytes at `at`. */
interface BoundKernel {
  readonly page: (at: number) => number;
  readonly hi: { value: number };
}

const compiled: (WebAssembly.Module | null | undefined)[] = [undefined, undefined];
/** The kernel module for plain (false) or shared (true) memories; null without WebAssembly SIMD. */
export function pageKernelModule(shared: boolean): WebAssembly.Module | null {
  const i = shared ? 1 : 0;
  if (compiled[i] === undefined) {
    let mod: WebAssembly.Module | null = null;
    try {
      const bytes = pageKernelBytes(initialLanes(PAGE_SEED), BLOCKS, PAGE_BYTES >>> 2, shared);
      if (typeof WebAssembly === 'object' && WebAssembly.validate(bytes)) mod = new WebAssembly.Module(bytes);
    } catch {
      mod = null;
    }
    compiled[i] = mod;
  }
  return compiled[i]!;
}

/** Kernels by the memory buffer they read; a memory's buffer never changes (it never grows). */
const kernels = new WeakMap<ArrayBufferLike, BoundKernel>();
/** Shared memories by their buffer, for handing to a helper thread. */
const sharedMemories = new WeakMap<ArrayBufferLike, WebAssembly.Memory>();

function bind(memory: WebAssembly.Memory, shared: boolean): void {
  const mod = pageKernelModule(shared);
  if (!mod) return;
  const ex = new WebAssembly.Instance(mod, { env: { mem: memory } }).exports;
  kernels.set(memory.buffer, { page: ex['page'] as (at: number) => number, hi: ex['hi'] as { value: number } });
  if (shared) sharedMemories.set(memory.buffer, memory);
}

/**
 * `n` zeroed bytes whose pages the kernel hashes where they sit: a
 * WebAssembly memory of its own (fixed size, freed by the GC like any
 * buffer) when WebAssembly SIMD is there, else a plain Uint8Array. For guest
 * frames, batch payloads and socket read slabs. `shared`: a shared memory
 * (a SharedArrayBuffer underneath) that a helper thread can hash too — guest
 * memory, whose final digest is split between threads.
 */
export function allocHashable(n: number, shared = false): Uint8Array {
  if (n > 0 && n <= MAX_MEMORY_BYTES && pageKernelModule(shared)) {
    try {
      const pages = Math.ceil(n / WASM_PAGE);
      const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared });
      bind(memory, shared);
      return new Uint8Array(memory.buffer, 0, n);
    } catch {
      /* out of address space: plain memory below */
    }
  }
  return new Uint8Array(n);
}

/** The shared WebAssembly memory `bytes` lies in, if it is one (see allocHashable). */
export function sharedMemoryOf(bytes: Uint8Array): WebAssembly.Memory | undefined {
  return sharedMemories.get(bytes.buffer);
}
/** The largest memory32 WebAssembly allows (65535 pages of 64 KiB). */
const MAX_MEMORY_BYTES = 65535 * WASM_PAGE;

/** One memory to copy foreign pages into (their kernel path: copy ≈0.2–0.4 µs, hash ≈0.11 µs). */
let scratch: Uint8Array | undefined;

let lastBuffer: ArrayBufferLike | undefined;
let lastKernel: BoundKernel | undefined;

/** True when pages in `bytes` are hashed in place by the WebAssembly kernel. */
export function hashesInPlace(bytes: Uint8Array): boolean {
  return kernels.has(bytes.buffer);
}

/**
 * The page hash of `bytes[byteOffset …+4096]`, written to out[i], out[i+1];
 * returns lo. In place when `bytes` came from `allocHashable`; otherwise
 * copied into a scratch page first (still faster than `pageHashRef`, which
 * is what runs where WebAssembly SIMD is missing).
 */
export function hashPage(bytes: Uint8Array, byteOffset: number, out: Uint32Array, outIndex: number): number {
  // The kernel reads raw memory and subarray clamps: a short page would hash stale bytes, not fail.
  if (!(byteOffset >= 0 && byteOffset + PAGE_BYTES <= bytes.length)) {
    throw new RangeError(`hashPage: no whole 4096-byte page at offset ${byteOffset} of a ${bytes.length}-byte view`);
  }
  const buf = bytes.buffer;
  let k = buf === lastBuffer ? lastKernel : kernels.get(buf);
  let at = bytes.byteOffset + byteOffset;
  if (k === undefined) {
    scratch ??= allocHashable(PAGE_BYTES);
    k = kernels.get(scratch.buffer);
    if (k === undefined) return pageHashRef(bytes, byteOffset, PAGE_SEED, out, outIndex);
    scratch.set(bytes.subarray(byteOffset, byteOffset + PAGE_BYTES));
    at = 0;
  } else {
    lastBuffer = buf;
    lastKernel = k;
  }
  const lo = k.page(at);
  out[outIndex] = lo;
  out[outIndex + 1] = k.hi.value;
  return lo >>> 0;
}
