/**
 * Log-dirty PEEK / CLEAN on a 1 TiB sparse guest (2^28 pfns) with a few
 * thousand scattered dirty pages, against a raw loop over a flat bitmap of
 * the same size (2^28 bits = 32 MiB) in the same run.
 *
 *   node --import tsx bench/logdirty.bench.ts
 *
 * Each case runs a few warm-up iterations, then N timed ones; the median is
 * reported. Re-dirtying between CLEAN iterations is outside the timing and
 * the same for both sides. "ratio" = raw time / trie time: ≥ 1 means the
 * trie is as fast as the raw loop; the target is ≥ 0.5.
 */
import { performance } from 'node:perf_hooks';
import { Xoshiro128 } from '../src/core/rng.ts';
import { LogDirty, type LogDirtyMechanism, type PausableDomain } from '../src/core/logdirty/log-dirty.ts';
import { scanWords } from '../src/core/logdirty/dirty-trie.ts';

const GUEST_PFNS = 2 ** 28; // 1 TiB of 4 KiB pages
const DIRTY_PAGES = 4000;
const WARMUP = 3;
const RUNS = 15;

const domain: PausableDomain = {
  pauseCount: 0,
  pause() {
    (this as { pauseCount: number }).pauseCount++;
  },
  unpause() {
    (this as { pauseCount: number }).pauseCount--;
  },
};
const mechanism: LogDirtyMechanism = { enable() {}, disable() {}, clean() {}, flushHardwareCached() {} };

const rng = new Xoshiro128(42);
const dirty: number[] = [];
const seen = new Set<number>();
while (dirty.length < DIRTY_PAGES) {
  const pfn = rng.nextInt(GUEST_PFNS);
  if (!seen.has(pfn)) {
    seen.add(pfn);
    dirty.push(pfn);
  }
}

const ld = new LogDirty({ domain, mechanism });
const started = ld.enableLogDirty();
if (!started.ok) throw new Error(started.message);
const flat = new Uint32Array(GUEST_PFNS / 32);
const out = new Uint32Array(GUEST_PFNS / 32);

function dirtyBoth(): void {
  for (const pfn of dirty) {
    ld.markPfnDirty(pfn);
    flat[pfn >>> 5] = (flat[pfn >>> 5] as number) | (1 << (pfn & 31));
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1] as number;
}

function time(setup: () => void, fn: () => void): number {
  const ts: number[] = [];
  for (let i = 0; i < WARMUP + RUNS; i++) {
    setup();
    const t0 = performance.now();
    fn();
    const t1 = performance.now();
    if (i >= WARMUP) ts.push(t1 - t0);
  }
  return median(ts);
}

function check(r: ReturnType<LogDirty['peek']>): void {
  if (!r.ok) throw new Error(`${r.errno}: ${r.message}`);
}

// Raw loops over the flat bitmap.
function rawPeek(): void {
  const n = flat.length;
  for (let i = 0; i < n; i++) out[i] = flat[i] as number;
}
function rawClean(): void {
  const n = flat.length;
  for (let i = 0; i < n; i++) {
    out[i] = flat[i] as number;
    flat[i] = 0;
  }
}
let sink = 0;
function rawScan(): void {
  const n = flat.length;
  let s = 0;
  for (let i = 0; i < n; i++) {
    let v = flat[i] as number;
    while (v !== 0) {
      const low = v & -v;
      s += i * 32 + (31 - Math.clz32(low));
      v ^= low;
    }
  }
  sink += s;
}
function triePeek(): void {
  check(ld.peek(out, GUEST_PFNS));
}
function trieClean(): void {
  check(ld.clean(out, GUEST_PFNS));
}
function trieScan(): void {
  let s = 0;
  ld.trie.forEachDirty((pfn) => {
    s += pfn;
  }, 0, GUEST_PFNS);
  sink += s;
}

dirtyBoth();
// Sanity: both sides agree.
triePeek();
const trieCopy = out.slice();
rawPeek();
for (let i = 0; i < out.length; i++) if (out[i] !== trieCopy[i]) throw new Error(`PEEK mismatch at word ${i}`);
let count = 0;
for (let i = 0; i < out.length; i++) if (out[i] !== 0) scanWords(out, i * 32, i * 32 + 32, 0, () => count++);
if (count !== DIRTY_PAGES) throw new Error(`expected ${DIRTY_PAGES} dirty pages, found ${count}`);

const rows: { case: string; trieMs: number; rawMs: number }[] = [];
const noSetup = (): void => {};
rows.push({ case: 'PEEK (copy 32 MiB bitmap)', trieMs: time(noSetup, triePeek), rawMs: time(noSetup, rawPeek) });
rows.push({ case: 'CLEAN (copy + clear)', trieMs: time(dirtyBoth, trieClean), rawMs: time(dirtyBoth, rawClean) });
dirtyBoth();
rows.push({ case: 'scan set bits', trieMs: time(noSetup, trieScan), rawMs: time(noSetup, rawScan) });

const memcpyMs = time(noSetup, () => out.set(flat));
console.log(
  `log-dirty on a 1 TiB guest (${GUEST_PFNS} pfns), ${DIRTY_PAGES} dirty pages, ` +
    `trie ${ld.trie.allocatedPages} pages (${((ld.trie.allocatedPages * 4096) / 2 ** 20).toFixed(1)} MiB), median of ${RUNS}`,
);
console.log('case                          trie ms    raw ms   ratio (raw/trie, target >= 0.5)');
let worst = Infinity;
for (const r of rows) {
  const ratio = r.rawMs / r.trieMs;
  worst = Math.min(worst, ratio);
  console.log(`${r.case.padEnd(28)} ${r.trieMs.toFixed(2).padStart(8)} ${r.rawMs.toFixed(2).padStart(9)}   ${ratio.toFixed(2)}`);
}
console.log(`(for scale: one memcpy of the flat bitmap, Uint32Array.set: ${memcpyMs.toFixed(2)} ms)`);
console.log(`worst ratio ${worst.toFixed(2)} — ${worst >= 0.5 ? 'meets' : 'MISSES'} the ≥ 0.5 target`);
if (sink === -1) console.log(sink);
