/**
 * The page hash: the WebAssembly kernel gives the values of the plain-TS
 * definition wherever the page sits (lent arena buffers, foreign buffers,
 * any alignment), the arena lends and takes back buffers, and without
 * WebAssembly the values are the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HashArena, pageHashRef } from './page-hash.ts';
import { hashPage, SEED_PAGE } from './checksum.ts';

const arena = new HashArena(4 * 1024 * 1024);

test('the WebAssembly kernel is available on this Node (else everything below runs the fallback)', () => {
  assert.equal(arena.accelerated, true);
});

test('kernel = definition, for pages in the arena and outside it, at any alignment', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 4096, maxLength: 4096 }), fc.integer({ min: 0, max: 63 }), (bytes, shift) => {
      const want = new Uint32Array(2);
      pageHashRef(bytes, 0, SEED_PAGE, want, 0);
      const inside = arena.alloc(4096 + 64)!;
      inside.set(bytes, shift);
      const got = new Uint32Array(2);
      arena.hashPage(inside, shift, got, 0);
      assert.deepEqual([...got], [...want], 'in the arena');
      arena.free(inside);
      const outside = new Uint8Array(4096 + 64);
      outside.set(bytes, shift);
      arena.hashPage(outside, shift, got, 0);
      assert.deepEqual([...got], [...want], 'outside it');
      hashPage(outside, shift, got, 0);
      assert.deepEqual([...got], [...want], 'through checksum.ts hashPage');
    }),
    { numRuns: 200 },
  );
});

test('swapping two stripes of a block, or two blocks, changes the hash', () => {
  const p = new Uint8Array(4096);
  for (let i = 0; i < p.length; i++) p[i] = (i * 131 + (i >>> 8)) & 255;
  const ref = new Uint32Array(2);
  const got = new Uint32Array(2);
  arena.hashPage(p, 0, ref, 0);
  const swapped = p.slice();
  swapped.set(p.subarray(32, 64), 0);
  swapped.set(p.subarray(0, 32), 32);
  arena.hashPage(swapped, 0, got, 0);
  assert.notDeepEqual([...got], [...ref], 'stripes 0 and 1');
  const blocks = p.slice();
  blocks.set(p.subarray(128, 256), 0);
  blocks.set(p.subarray(0, 128), 128);
  arena.hashPage(blocks, 0, got, 0);
  assert.notDeepEqual([...got], [...ref], 'blocks 0 and 1');
});

test('the arena lends distinct buffers, reuses what is freed, and says when it is full', () => {
  const small = new HashArena(1024 * 1024); // 16 granules of 64 KiB, the first reserved
  const a = small.alloc(100_000)!;
  const b = small.alloc(100_000)!;
  assert.ok(small.owns(a) && small.owns(b));
  assert.ok(a.byteOffset + 131072 <= b.byteOffset || b.byteOffset + 131072 <= a.byteOffset, 'no overlap');
  small.free(a);
  assert.equal(small.alloc(100_000)!.byteOffset, a.byteOffset, 'freed buffer reused');
  assert.equal(small.alloc(2 * 1024 * 1024), undefined, 'too big: undefined, the caller allocates elsewhere');
  small.free(new Uint8Array(10)); // not the arena's: ignored
});
