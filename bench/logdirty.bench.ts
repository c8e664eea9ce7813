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
 * trie is as fast as the raw side; the target is ≥ 0.5.
 *
 * The raw side is the fastest honest way to do the same thing on a flat
 * bitmap: PEEK is one `Uint32Array.prototype.set` (a memcpy) of the whole
 * bitmap, CLEAN is that copy plus a `fill(0)`. The scan does the same work on
 * both sides: the same word scanner (scanWords) calls the same visitor once
 * per dirty pfn, over the whole flat bitmap on one side and over the trie's
 * present leaves on the other.
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

// The raw side over the flat bitmap (see the header).
function rawPeek(): void {
  out.set(flat);
}
function rawClean(): void {
  out.set(flat);
  flat.fill(0);
}
let sink = 0;
let scanSum = 0;
/** The one visitor both scans call per dirty pfn. */
const visit = (pfn: number): void => {
  scanSum += pfn;
};
function rawScan(): void {
  scanSum = 0;
  scanWords(flat, 0, GUEST_PFNS, 0, visit);
  sink += scanSum;
}
function triePeek(): void {
  check(ld.peek(out, GUEST_PFNS));
}
function trieClean(): void {
  check(ld.clean(out, GUEST_PFNS));
}
function trieScan(): void {
  scanSum = 0;
  ld.trie.forEachDirty(visit, 0, GUEST_PFNS);
  sink += scanSum;
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
rawScan();
const rawSum = scanSum;
trieScan();
if (scanSum !== rawSum) throw new Error(`scan mismatch: trie sum ${scanSum}, flat sum ${rawSum}`);
rows.push({ case: 'scan set bits (same visitor)', trieMs: time(noSetup, trieScan), rawMs: time(noSetup, rawScan) });
console.log(
  `log-dirty on a 1 TiB guest (${GUEST_PFNS} pfns), ${DIRTY_PAGES} dirty pages, ` +
    `trie ${ld.trie.allocatedPages} pages (${((ld.trie.allocatedPages * 4096) / 2 ** 20).toFixed(1)} MiB), median of ${RUNS}`,
);
console.log('case                          trie ms    raw ms   ratio (raw/trie, target >= 0.5)');
console.log('raw: PEEK = Uint32Array.prototype.set of the flat bitmap; CLEAN = set + fill(0); scan = scanWords over the flat bitmap');
let worst = Infinity;
for (const r of rows) {
  const ratio = r.rawMs / r.trieMs;
  worst = Math.min(worst, ratio);
  console.log(`${r.case.padEnd(28)} ${r.trieMs.toFixed(2).padStart(8)} ${r.rawMs.toFixed(2).padStart(9)}   ${ratio.toFixed(2)}`);
}
console.log(`worst ratio ${worst.toFixed(2)} — ${worst >= 0.5 ? 'meets' : 'MISSES'} the ≥ 0.5 target`);
if (sink === -1) console.log(sink);
