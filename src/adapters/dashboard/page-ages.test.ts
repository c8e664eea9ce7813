import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { PageAges } from './page-ages.ts';

function bitmapOf(pageCount: number, gfns: number[]): Uint32Array {
  const b = new Uint32Array(Math.ceil(pageCount / 32) + 1);
  for (const g of gfns) b[g >>> 5] = b[g >>> 5]! | (1 << (g & 31));
  return b;
}

describe('PageAges', () => {
  it('records the last round each page was dirty and counts distinct pages ever dirtied', () => {
    const a = new PageAges(100);
    assert.equal(a.record(bitmapOf(100, [0, 31, 32, 99]), 1), 4);
    assert.equal(a.record(bitmapOf(100, [31, 50]), 2), 2);
    assert.deepEqual([a.lastDirtyRound[0], a.lastDirtyRound[31], a.lastDirtyRound[32], a.lastDirtyRound[50], a.lastDirtyRound[99], a.lastDirtyRound[1]], [1, 2, 1, 2, 1, 0]);
    assert.equal(a.everDirty, 5);
    assert.equal(a.round, 2);
  });

  it('ignores bits past the last page (a bitmap padded to whole words)', () => {
    const a = new PageAges(33);
    const b = bitmapOf(64, [32, 33, 63, 64]);
    assert.equal(a.record(b, 1), 1);
    assert.equal(a.everDirty, 1);
  });

  it('refuses a round that is not after the previous one', () => {
    const a = new PageAges(8);
    a.record(bitmapOf(8, [1]), 3);
    assert.throws(() => a.record(bitmapOf(8, [1]), 3), RangeError);
  });

  it('reset forgets everything', () => {
    const a = new PageAges(8);
    a.record(bitmapOf(8, [1, 2]), 1);
    a.reset();
    assert.equal(a.everDirty, 0);
    assert.equal(a.round, 0);
    assert.equal(a.lastDirtyRound.reduce((x, y) => x + y, 0), 0);
  });
});
