import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  AGE_LATEST, AGE_NEVER, AGE_OLDEST, decodeHeatmap, encodeHeatmap, HEATMAP_HEADER_BYTES, HeatmapDecodeError, heatmapGeometry,
} from './heatmap-frame.ts';
import { PageAges } from './page-ages.ts';

function agesWith(pageCount: number, rounds: number[][]): PageAges {
  const a = new PageAges(pageCount);
  rounds.forEach((gfns, i) => {
    const b = new Uint32Array(Math.ceil(pageCount / 32));
    for (const g of gfns) b[g >>> 5] = b[g >>> 5]! | (1 << (g & 31));
    a.record(b, i + 1);
  });
  return a;
}

describe('heatmap frame', () => {
  it('geometry: one pixel per page, a power-of-two width near the square root', () => {
    assert.deepEqual(heatmapGeometry(65536), { pageCount: 65536, pagesPerPixel: 1, width: 256, height: 256 });
    assert.deepEqual(heatmapGeometry(262144), { pageCount: 262144, pagesPerPixel: 1, width: 512, height: 512 });
    assert.deepEqual(heatmapGeometry(100), { pageCount: 100, pagesPerPixel: 1, width: 16, height: 7 });
    assert.deepEqual(heatmapGeometry(1), { pageCount: 1, pagesPerPixel: 1, width: 1, height: 1 });
    const big = heatmapGeometry(4 << 20);
    assert.equal(big.pagesPerPixel, 4);
    assert.ok(big.width * big.height >= (4 << 20) / 4);
  });

  it('encodes ages: never 0, latest round 1, k rounds before k + 1, saturating at 255', () => {
    const rounds: number[][] = [[5], [3], [], [2], [1, 2]];
    for (let i = 0; i < 300; i++) rounds.unshift([]);
    rounds.unshift([9]); // 305 rounds before the latest: saturates
    const a = agesWith(10, rounds);
    const f = decodeHeatmap(encodeHeatmap(a));
    assert.equal(f.round, rounds.length);
    assert.equal(f.pageCount, 10);
    assert.deepEqual([...f.ages.subarray(0, 10)], [AGE_NEVER, AGE_LATEST, AGE_LATEST, 4, AGE_NEVER, 5, 0, 0, 0, AGE_OLDEST]);
    assert.equal(f.ages.length, f.width * f.height);
    assert.ok(f.ages.subarray(10).every((v) => v === 0), 'pixels past the last page are 0');
  });

  it('a pixel covering several pages takes the most recent write', () => {
    const a = agesWith(8, [[0, 5], [1], [6]]);
    const geo = heatmapGeometry(8, 2);
    assert.equal(geo.pagesPerPixel, 4);
    const f = decodeHeatmap(encodeHeatmap(a, geo));
    assert.deepEqual([...f.ages], [2, 1]);
  });

  it('round-trips header fields and matches a naive model (fast-check)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2000 }), fc.array(fc.array(fc.nat(1999), { maxLength: 40 }), { maxLength: 12 }), (pageCount, rounds) => {
        const rs = rounds.map((r) => r.filter((g) => g < pageCount));
        const a = agesWith(pageCount, rs);
        const f = decodeHeatmap(encodeHeatmap(a));
        assert.equal(f.pageCount, pageCount);
        assert.equal(f.round, rs.length);
        for (let g = 0; g < pageCount; g++) {
          let last = 0;
          rs.forEach((r, i) => {
            if (r.includes(g)) last = i + 1;
          });
          assert.equal(f.ages[g], last === 0 ? 0 : Math.min(255, rs.length - last + 1), `gfn ${g}`);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('decode errors are typed: short frame, bad magic, bad version, wrong length', () => {
    const good = encodeHeatmap(agesWith(64, [[1]]));
    assert.throws(() => decodeHeatmap(good.subarray(0, 10)), HeatmapDecodeError);
    const badMagic = good.slice();
    badMagic[0] ^= 1;
    assert.throws(() => decodeHeatmap(badMagic), /magic/);
    const badVersion = good.slice();
    badVersion[4] = 9;
    assert.throws(() => decodeHeatmap(badVersion), /version 9/);
    assert.throws(() => decodeHeatmap(good.subarray(0, HEATMAP_HEADER_BYTES + 3)), /header says/);
  });
});
