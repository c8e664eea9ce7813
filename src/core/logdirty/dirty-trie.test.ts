import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  DirtyTrie,
  LOGDIRTY_MAX_PFNS,
  PFNS_PER_L3_SLOT,
  PFNS_PER_L4_SLOT,
  PFNS_PER_LEAF,
  l1Index,
  l2Index,
  l3Index,
  l4Index,
  popcount32,
} from './dirty-trie.ts';
import { BoundedPageAllocator } from './page-allocator.ts';

test('index split matches Xen for pfns above 2^32', () => {
  const pfn = 3 * PFNS_PER_L4_SLOT + 5 * PFNS_PER_L3_SLOT + 7 * PFNS_PER_LEAF + 1234;
  assert.equal(l4Index(pfn), 3);
  assert.equal(l3Index(pfn), 5);
  assert.equal(l2Index(pfn), 7);
  assert.equal(l1Index(pfn), 1234);
  // bit 32 belongs to i3 (bits 32..24): >> would drop it.
  assert.equal(l3Index(2 ** 32), 256);
  assert.equal(l4Index(LOGDIRTY_MAX_PFNS - 1), 511);
});

test('dirty mark allocates the path lazily; clean mark never allocates', () => {
  const alloc = new BoundedPageAllocator();
  const t = new DirtyTrie(alloc);
  assert.equal(t.markClean(42), false);
  assert.equal(t.allocatedPages, 0);
  assert.equal(t.markDirty(42), true);
  assert.equal(t.allocatedPages, 4); // top, L3, L2, leaf
  assert.equal(t.markDirty(42), false);
  assert.equal(t.markDirty(43), true);
  assert.equal(t.allocatedPages, 4);
  assert.equal(t.markDirty(PFNS_PER_LEAF), true); // a second leaf under the same L2
  assert.equal(t.allocatedPages, 5);
  assert.equal(t.markClean(PFNS_PER_L3_SLOT * 3), false);
  assert.equal(t.allocatedPages, 5);
  assert.equal(t.test(42), true);
  assert.equal(t.markClean(42), true);
  assert.equal(t.test(42), false);
  t.freeAll();
  assert.equal(t.allocatedPages, 0);
  assert.equal(alloc.livePages, 0);
});

test('allocation failure loses the mark and counts failedAllocs until the tree is freed', () => {
  const t = new DirtyTrie(new BoundedPageAllocator(3));
  assert.equal(t.markDirty(7), false);
  assert.equal(t.failedAllocs, 1);
  assert.equal(t.test(7), false);
  t.freeAll();
  assert.equal(t.failedAllocs, 0);
});

test('out-of-range pfns are ignored', () => {
  const t = new DirtyTrie(new BoundedPageAllocator());
  assert.equal(t.markDirty(LOGDIRTY_MAX_PFNS), false);
  assert.equal(t.markDirty(-1), false);
  assert.equal(t.allocatedPages, 0);
});

test('copyOut: partial last leaf copies ceil(n/8) bytes, clear zeroes the whole leaf', () => {
  const t = new DirtyTrie(new BoundedPageAllocator());
  t.markDirty(3);
  t.markDirty(20);
  t.markDirty(PFNS_PER_LEAF - 1);
  const dst = new Uint8Array(4).fill(0xff);
  const walked = t.copyOut(dst, 0, 0, 17, true);
  assert.equal(walked, 24);
  assert.deepEqual([...dst], [0b1000, 0, 0b10000, 0xff]);
  assert.equal(t.test(PFNS_PER_LEAF - 1), false); // cleared beyond the copied bytes, as Xen's clear_page
  assert.equal(t.allocatedPages, 4); // leaves and nodes stay
});

type Op =
  | { kind: 'dirty'; pfn: number }
  | { kind: 'clean'; pfn: number }
  | { kind: 'peek'; first: number; count: number }
  | { kind: 'clear'; first: number; count: number };

// pfns clustered in a few regions of the 2^42 space (so leaves are shared), plus a few anywhere.
const REGIONS = [0, PFNS_PER_L3_SLOT - 64, 2 ** 32 - 100, 2 ** 33 + 12345, LOGDIRTY_MAX_PFNS - 70000];
const pfnArb = fc.oneof(
  fc.tuple(fc.constantFrom(...REGIONS), fc.integer({ min: 0, max: 70000 })).map(([b, o]) => Math.min(b + o, LOGDIRTY_MAX_PFNS - 1)),
  fc.integer({ min: 0, max: LOGDIRTY_MAX_PFNS - 1 }),
);
const rangeArb = fc
  .tuple(fc.constantFrom(...REGIONS), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 * PFNS_PER_LEAF }))
  .map(([b, k, count]) => ({ first: Math.floor(b / PFNS_PER_LEAF) * PFNS_PER_LEAF + k * PFNS_PER_LEAF, count }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: pfnArb.map((pfn) => ({ kind: 'dirty' as const, pfn })) },
  { weight: 2, arbitrary: pfnArb.map((pfn) => ({ kind: 'clean' as const, pfn })) },
  { weight: 1, arbitrary: rangeArb.map((r) => ({ kind: 'peek' as const, ...r })) },
  { weight: 1, arbitrary: rangeArb.map((r) => ({ kind: 'clear' as const, ...r })) },
);

test('trie agrees with a Set model (marks, cleans, peeks, clears; pfns up to 2^42)', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 120 }), (ops) => {
      const t = new DirtyTrie(new BoundedPageAllocator());
      const model = new Set<number>();
      for (const op of ops) {
        switch (op.kind) {
          case 'dirty':
            assert.equal(t.markDirty(op.pfn), !model.has(op.pfn));
            model.add(op.pfn);
            break;
          case 'clean':
            assert.equal(t.markClean(op.pfn), model.has(op.pfn));
            model.delete(op.pfn);
            break;
          case 'peek':
          case 'clear': {
            const clear = op.kind === 'clear';
            const bytes = Math.ceil(op.count / 8);
            const dst = new Uint8Array(bytes + 1).fill(0xa5);
            const walked = t.copyOut(dst, 1, op.first, op.count, clear);
            const end = Math.min(op.first + bytes * 8, LOGDIRTY_MAX_PFNS);
            assert.equal(walked, end - op.first);
            assert.equal(dst[0], 0xa5);
            for (let i = 0; i < walked; i++) {
              const bit = ((dst[1 + (i >> 3)] as number) >> (i & 7)) & 1;
              assert.equal(bit, model.has(op.first + i) ? 1 : 0, `pfn ${op.first + i}`);
            }
            if (clear) {
              // Whole leaves touched by the walk are cleared.
              const leafEnd = Math.ceil(end / PFNS_PER_LEAF) * PFNS_PER_LEAF;
              for (const p of [...model]) if (p >= op.first && p < leafEnd) model.delete(p);
            }
            break;
          }
        }
      }
      const seen: number[] = [];
      t.forEachDirty((pfn) => seen.push(pfn));
      assert.deepEqual(seen, [...model].sort((a, b) => a - b));
      assert.equal(t.countDirty(), model.size);
      for (const p of model) assert.equal(t.test(p), true);
    }),
    { numRuns: 300 },
  );
});

test('forEachDirty honours a sub-range, including partial words', () => {
  const t = new DirtyTrie(new BoundedPageAllocator());
  const pfns = [0, 31, 32, 33, 63, 64, 100, PFNS_PER_LEAF + 5, 2 ** 40 + 3];
  for (const p of pfns) t.markDirty(p);
  const seen: number[] = [];
  t.forEachDirty((p) => seen.push(p), 31, 64);
  assert.deepEqual(seen, [31, 32, 33, 63]);
  seen.length = 0;
  t.forEachDirty((p) => seen.push(p), 65);
  assert.deepEqual(seen, [100, PFNS_PER_LEAF + 5, 2 ** 40 + 3]);
});

test('popcount32', () => {
  assert.equal(popcount32(0), 0);
  assert.equal(popcount32(0xffffffff), 32);
  assert.equal(popcount32(0x80000001), 2);
});
