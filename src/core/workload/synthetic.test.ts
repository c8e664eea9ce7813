import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Xoshiro128, type Rng } from '../rng.ts';
import { AccessBatch, AccessKind } from './access-batch.ts';
import { AccessRate } from './access-rate.ts';
import { PagePermutation } from './page-permutation.ts';
import {
  HotspotWorkload,
  SYNTHETIC_WORKLOADS,
  UnknownWorkloadError,
  UniformWorkload,
  ZipfWorkload,
  createSyntheticWorkload,
  SequentialWorkload,
  ReadMostlyWorkload,
} from './index.ts';
import type { SyntheticWorkload } from './synthetic-base.ts';
import { ZipfSampler } from './zipf-sampler.ts';

const PAGE = 4096;

/** Runs `total` accesses through `src`, calling `visit` on each. */
function drain(src: SyntheticWorkload, total: number, visit: (kind: number, addr: number, size: number, line: number) => void): void {
  const batch = new AccessBatch(1000);
  let left = total;
  while (left > 0) {
    assert.ok(src.fill(batch, left));
    for (let i = 0; i < batch.length; i++) visit(batch.kind[i]!, batch.addr[i]!, batch.size[i]!, batch.line[i]!);
    left -= batch.length;
  }
}

describe('synthetic workloads', () => {
  for (const name of SYNTHETIC_WORKLOADS) {
    it(`${name}: deterministic for a seed, in range, aligned`, () => {
      const run = (seed: number): number[] => {
        const src = createSyntheticWorkload(name, { pageCount: 5000, basePage: 100, accessSize: 16, rng: new Xoshiro128(seed) });
        assert.equal(src.name, name);
        const out: number[] = [];
        let expectLine = 1;
        drain(src, 20_000, (kind, addr, size, line) => {
          const gfn = Math.floor(addr / PAGE);
          assert.ok(gfn >= 100 && gfn < 5100, `gfn ${gfn} out of range`);
          assert.equal(addr % 16, 0);
          assert.equal(size, 16);
          assert.equal(line, expectLine++);
          out.push(kind, addr);
        });
        return out;
      };
      assert.deepEqual(run(7), run(7));
      assert.notDeepEqual(run(7), run(8));
    });
  }

  it('rejects an unknown name and bad options', () => {
    assert.throws(() => createSyntheticWorkload('bogus', { pageCount: 1, rng: new Xoshiro128(1) }), UnknownWorkloadError);
    assert.throws(() => new UniformWorkload({ pageCount: 0, rng: new Xoshiro128(1) }), RangeError);
    assert.throws(() => new UniformWorkload({ pageCount: 8, accessSize: 3, rng: new Xoshiro128(1) }), RangeError);
    assert.throws(() => new HotspotWorkload({ pageCount: 8, hotFraction: 0, rng: new Xoshiro128(1) }), RangeError);
    assert.throws(() => new ZipfWorkload({ pageCount: 8, s: 0, rng: new Xoshiro128(1) }), RangeError);
  });

  it('fill(batch, n) writes exactly n; count ends the source', () => {
    const src = new UniformWorkload({ pageCount: 64, count: 2500, rng: new Xoshiro128(3) });
    const batch = new AccessBatch(1000);
    assert.equal(src.fill(batch, 7), true);
    assert.equal(batch.length, 7);
    assert.equal(src.fill(batch), true);
    assert.equal(batch.length, 1000);
    assert.equal(src.fill(batch, 5000), true);
    assert.equal(batch.length, 1000);
    assert.equal(src.fill(batch), true);
    assert.equal(batch.length, 493);
    assert.equal(src.fill(batch), false);
    assert.equal(batch.length, 0);
    assert.equal(src.produced, 2500);
  });

  it('uniform: distinct pages after k writes ≈ M(1 − e^(−k/M))', () => {
    const M = 20_000;
    for (const k of [5_000, 20_000, 60_000]) {
      const seen = new Uint8Array(M);
      let distinct = 0;
      drain(new UniformWorkload({ pageCount: M, rng: new Xoshiro128(k) }), k, (kind, addr) => {
        assert.equal(kind, AccessKind.Store);
        const gfn = Math.floor(addr / PAGE);
        if (seen[gfn] === 0) {
          seen[gfn] = 1;
          distinct++;
        }
      });
      const expected = M * (1 - Math.exp(-k / M));
      assert.ok(Math.abs(distinct - expected) / expected < 0.02, `k=${k}: ${distinct} vs ${expected.toFixed(0)}`);
    }
  });

  it('hotspot: hotWeight of the writes land in the hot region, spread over it', () => {
    const src = new HotspotWorkload({ pageCount: 10_000, hotFraction: 0.1, hotWeight: 0.9, hotStartPage: 9_500, rng: new Xoshiro128(5) });
    assert.equal(src.hotPages, 1000);
    const hotSeen = new Set<number>();
    let hot = 0;
    const total = 100_000;
    drain(src, total, (_k, addr) => {
      const gfn = Math.floor(addr / PAGE);
      if (src.isHot(gfn)) {
        hot++;
        hotSeen.add(gfn);
      }
    });
    assert.ok(Math.abs(hot / total - 0.9) < 0.01, `hot share ${hot / total}`);
    assert.equal(hotSeen.size, 1000); // wraps: pages 9500..9999 and 0..499
    assert.ok(src.isHot(9_999) && src.isHot(0) && src.isHot(499) && !src.isHot(500) && !src.isHot(9_499));
  });

  it('zipf: rank-frequency follows k^-s', () => {
    const n = 1000;
    for (const s of [0.8, 1.0, 1.3]) {
      const src = new ZipfWorkload({ pageCount: n, s, permute: false, rng: new Xoshiro128(11) });
      const freq = new Float64Array(n);
      const total = 300_000;
      drain(src, total, (_k, addr) => {
        freq[Math.floor(addr / PAGE)]!++;
      });
      let harmonic = 0;
      for (let k = 1; k <= n; k++) harmonic += k ** -s;
      for (const k of [1, 2, 3, 5, 10]) {
        const expected = (total * k ** -s) / harmonic;
        const got = freq[k - 1]!;
        assert.ok(Math.abs(got - expected) / expected < 0.05, `s=${s} rank ${k}: ${got} vs ${expected.toFixed(0)}`);
      }
      // Least-squares slope of log f vs log k over ranks 1..50 ≈ −s.
      let sx = 0, sy = 0, sxx = 0, sxy = 0;
      const m = 50;
      for (let k = 1; k <= m; k++) {
        const x = Math.log(k), y = Math.log(freq[k - 1]!);
        sx += x; sy += y; sxx += x * x; sxy += x * y;
      }
      const slope = (m * sxy - sx * sy) / (m * sxx - sx * sx);
      assert.ok(Math.abs(slope + s) < 0.06, `s=${s}: slope ${slope}`);
    }
  });

  it('zipf: permuted ranks keep the same shape, scattered over pages', () => {
    const n = 1 << 12;
    const src = new ZipfWorkload({ pageCount: n, s: 1, rng: new Xoshiro128(12) });
    const top = src.pageOfRank(1);
    let hitsTop = 0;
    const total = 100_000;
    drain(src, total, (_k, addr) => {
      if (Math.floor(addr / PAGE) === top) hitsTop++;
    });
    let harmonic = 0;
    for (let k = 1; k <= n; k++) harmonic += 1 / k;
    assert.ok(Math.abs(hitsTop / total - 1 / harmonic) < 0.01);
    const firstTen = new Set(Array.from({ length: 10 }, (_, i) => src.pageOfRank(i + 1)));
    assert.equal(firstTen.size, 10);
    assert.ok([...firstTen].some((p) => p > 100), 'ranks are scattered, not packed at page 0');
  });

  it('zipf: scales to 2^28 pages without O(pages) tables (heap stays small)', () => {
    const heap0 = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    const src = new ZipfWorkload({ pageCount: 2 ** 28, s: 0.99, rng: new Xoshiro128(13) });
    const batch = new AccessBatch(4096);
    let maxGfn = 0;
    for (let i = 0; i < 100; i++) {
      src.fill(batch);
      for (let j = 0; j < batch.length; j++) maxGfn = Math.max(maxGfn, Math.floor(batch.addr[j]! / PAGE));
    }
    const grown = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - heap0;
    assert.ok(maxGfn < 2 ** 28);
    assert.ok(maxGfn > 2 ** 20, 'ranks are spread over the whole 2^28-page range');
    // A per-page CDF or permutation table would be ≥ 1 GiB at 2^28 pages.
    assert.ok(grown < 64 * 1024 * 1024, `zipf over 2^28 pages grew the heap by ${(grown / 1048576).toFixed(1)} MiB`);
  });

  it('page permutation is a bijection', () => {
    for (const n of [1, 2, 3, 1000, 1024, 4099]) {
      const perm = new PagePermutation(n, new Xoshiro128(n));
      const seen = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const v = perm.map(i);
        assert.ok(v >= 0 && v < n && Number.isInteger(v));
        assert.equal(seen[v], 0, `n=${n}: ${v} twice`);
        seen[v] = 1;
      }
    }
  });

  it('zipf sampler stays in [1, n] at extreme exponents', () => {
    const rng = new Xoshiro128(1);
    for (const s of [0.01, 1e-9 + 1, 3, 10]) {
      const z = new ZipfSampler(7, s);
      for (let i = 0; i < 10_000; i++) {
        const k = z.sample(rng);
        assert.ok(k >= 1 && k <= 7 && Number.isInteger(k));
      }
    }
  });

  it('sequential: sweeps with stride and wraps', () => {
    const src = new SequentialWorkload({ pageCount: 10, basePage: 50, startPage: 8, stride: 3, rng: new Xoshiro128(1) });
    const gfns: number[] = [];
    drain(src, 8, (_k, addr) => gfns.push(Math.floor(addr / PAGE)));
    assert.deepEqual(gfns, [58, 51, 54, 57, 50, 53, 56, 59]);
  });

  it('read-mostly: writeFraction of the accesses are stores', () => {
    const src = new ReadMostlyWorkload({ pageCount: 1000, writeFraction: 0.05, rng: new Xoshiro128(2) });
    let stores = 0;
    let loads = 0;
    drain(src, 200_000, (kind) => {
      if (kind === AccessKind.Store) stores++;
      else if (kind === AccessKind.Load) loads++;
    });
    assert.equal(stores + loads, 200_000);
    assert.ok(Math.abs(stores / 200_000 - 0.05) < 0.003, `store share ${stores / 200_000}`);
  });

  /**
   * Bytes allocated in the young generation while each generator, warmed up,
   * produces 50 batches of 4096 accesses: new-space growth, with a GC inside
   * the window counted as a failure (it would hide the growth). Nothing on an
   * optimised fill path allocates; one boxed double per access would show as
   * ~3 MB.
   */
  function youngBytesWhileFilling(makeRng: (seed: number) => Rng): Record<string, number> {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const newSpaceUsed = (): number => getHeapSpaceStatistics().find((sp) => sp.space_name === 'new_space')!.space_used_size;
    const batch = new AccessBatch(4096);
    const out: Record<string, number> = {};
    for (const name of SYNTHETIC_WORKLOADS) {
      const src = createSyntheticWorkload(name, { pageCount: 1 << 20, rng: makeRng(9) });
      for (let i = 0; i < 300; i++) src.fill(batch); // warm up (JIT)
      let best = Infinity;
      for (let attempt = 0; attempt < 3 && best > 0; attempt++) {
        gc();
        const before = newSpaceUsed();
        for (let i = 0; i < 50; i++) src.fill(batch);
        const grown = newSpaceUsed() - before;
        best = Math.min(best, grown < 0 ? Infinity : grown); // < 0: a GC ran
      }
      out[name] = best;
    }
    return out;
  }

  it('fill allocates nothing (with an Rng that does not allocate)', () => {
    for (const [name, bytes] of Object.entries(youngBytesWhileFilling((seed) => new Int32StateRng(seed)))) {
      assert.ok(bytes < 16 * 1024, `${name}: ${bytes} bytes allocated for 204,800 accesses`);
    }
  });

  it('fill allocates nothing with Xoshiro128', () => {
    for (const [name, bytes] of Object.entries(youngBytesWhileFilling((seed) => new Xoshiro128(seed)))) {
      assert.ok(bytes < 16 * 1024, `${name}: ${bytes} bytes allocated for 204,800 accesses`);
    }
  });
});

/** xorshift128 with int32 state (Smis in V8, so nothing is boxed); test-only. */
class Int32StateRng implements Rng {
  private x: number;
  private y = 362436069;
  private z = 521288629;
  private w = 88675123;
  constructor(seed: number) {
    this.x = (seed * 0x9e3779b1) | 0 || 1;
  }
  nextU32(): number {
    const t = this.x ^ (this.x << 11);
    this.x = this.y;
    this.y = this.z;
    this.z = this.w;
    this.w = this.w ^ (this.w >>> 19) ^ (t ^ (t >>> 8));
    return this.w >>> 0;
  }
  nextFloat(): number {
    return ((this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6)) / 9007199254740992;
  }
  nextInt(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }
}

describe('AccessRate', () => {
  it('counts accesses per window and carries the fraction exactly', () => {
    const r = new AccessRate(3);
    // 3 per second: windows of 0.5 s give 1, 2, 1, 2, ...
    assert.deepEqual([1, 2, 3, 4].map(() => r.accessesIn(500_000_000)), [1, 2, 1, 2]);
    assert.equal(r.total, 6);
  });

  it('totals are exact over many random windows, even for huge products', () => {
    const rng = new Xoshiro128(4);
    for (const rate of [1, 7, 1000, 123_457, 0xffffffff]) {
      const r = new AccessRate(rate);
      let ns = 0n;
      let sum = 0n;
      for (let i = 0; i < 20_000; i++) {
        const w = i % 1000 === 0 ? rng.nextInt(2 ** 40) : rng.nextInt(3_000_000);
        ns += BigInt(w);
        sum += BigInt(r.accessesIn(w));
        if (i % 997 === 0) assert.equal(sum, (ns * BigInt(rate)) / 1_000_000_000n, `rate ${rate} at window ${i}`);
      }
      assert.equal(sum, (ns * BigInt(rate)) / 1_000_000_000n);
    }
  });

  it('rejects a fractional rate or window', () => {
    assert.throws(() => new AccessRate(1.5), RangeError);
    assert.throws(() => new AccessRate(-1), RangeError);
    assert.throws(() => new AccessRate(10).accessesIn(0.5), RangeError);
  });
});
