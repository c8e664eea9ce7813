/** The stream hash: aligned and unaligned paths agree, single-word changes to a page are always seen. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hashBytes, hashPage, SEED_PAGE } from './checksum.ts';

function page(seed: number): Uint8Array {
  const p = new Uint8Array(4096);
  let x = seed | 1;
  for (let i = 0; i < p.length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    p[i] = x & 255;
  }
  return p;
}

test('unaligned input and odd lengths hash as their aligned copy', () => {
  const src = page(7);
  const a = new Uint32Array(2), b = new Uint32Array(2);
  for (const len of [0, 1, 3, 4, 28, 31, 32, 33, 100, 4096]) {
    const shifted = new Uint8Array(len + 3);
    shifted.set(src.subarray(0, len), 3);
    hashBytes(shifted, 3, len, SEED_PAGE, len, a, 0);
    hashBytes(src.slice(0, len), 0, len, SEED_PAGE, len, b, 0);
    assert.deepEqual([...a], [...b], `length ${len}`);
  }
});

test('changing any one word of a page changes its hash', () => {
  const p = page(3);
  const w = new Uint32Array(p.buffer);
  const ref = new Uint32Array(2), got = new Uint32Array(2);
  hashPage(p, 0, ref, 0);
  for (let i = 0; i < w.length; i++) {
    for (const bit of [0, 13, 18, 31]) {
      w[i] = (w[i]! ^ (1 << bit)) >>> 0;
      hashPage(p, 0, got, 0);
      w[i] = (w[i]! ^ (1 << bit)) >>> 0;
      assert.ok(got[0] !== ref[0] || got[1] !== ref[1], `word ${i} bit ${bit}`);
    }
  }
});
