/**
 * The page hash's WebAssembly SIMD kernel, assembled here (no build step,
 * no binary blob). Encoding: WebAssembly core spec §5 (binary format) and the
 * fixed-width SIMD opcodes. The module imports a memory and exports
 *
 *   (func "page" (param $p i32) (result i32))   the page hash of [$p, $p+4096): lo
 *   (global "hi" (mut i32))                      … and its hi word
 *
 * It writes nothing to memory, so it can hash guest frames where they sit.
 * It computes exactly page-hash.ts's `pageHashRef` (the definition), which
 * the tests check on random pages. A module imports either a plain memory
 * or a shared one (WebAssembly needs the import to say which): shared
 * memories are the ones a helper thread can read too.
 */
import { P1, P2, P3, P4, P5 } from './lanes.ts';

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
const get = (i: number) => [0x20, i];
const set = (i: number) => [0x21, i];
const tee = (i: number) => [0x22, i];
const i32 = (n: number) => [0x41, ...sleb(n | 0)];
const I32_ADD = [0x6a];
const I32_SUB = [0x6b];
const I32_MUL = [0x6c];
const I32_XOR = [0x73];
const I32_SHR_U = [0x76];
const I32_ROTL = [0x77];
const LOOP = [0x03, 0x40];
const brIf = (depth: number) => [0x0d, depth];
const END = [0x0b];
const globalSet = (i: number) => [0x24, i];
/** memarg: alignment exponent 0 (nothing promised: socket slabs are unaligned), offset. */
const v128Load = (offset: number) => [...simd(0x00), 0, ...uleb(offset)];
const v128Const = (lanes: readonly number[]) => [...simd(0x0c), ...lanes.flatMap((v) => [v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255])];
const extractLane = (j: number) => [...simd(0x1b), j];
const I32X4_SPLAT = simd(0x11);
const V128_OR = simd(0x50);
const V128_XOR = simd(0x51);
const I32X4_SHL = simd(0xab);
const I32X4_SHR_U = simd(0xad);
const I32X4_ADD = simd(0xae);
const I32X4_MUL = simd(0xb5);

/** x ← h(x) for xxHash32's avalanche, on the value on top of the stack; uses local `t`. */
function avalanche(t: number): number[] {
  return [
    ...tee(t), ...get(t), ...i32(15), ...I32_SHR_U, ...I32_XOR,
    ...i32(P2), ...I32_MUL,
    ...tee(t), ...get(t), ...i32(13), ...I32_SHR_U, ...I32_XOR,
    ...i32(P3), ...I32_MUL,
    ...tee(t), ...get(t), ...i32(16), ...I32_SHR_U, ...I32_XOR,
  ];
}

/**
 * The module for pages of `blocks` 128-byte blocks, starting lanes
 * `initial` (16 values, vector-major), finishing with word count `words`.
 */
export function pageKernelBytes(initial: Uint32Array, blocks: number, words: number, shared = false): Uint8Array {
  // Locals: 0 $p (param); 1–4 the four lane vectors; 5 splat(P1); 6 scratch v128;
  // 7 $n; 8–11 v0…v3; 12 lo; 13 hi; 14 t.
  const p = 0;
  const lane = (k: number) => 1 + k;
  const prime = 5;
  const x = 6;
  const n = 7;
  const v = (j: number) => 8 + j;
  const lo = 12;
  const hi = 13;
  const t = 14;
  const b: number[] = [...i32(P1), ...I32X4_SPLAT, ...set(prime), ...i32(blocks), ...set(n)];
  for (let k = 0; k < 4; k++) b.push(...v128Const(Array.from(initial.subarray(4 * k, 4 * k + 4))), ...set(lane(k)));
  // The blocks: lane ← rotl13(lane ⊕ w[8k+j]) · P1 + w[8k+4+j].
  b.push(...LOOP);
  for (let k = 0; k < 4; k++) {
    b.push(...get(lane(k)), ...get(p), ...v128Load(32 * k), ...V128_XOR, ...tee(x));
    b.push(...i32(13), ...I32X4_SHL, ...get(x), ...i32(19), ...I32X4_SHR_U, ...V128_OR);
    b.push(...get(prime), ...I32X4_MUL);
    b.push(...get(p), ...v128Load(32 * k + 16), ...I32X4_ADD, ...set(lane(k)));
  }
  b.push(...get(p), ...i32(128), ...I32_ADD, ...set(p));
  b.push(...get(n), ...i32(1), ...I32_SUB, ...tee(n), ...brIf(0), ...END);
  // Fold: v_j = lane(0, j); v_j ← rotl11(v_j) · P2 ⊕ lane(k, j).
  for (let j = 0; j < 4; j++) {
    b.push(...get(lane(0)), ...extractLane(j), ...set(v(j)));
    for (let k = 1; k < 4; k++) b.push(...get(v(j)), ...i32(11), ...I32_ROTL, ...i32(P2), ...I32_MUL, ...get(lane(k)), ...extractLane(j), ...I32_XOR, ...set(v(j)));
  }
  // finishLanes(v0, v1, v2, v3, words, extra = 0).
  b.push(...get(v(0)), ...i32(1), ...I32_ROTL, ...get(v(1)), ...i32(7), ...I32_ROTL, ...I32_ADD);
  b.push(...get(v(2)), ...i32(12), ...I32_ROTL, ...I32_ADD, ...get(v(3)), ...i32(18), ...I32_ROTL, ...I32_ADD);
  b.push(...i32(words), ...I32_ADD, ...set(lo));
  b.push(...get(v(0)), ...get(v(1)), ...i32(9), ...I32_ROTL, ...I32_XOR);
  b.push(...get(v(2)), ...get(v(3)), ...i32(5), ...I32_ROTL, ...I32_XOR, ...i32(P5), ...I32_MUL, ...I32_ADD);
  b.push(...i32(Math.imul(words, P4)), ...I32_ADD, ...get(lo), ...I32_ADD, ...set(hi));
  b.push(...get(lo), ...avalanche(t), ...set(lo));
  b.push(...get(hi), ...get(lo), ...I32_XOR, ...avalanche(t), ...globalSet(0));
  b.push(...get(lo), ...END);

  const fn = [...vec([[6, T_V128], [8, T_I32]]), ...b];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([[0x60, ...vec([[T_I32]]), ...vec([[T_I32]])]])), // type 0: (i32) → i32
    // Import a memory: limits flag 0x00 = min only; 0x03 = shared, min and max (required for shared).
    ...section(2, vec([[...name('env'), ...name('mem'), 0x02, ...(shared ? [0x03, ...uleb(1), ...uleb(65536)] : [0x00, ...uleb(1)])]])),
    ...section(3, vec([[0]])), // function 0 has type 0
    ...section(6, vec([[T_I32, 0x01, ...i32(0), ...END]])), // global 0: mut i32 = 0
    ...section(7, vec([[...name('page'), 0x00, 0], [...name('hi'), 0x03, 0]])),
    ...section(10, vec([[...uleb(fn.length), ...fn]])),
  ]);
}
