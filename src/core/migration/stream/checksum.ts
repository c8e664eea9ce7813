/**
 * Checksums of the migration stream: a 64-bit, 4-lane hash over little-endian
 * u32 words, in plain TypeScript so the core needs no `node:*` import. Each
 * lane step takes two words, one xored in before the rotate-multiply and one
 * added after it:
 *
 *   v ← rotl13(v ⊕ w[i]) · P1 + w[i+4]        (lanes 1…4: i = 8k + 0…3)
 *
 * so a 32-byte stripe costs four multiplies instead of eight (four
 * independent lanes so the multiplies pipeline; an xxHash32-style avalanche at
 * the end). Measured here (Node 20, same run, shared 2-core box): 0.71–0.78 µs
 * per 4 KiB page against 1.0–1.17 µs for the one-word step of stream major 1,
 * 1.2 µs for an xxHash32 round, 1.22 µs for `zlib.crc32` and 1.26 µs for
 * xxhash-wasm `h64Raw` (node-ecosystem.md §C); copying the page costs 0.4 µs.
 *
 * Strength: for fixed words a lane step is a bijection of the lane state
 * (xor, rotate, odd multiply, add), and for a fixed state and one word it is
 * a bijection of the other word, so a one-word change always changes the
 * lane, and a lane difference survives every later step with equal words.
 * Random changes confined to one lane collide with probability about 2^-32
 * (as for any 32-bit-lane hash such as xxHash32). A known blind spot, shared
 * with the major-1 step: flipping bit 18 of w[i] and bit 31 of the next word
 * the same lane consumes cancels (2^31·P1 ≡ 2^31 mod 2^32); TCP's own
 * checksum and the end-to-end digest stand behind it.
 *
 * Not cryptographic: it detects corruption (bit flips, truncation, reordered
 * words), not an attacker; TLS is the answer to that. This function gives
 *   - the per-record checksum (a batch's checksum covers its descriptors and
 *     the page hashes of its payload, so each page is hashed once per side),
 *   - the end-to-end memory digest (a hash of all page hashes + vCPU state);
 * the per-page content hash is the same lane step on 16 lanes, so that it
 * runs as WebAssembly SIMD (page-hash.ts, stream major 3).
 *
 * Invariants: input is read as little-endian u32 words (a Uint32Array view on
 * a little-endian host — every platform Node supports); a byte input whose
 * offset is not 4-aligned, or whose length is not a multiple of 4, takes the
 * slow DataView path and yields the same value as the aligned path would.
 * Output: two u32 (lo, hi) written into `out[outIndex]`, `out[outIndex + 1]`.
 */

import { finishLanes, P1, P2, P3, P4 } from '../../pagehash/lanes.ts';
import { hashPage, PAGE_BYTES } from '../../pagehash/page-hash.ts';

/** Seeds, one per use, so a page hash can never be confused with a record checksum. */
export const SEED_PAGE = 0x50414745; // "PAGE"
export const SEED_RECORD = 0x5245434f; // "RECO"
export const SEED_DIGEST = 0x44494745; // "DIGE"

/**
 * Hashes `wordCount` u32 words of `words` starting at `wordOffset`, mixing in
 * `seed` and `extra` (callers put a length or a record type there). Writes
 * the 64-bit result as (lo, hi) into `out` and returns lo.
 */
export function hashWords(
  words: Uint32Array,
  wordOffset: number,
  wordCount: number,
  seed: number,
  extra: number,
  out: Uint32Array,
  outIndex: number,
): number {
  let v1 = (seed + P1 + P2) | 0;
  let v2 = (seed + P2) | 0;
  let v3 = seed | 0;
  let v4 = (seed - P1) | 0;
  let i = wordOffset;
  const stripesEnd = wordOffset + (wordCount & ~7);
  let x = 0;
  for (; i < stripesEnd; i += 8) {
    // Each step is a bijection of the lane state for fixed words (xor, rotate,
    // odd multiply, add), so a difference in one word survives to the end.
    x = v1 ^ words[i]!;
    v1 = (Math.imul((x << 13) | (x >>> 19), P1) + words[i + 4]!) | 0;
    x = v2 ^ words[i + 1]!;
    v2 = (Math.imul((x << 13) | (x >>> 19), P1) + words[i + 5]!) | 0;
    x = v3 ^ words[i + 2]!;
    v3 = (Math.imul((x << 13) | (x >>> 19), P1) + words[i + 6]!) | 0;
    x = v4 ^ words[i + 3]!;
    v4 = (Math.imul((x << 13) | (x >>> 19), P1) + words[i + 7]!) | 0;
  }
  const end = wordOffset + wordCount;
  for (; i < end; i++) {
    v1 = (v1 + Math.imul(words[i]!, P3)) | 0;
    v1 = Math.imul((v1 << 17) | (v1 >>> 15), P4);
  }
  return finishLanes(v1, v2, v3, v4, wordCount, extra, out, outIndex);
}

/**
 * Hashes `length` bytes of `bytes` from `byteOffset` (zero-padded to a whole
 * word). Fast when the absolute offset is 4-aligned and `length` is a multiple
 * of 4; otherwise copies through a scratch buffer.
 */
export function hashBytes(
  bytes: Uint8Array,
  byteOffset: number,
  length: number,
  seed: number,
  extra: number,
  out: Uint32Array,
  outIndex: number,
): number {
  const abs = bytes.byteOffset + byteOffset;
  if ((abs & 3) === 0 && (length & 3) === 0) {
    const words = new Uint32Array(bytes.buffer, abs, length >>> 2);
    return hashWords(words, 0, length >>> 2, seed, extra, out, outIndex);
  }
  const wordCount = (length + 3) >>> 2;
  const scratch = new Uint32Array(wordCount);
  new Uint8Array(scratch.buffer).set(bytes.subarray(byteOffset, byteOffset + length));
  return hashWords(scratch, 0, wordCount, seed, extra, out, outIndex);
}

/**
 * Hash of one 4 KiB page at `bytes[byteOffset]` (page-hash.ts: the 16-lane
 * page hash, seed SEED_PAGE), written to out[i], out[i+1]; any alignment,
 * fastest for a page in an `allocHashable` buffer.
 */
export { hashPage };

/** The page hash of an all-zero page: a zero page is recognised by hash, then confirmed. */
export const ZERO_PAGE_HASH: Readonly<{ lo: number; hi: number }> = (() => {
  const out = new Uint32Array(2);
  hashPage(new Uint8Array(PAGE_BYTES), 0, out, 0);
  return { lo: out[0]!, hi: out[1]! };
})();

/** True if the 4 KiB page at `bytes[byteOffset]` is all zero (4-aligned fast path). */
export function isZeroPage(bytes: Uint8Array, byteOffset: number): boolean {
  const abs = bytes.byteOffset + byteOffset;
  if ((abs & 3) === 0) {
    const w = new Uint32Array(bytes.buffer, abs, PAGE_BYTES >>> 2);
    for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
    return true;
  }
  for (let i = 0; i < PAGE_BYTES; i++) if (bytes[byteOffset + i] !== 0) return false;
  return true;
}
