/**
 * The lane constants and the finishing step shared by the stream's two hash
 * shapes: migration/stream/checksum.ts (4 lanes, any length: records,
 * digests) and page-hash.ts (16 lanes, one 4 KiB page). xxHash32's primes.
 */

export const P1 = 0x9e3779b1;
export const P2 = 0x85ebca77;
export const P3 = 0xc2b2ae3d;
export const P4 = 0x27d4eb2f;
export const P5 = 0x165667b1;

function avalanche(h: number): number {
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Folds four lanes, the word count and `extra` into a 64-bit result written
 * to out[outIndex] (lo), out[outIndex + 1] (hi); returns lo.
 */
export function finishLanes(
  v1: number,
  v2: number,
  v3: number,
  v4: number,
  wordCount: number,
  extra: number,
  out: Uint32Array,
  outIndex: number,
): number {
  let lo = ((v1 << 1) | (v1 >>> 31)) + ((v2 << 7) | (v2 >>> 25)) + ((v3 << 12) | (v3 >>> 20)) + ((v4 << 18) | (v4 >>> 14));
  lo = (lo + wordCount + Math.imul(extra, P5)) | 0;
  let hi = (v1 ^ ((v2 << 9) | (v2 >>> 23))) + Math.imul(v3 ^ ((v4 << 5) | (v4 >>> 27)), P5);
  hi = (hi + Math.imul(wordCount ^ extra, P4) + lo) | 0;
  lo = avalanche(lo);
  hi = avalanche(hi ^ lo);
  out[outIndex] = lo;
  out[outIndex + 1] = hi;
  return lo;
}

