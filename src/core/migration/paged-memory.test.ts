/** PagedMemory: a run written at once reads back like the same pages written one by one, across slab edges. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PagedMemory } from './paged-memory.ts';

const SLAB_PAGES = 1 << 14;

test('writePages(gfn, n) = n × writePage, wherever the run starts and ends', () => {
  fc.assert(
    fc.property(fc.integer({ min: SLAB_PAGES - 40, max: SLAB_PAGES + 5 }), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 7 }), (gfn, n, pad) => {
      const pageCount = 2 * SLAB_PAGES + 10;
      const src = new Uint8Array(pad + n * 4096);
      for (let i = 0; i < src.length; i++) src[i] = (i * 7 + gfn) & 255;
      const a = new PagedMemory(pageCount);
      const b = new PagedMemory(pageCount);
      a.writePages(gfn, n, src, pad);
      for (let i = 0; i < n; i++) b.writePage(gfn + i, src, pad + i * 4096);
      const x = new Uint8Array(4096);
      const y = new Uint8Array(4096);
      for (let g = gfn - 1; g <= gfn + n; g++) {
        assert.equal(a.readPage(g, x, 0), b.readPage(g, y, 0), `populated ${g}`);
        assert.deepEqual(x, y, `page ${g}`);
      }
    }),
    { numRuns: 60 },
  );
});
