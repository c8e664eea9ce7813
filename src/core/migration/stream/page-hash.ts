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
 * page). The kernel runs it as WebAssembly SIMD (≈0.11 µs per page in cache,
 * memory-bound beyond: ≈0.3 µs from DRAM; the JS 4-lane hash of major 2 took
 * 0.7 µs). WebAssembly can only read its own memory, so a `HashArena` owns one
 * fixed-size WebAssembly.Memory and lends buffers from it: the sender builds
 * its batch payloads there, the receiver reads the socket into slabs there,
 * and a page in one of those is hashed where it sits. A page anywhere else is
 * first copied into the arena's scratch page (≈0.2–0.4 µs), still cheaper
 * than the plain-JS path. Where WebAssembly SIMD is missing everything falls
 * back to `pageHashRef`, with the same values.
 *
 * The memory never grows: growing would detach every view already lent.
 */
import { finishLanes, P1, P2, P5 } from './checksum-lanes.ts';

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

// ---------------------------------------------------------------------------
// The WebAssembly kernel, assembled here (no build step, no binary blob):
//   (func (export "blocks") (param $p i32) (param $n i32) (param $st i32)
//     load the four state vectors from $st; run $n 128-byte blocks from $p;
//     store the state back)
// Encoding: WebAssembly core spec §5 and the fixed-width SIMD opcodes.

const uleb = (n: number): number[] => {
  const o: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    o.push(b);
  } while (n !== 0);
  return o;
};
const sleb = (n: number): number[] => {
  const o: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      o.push(b);
      return o;
    }
    o.push(b | 0x80);
  }
};
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

const T_I32 = 0x7f;
const T_V128 = 0x7b;
const simd = (op: number): number[] => [0xfd, ...uleb(op)];
const OP = {
  localGet: (i: number) => [0x20, i],
  localSet: (i: number) => [0x21, i],
  localTee: (i: number) => [0x22, i],
  i32Const: (n: number) => [0x41, ...sleb(n | 0)],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  loop: [0x03, 0x40],
  brIf: (depth: number) => [0x0d, depth],
  end: [0x0b],
  /** memarg: alignment exponent 0 (no alignment promised: socket slabs are unaligned), offset. */
  v128Load: (offset: number) => [...simd(0x00), 0, ...uleb(offset)],
  v128Store: (offset: number) => [...simd(0x0b), 0, ...uleb(offset)],
  i32x4Splat: simd(0x11),
  v128Or: simd(0x50),
  v128Xor: simd(0x51),
  i32x4Shl: simd(0xab),
  i32x4ShrU: simd(0xad),
  i32x4Add: simd(0xae),
  i32x4Mul: simd(0xb5),
};

function kernelModuleBytes(): Uint8Array {
  // Locals: 0 $p, 1 $n, 2 $st (params); 3–6 the four vectors; 7 splat(P1); 8 scratch.
  const p = 0;
  const n = 1;
  const st = 2;
  const lane = (k: number) => 3 + k;
  const prime = 7;
  const x = 8;
  const body: number[] = [...OP.i32Const(P1), ...OP.i32x4Splat, ...OP.localSet(prime)];
  for (let k = 0; k < 4; k++) body.push(...OP.localGet(st), ...OP.v128Load(16 * k), ...OP.localSet(lane(k)));
  body.push(...OP.loop);
  for (let k = 0; k < 4; k++) {
    body.push(...OP.localGet(lane(k)), ...OP.localGet(p), ...OP.v128Load(32 * k), ...OP.v128Xor, ...OP.localTee(x));
    body.push(...OP.i32Const(13), ...OP.i32x4Shl, ...OP.localGet(x), ...OP.i32Const(19), ...OP.i32x4ShrU, ...OP.v128Or);
    body.push(...OP.localGet(prime), ...OP.i32x4Mul);
    body.push(...OP.localGet(p), ...OP.v128Load(32 * k + 16), ...OP.i32x4Add, ...OP.localSet(lane(k)));
  }
  body.push(...OP.localGet(p), ...OP.i32Const(BLOCK_BYTES), ...OP.i32Add, ...OP.localSet(p));
  body.push(...OP.localGet(n), ...OP.i32Const(1), ...OP.i32Sub, ...OP.localTee(n), ...OP.brIf(0), ...OP.end);
  for (let k = 0; k < 4; k++) body.push(...OP.localGet(st), ...OP.localGet(lane(k)), ...OP.v128Store(16 * k));
  body.push(...OP.end);
  const fn = [...vec([[6, T_V128]]), ...body];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([[0x60, ...vec([[T_I32], [T_I32], [T_I32]]), 0]])), // type 0: (i32 i32 i32) → ()
    ...section(2, vec([[...name('env'), ...name('mem'), 0x02, 0x00, ...uleb(1)]])), // import memory, min 1 page
    ...section(3, vec([[0]])), // one function of type 0
    ...section(7, vec([[...name('blocks'), 0x00, 0]])), // export it
    ...section(10, vec([[...uleb(fn.length), ...fn]])),
  ]);
}

/** Bytes of WebAssembly memory per arena (virtual until touched). */
const DEFAULT_ARENA_BYTES = 128 * 1024 * 1024;
const WASM_PAGE = 64 * 1024;
/** Layout: [0, 64) the kernel's state; [4096, 8192) the scratch page; lending starts at 64 KiB. */
const STATE_AT = 0;
const SCRATCH_AT = 4096;
const LEND_FROM = WASM_PAGE;

let compiled: WebAssembly.Module | null | undefined;
function kernelModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    const bytes = kernelModuleBytes();
    compiled = typeof WebAssembly === 'object' && WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
  }
  return compiled;
}

/**
 * One WebAssembly memory with the kernel bound to it: lends buffers
 * (`alloc`/`free`, 64 KiB granules, first fit by exact size class) and hashes
 * pages. Without WebAssembly SIMD, `alloc` lends nothing and `hashPage` is
 * `pageHashRef`.
 */
export class HashArena {
  private readonly mem: Uint8Array | undefined;
  private readonly words: Uint32Array | undefined;
  private readonly blocks: ((p: number, n: number, st: number) => void) | undefined;
  private readonly initial: Uint32Array;
  private top = LEND_FROM;
  private readonly freeBySize = new Map<number, number[]>();

  constructor(bytes = DEFAULT_ARENA_BYTES, readonly seed = SEED_PAGE_HASH) {
    this.initial = initialLanes(seed);
    const mod = kernelModule();
    if (!mod) return;
    const pages = Math.ceil(bytes / WASM_PAGE);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
    const instance = new WebAssembly.Instance(mod, { env: { mem: memory } });
    this.blocks = instance.exports['blocks'] as (p: number, n: number, st: number) => void;
    this.mem = new Uint8Array(memory.buffer);
    this.words = new Uint32Array(memory.buffer);
  }

  /** True when pages are hashed by the WebAssembly kernel. */
  get accelerated(): boolean {
    return this.blocks !== undefined;
  }

  /** A buffer of `n` bytes inside the arena, or undefined when it is full (or not accelerated). */
  alloc(n: number): Uint8Array | undefined {
    const mem = this.mem;
    if (!mem || n <= 0) return undefined;
    const size = Math.ceil(n / WASM_PAGE) * WASM_PAGE;
    const free = this.freeBySize.get(size);
    let at = free?.pop();
    if (at === undefined) {
      if (this.top + size > mem.length) return undefined;
      at = this.top;
      this.top += size;
    }
    return mem.subarray(at, at + n);
  }

  /** Gives back a buffer `alloc` lent (the same view); anything else is ignored. */
  free(buf: Uint8Array): void {
    if (!this.mem || buf.buffer !== this.mem.buffer || buf.byteOffset < LEND_FROM) return;
    const size = Math.ceil(buf.length / WASM_PAGE) * WASM_PAGE;
    let list = this.freeBySize.get(size);
    if (!list) this.freeBySize.set(size, (list = []));
    list.push(buf.byteOffset);
  }

  /** True if `buf` lies in this arena (its pages hash without a copy). */
  owns(buf: Uint8Array): boolean {
    return this.mem !== undefined && buf.buffer === this.mem.buffer;
  }

  /** The page hash of `bytes[byteOffset …+4096]`, written to out[i], out[i+1]; returns lo. */
  hashPage(bytes: Uint8Array, byteOffset: number, out: Uint32Array, outIndex: number): number {
    const mem = this.mem;
    const words = this.words;
    const blocks = this.blocks;
    if (!mem || !words || !blocks) return pageHashRef(bytes, byteOffset, this.seed, out, outIndex);
    let at: number;
    if (bytes.buffer === mem.buffer) at = bytes.byteOffset + byteOffset;
    else {
      mem.set(bytes.subarray(byteOffset, byteOffset + PAGE_BYTES), SCRATCH_AT);
      at = SCRATCH_AT;
    }
    words.set(this.initial, STATE_AT >>> 2);
    blocks(at, BLOCKS, STATE_AT);
    return foldAndFinish(words, STATE_AT >>> 2, out, outIndex);
  }
}

/** The page seed ("PAGE"), as checksum.ts's SEED_PAGE. */
const SEED_PAGE_HASH = 0x50414745;

let shared: HashArena | undefined;
/** The process's arena (created on first use). */
export function pageHashArena(): HashArena {
  return (shared ??= new HashArena());
}
