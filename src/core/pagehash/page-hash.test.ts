/**
 * The page hash: the WebAssembly kernel gives the values of the plain-TS
 * definition wherever the page sits (a hashable memory, a foreign buffer,
 * any alignment), and structure inside a page (stripe or block order) counts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { allocHashable, hashesInPlace, hashPage, pageHashRef } from './page-hash.ts';
import { SEED_PAGE } from '../migration/stream/checksum.ts';

test('the WebAssembly kernel is available on this Node (else every hash below is the fallback)', () => {
  assert.equal(hashesInPlace(allocHashable(4096)), true);
  assert.equal(hashesInPlace(new Uint8Array(4096)), false);
});

test('kernel = definition, in a hashable memory and outside it, at any alignment', () => {
  const inside = allocHashable(4096 + 64);
  const got = new Uint32Array(2);
  const want = new Uint32Array(2);
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 4096, maxLength: 4096 }), fc.integer({ min: 0, max: 63 }), (bytes, shift) => {
      pageHashRef(bytes, 0, SEED_PAGE, want, 0);
      inside.set(bytes, shift);
      hashPage(inside, shift, got, 0);
      assert.deepEqual([...got], [...want], 'in place');
      const outside = new Uint8Array(4096 + 64);
      outside.set(bytes, shift);
      hashPage(outside, shift, got, 0);
      assert.deepEqual([...got], [...want], 'copied to scratch');
    }),
    { numRuns: 200 },
  );
});

test('allocHashable gives zeroed, separate memories of the asked size', () => {
  const a = allocHashable(100_000);
  const b = allocHashable(100_000);
  assert.equal(a.length, 100_000);
  assert.notEqual(a.buffer, b.buffer);
  assert.ok(a.every((x) => x === 0));
});

test('swapping two stripes of a block, or two blocks, changes the hash', () => {
  const p = allocHashable(4096);
  for (let i = 0; i < p.length; i++) p[i] = (i * 131 + (i >>> 8)) & 255;
  const ref = new Uint32Array(2);
  const got = new Uint32Array(2);
  hashPage(p, 0, ref, 0);
  const swapped = p.slice();
  swapped.set(p.subarray(32, 64), 0);
  swapped.set(p.subarray(0, 32), 32);
  hashPage(swapped, 0, got, 0);
  assert.notDeepEqual([...got], [...ref], 'stripes 0 and 1');
  const blocks = p.slice();
  blocks.set(p.subarray(128, 256), 0);
  blocks.set(p.subarray(0, 128), 128);
  hashPage(blocks, 0, got, 0);
  assert.notDeepEqual([...got], [...ref], 'blocks 0 and 1');
});

test('a view too short for a whole page at that offset is refused, not hashed from stale bytes', () => {
  const out = new Uint32Array(2);
  hashPage(new Uint8Array(4096).fill(7), 0, out, 0);
  assert.throws(() => hashPage(new Uint8Array(100).fill(7), 0, out, 0), RangeError);
  assert.throws(() => hashPage(allocHashable(8192), 4097, out, 0), RangeError);
  assert.throws(() => hashPage(new Uint8Array(8192), -1, out, 0), RangeError);
});
