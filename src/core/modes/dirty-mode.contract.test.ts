/**
 * The one contract every dirty-tracking mode meets (iterates MODES, so a mode
 * joins by being registered), in every option variant, with 1 and 4 vCPUs and
 * 4 KiB or 2 MiB population:
 *  - log-dirty enabled before the first record, a harvest every N records and
 *    after the last window: each harvest's bitmap is exactly the set of pages
 *    written in that window (S and M records; both pages of a store crossing a
 *    page boundary), computed by a naive model; dirtyCount is its size;
 *  - a peek in the middle of the run sees the same set and resets nothing;
 *  - the mechanism logs each page once per window: the window's delta of
 *    `writesLogged` (PML entries logged, ring entries pushed, write faults that
 *    recorded a page) equals the model's count of first writes in the window,
 *    so a mechanism that logs more than first writes fails;
 *  - the same trace gives the same dirty sets in every mode, and every mode
 *    and variant of EXPECTED_VARIANTS ran (a mode that drops out fails it);
 *  - no write is lost wherever the harvests fall (property test, harvests
 *    between any two records).
 * Workloads: seeded synthetic ones and a slice of the shared sort trace
 * (identity addressing in a sparse 256 GiB guest; skipped if the file is absent).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { LackeyReader } from '../../adapters/lackey-reader.ts';
import { Domain } from '../domain/domain.ts';
import { Xoshiro128 } from '../rng.ts';
import { GiB, MiB, PAGE_SIZE } from '../units.ts';
import { AccessBatch, AccessKind } from '../workload/access-batch.ts';
import { createSyntheticWorkload } from '../workload/synthetic.ts';
import type { ModeName, ModeOptions } from './dirty-mode.ts';
import { MODES, type ModeEntry } from './registry.ts';

const SHARED_TRACE = fileURLToPath(new URL('../../../../shared/traces/sort-2m.lackey.gz', import.meta.url));
/** The shared sort trace when this checkout sits beside it, else the repo's own recording (test/fixtures). */
const TRACE = existsSync(SHARED_TRACE) ? SHARED_TRACE : fileURLToPath(new URL('../../../test/fixtures/sort-small.lackey.gz', import.meta.url));
const TRACE_RECORDS = 100_000;
const TRACE_WINDOW = 10_000;

/** Option variants per mode; a mode not listed runs with {}. */
const VARIANTS: Partial<Record<ModeName, readonly ModeOptions[]>> = {
  'ept-pml': [{ pmlFlush: 'on-demand' }, { pmlFlush: 'every-exit' }],
  'arm-wp': [{ armDirtySet: 'bitmap' }, { armDirtySet: 'list' }],
  shadow: [{ shadowPool: 'xen' }, { shadowPool: 'prealloc' }],
  // KVM on Intel runs with PML by default; without it (kvm_intel.pml=0, AMD) every first write faults.
  // (Manual protect and QEMU's clear chunks: kvm-bitmap.test.ts and kvm-modes.test.ts, against the same naive model.)
  'kvm-bitmap': [{ kvmPml: true }, { kvmPml: false }],
  'kvm-ring': [{ kvmPml: true }, { kvmPml: false }],
};

/**
 * Every mode and variant the contract must run, spelled out: if a mode leaves
 * the registry or a variant list, the cross-mode test fails instead of
 * comparing fewer sets. Add a line here when a mode or variant joins.
 */
const EXPECTED_VARIANTS: readonly string[] = [
  'ept-wp',
  'ept-pml(pmlFlush=on-demand)',
  'ept-pml(pmlFlush=every-exit)',
  'npt-wp',
  'arm-wp(armDirtySet=bitmap)',
  'arm-wp(armDirtySet=list)',
  'kvm-bitmap(kvmPml=true)',
  'kvm-bitmap(kvmPml=false)',
  'kvm-ring(kvmPml=true)',
  'kvm-ring(kvmPml=false)',
  'shadow(shadowPool=xen)',
  'shadow(shadowPool=prealloc)',
];

interface Variant {
  readonly entry: ModeEntry;
  readonly opts: ModeOptions;
  readonly label: string;
}

const variants: Variant[] = [];
for (const entry of Object.values(MODES)) {
  if (entry === undefined) continue;
  for (const opts of VARIANTS[entry.name] ?? [{}]) {
    const o = Object.entries(opts).map(([k, v]) => `${k}=${String(v)}`).join(',');
    variants.push({ entry, opts, label: o === '' ? entry.name : `${entry.name}(${o})` });
  }
}

/**
 * Pages written in each window [cuts[i], cuts[i+1]): the naive model. A page's
 * first write in a window is the one a mechanism must log, so the size of each
 * set is also the model's count of first writes.
 */
function modelWindows(b: AccessBatch, cuts: readonly number[]): number[][] {
  const out: number[][] = [];
  for (let w = 0; w + 1 < cuts.length; w++) {
    const set = new Set<number>();
    for (let r = cuts[w]!; r < cuts[w + 1]!; r++) {
      const k = b.kind[r]!;
      if (k !== AccessKind.Store && k !== AccessKind.Modify) continue;
      const a = b.addr[r]!;
      const first = Math.floor(a / PAGE_SIZE);
      const last = Math.floor((a + b.size[r]! - 1) / PAGE_SIZE);
      for (let p = first; p <= last; p++) set.add(p);
    }
    out.push([...set].sort((x, y) => x - y));
  }
  return out;
}

function bitsOf(bm: Uint32Array): number[] {
  const out: number[] = [];
  for (let w = 0; w < bm.length; w++) {
    let v = bm[w]!;
    while (v !== 0) {
      const low = v & -v;
      out.push(w * 32 + (31 - Math.clz32(low)));
      v ^= low;
    }
  }
  return out;
}

interface RunSetup {
  readonly memBytes: number;
  readonly vcpus: number;
  readonly populateOrder: number;
}

/**
 * Runs `b` under the mode, harvesting at each cut (cuts[0] = 0, last = b.length),
 * checking each window against the model. Returns the harvested sets.
 */
function runAndCheck(v: Variant, s: RunSetup, b: AccessBatch, cuts: readonly number[], peekAt = -1): number[][] {
  const dom = new Domain({ format: v.entry.format, memBytes: s.memBytes, vcpus: s.vcpus, populateOrder: s.populateOrder });
  const mode = v.entry.create(dom, v.opts);
  assert.equal(dom.pagingMode, mode, 'the factory installs the mode');
  mode.enable();
  assert.equal(mode.enabled, true);
  const bm = new Uint32Array(Math.ceil(dom.memory.pageCount / 32));
  const want = modelWindows(b, cuts);
  const got: number[][] = [];
  for (let w = 0; w + 1 < cuts.length; w++) {
    const end = cuts[w + 1]!;
    const logged0 = mode.writesLogged;
    if (peekAt > cuts[w]! && peekAt < end) {
      assert.equal(dom.run(b, cuts[w]!, peekAt), peekAt, dom.crashReason);
      const pk = mode.peek(bm);
      const seen = modelWindows(b, [cuts[w]!, peekAt])[0]!;
      assert.deepEqual(bitsOf(bm), seen, `${v.label}: peek in window ${w}`);
      assert.equal(pk.dirtyCount, seen.length);
      assert.equal(dom.run(b, peekAt, end), end, dom.crashReason);
    } else {
      assert.equal(dom.run(b, cuts[w]!, end), end, dom.crashReason);
    }
    assert.equal(dom.crashed, false, dom.crashReason);
    const r = mode.harvest(bm);
    // The mechanism's own count: one record per page, at its first write in the window (read after
    // the harvest, which flushes whatever the mechanism still buffered).
    assert.equal(mode.writesLogged - logged0, want[w]!.length,
      `${v.label} vcpus=${s.vcpus} order=${s.populateOrder}: writes logged by the mechanism in window ${w} ≠ first writes`);
    const bits = bitsOf(bm);
    assert.deepEqual(bits, want[w], `${v.label} vcpus=${s.vcpus} order=${s.populateOrder}: window ${w} [${cuts[w]}, ${end})`);
    assert.equal(r.dirtyCount, want[w]!.length, `${v.label}: dirtyCount of window ${w}`);
    // fault_count is shadow-only: every page dirtied in a window took at least one fixed fault
    // (CLEAN blew the shadows); every other mode reports 0.
    if (v.entry.name === 'shadow') assert.ok(r.faultCount >= r.dirtyCount, `${v.label}: fault_count ${r.faultCount} < dirty ${r.dirtyCount}`);
    else assert.equal(r.faultCount, 0);
    got.push(bits);
  }
  assert.equal(dom.paused, false, 'every pause was undone');
  mode.disable();
  assert.equal(mode.enabled, false);
  return got;
}

function evenCuts(n: number, every: number): number[] {
  const cuts = [0];
  for (let c = every; c < n; c += every) cuts.push(c);
  cuts.push(n);
  return cuts;
}

const SETUPS = [1, 4].flatMap((vcpus) => [0, 9].map((populateOrder) => ({ vcpus, populateOrder })));

/** Harvested sets per workload and setup, for the cross-mode comparison. */
const seen = new Map<string, { label: string; sets: number[][] }[]>();
function remember(key: string, label: string, sets: number[][]): void {
  const list = seen.get(key) ?? [];
  list.push({ label, sets });
  seen.set(key, list);
}

// ---------------------------------------------------------------- synthetic

const SYN_PAGES = 8192; // 32 MiB
const SYN_RECORDS = 12_000;
function synthetic(name: string, seed: number): AccessBatch {
  const w = createSyntheticWorkload(name, { pageCount: SYN_PAGES, rng: new Xoshiro128(seed), count: SYN_RECORDS, writeFraction: 0.3 });
  const b = new AccessBatch(SYN_RECORDS);
  w.fill(b, SYN_RECORDS);
  return b;
}
const SYN = [
  { name: 'hotspot', batch: synthetic('hotspot', 7) },
  { name: 'read-mostly', batch: synthetic('read-mostly', 8) },
];

for (const v of variants) {
  test(`contract ${v.label}: synthetic workloads, harvest every 1500 records, 1/4 vCPUs, 4K/2M`, () => {
    for (const w of SYN) {
      for (const s of SETUPS) {
        const sets = runAndCheck(v, { memBytes: 64 * MiB, ...s }, w.batch, evenCuts(w.batch.length, 1500), 2000);
        remember(`${w.name}/${s.vcpus}/${s.populateOrder}`, v.label, sets);
      }
    }
  });
}

// ---------------------------------------------------------------- real trace

let traceBatch: Promise<AccessBatch> | null = null;
function loadTrace(): Promise<AccessBatch> {
  traceBatch ??= (async () => {
    const big = new AccessBatch(TRACE_RECORDS);
    const rd = new LackeyReader(TRACE);
    const b = new AccessBatch(8192);
    try {
      while (big.length < TRACE_RECORDS && (await rd.fill(b))) {
        for (let k = 0; k < b.length && big.length < TRACE_RECORDS; k++) big.push(b.kind[k]!, b.addr[k]!, b.size[k]!, b.line[k]!);
      }
    } finally {
      rd.close();
    }
    return big;
  })();
  return traceBatch;
}

const haveTrace = existsSync(TRACE);
for (const v of variants) {
  test(`contract ${v.label}: sort trace slice (${TRACE_RECORDS} records, CLEAN every ${TRACE_WINDOW}), 256 GiB sparse guest`,
    { skip: haveTrace ? false : `trace ${TRACE} absent` }, async () => {
      const b = await loadTrace();
      assert.equal(b.length, TRACE_RECORDS);
      for (const s of SETUPS) {
        const sets = runAndCheck(v, { memBytes: 256 * GiB, ...s }, b, evenCuts(b.length, TRACE_WINDOW), 15_000);
        remember(`trace/${s.vcpus}/${s.populateOrder}`, v.label, sets);
      }
    });
}

test('same workload ⇒ same dirty sets in every mode, variant and setup', () => {
  assert.deepEqual(variants.map((v) => v.label).sort(), [...EXPECTED_VARIANTS].sort(), 'the contract runs exactly the expected modes and variants');
  const keys = SYN.flatMap((w) => SETUPS.map((s) => `${w.name}/${s.vcpus}/${s.populateOrder}`));
  if (haveTrace) keys.push(...SETUPS.map((s) => `trace/${s.vcpus}/${s.populateOrder}`));
  assert.deepEqual([...seen.keys()].sort(), keys.sort(), 'every workload and setup ran');
  for (const [key, runs] of seen) {
    assert.deepEqual(runs.map((r) => r.label).sort(), [...EXPECTED_VARIANTS].sort(), `every variant ran on ${key}`);
  }
  const byWorkload = new Map<string, number[][]>();
  for (const [key, runs] of seen) {
    const workload = key.split('/')[0]!;
    for (const r of runs) {
      const ref = byWorkload.get(workload);
      if (ref === undefined) byWorkload.set(workload, r.sets);
      else assert.deepEqual(r.sets, ref, `${r.label} on ${key}`);
    }
  }
});

// ---------------------------------------------------------------- no write lost

const recArb = fc.record({
  kind: fc.constantFrom(AccessKind.Fetch, AccessKind.Load, AccessKind.Store, AccessKind.Store, AccessKind.Modify),
  // 3 MiB: two 2 MiB blocks' worth of pages, with page crossings and rewrites.
  addr: fc.integer({ min: 0, max: 768 * PAGE_SIZE - 9 }).chain((a) => fc.constantFrom(a, a - (a % PAGE_SIZE) + PAGE_SIZE - 3)),
  size: fc.constantFrom(1, 4, 8),
});

for (const v of variants) {
  test(`contract ${v.label}: no write lost wherever harvests fall (between any two records)`, () => {
    fc.assert(
      fc.property(
        fc.array(recArb, { minLength: 1, maxLength: 120 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.constantFrom(1, 4),
        fc.constantFrom(0, 9),
        fc.boolean(),
        (recs, rawCuts, vcpus, populateOrder, everyRecord) => {
          const b = new AccessBatch(recs.length);
          recs.forEach((r, k) => b.push(r.kind, r.addr, r.size, k + 1));
          const cuts = everyRecord
            ? Array.from({ length: recs.length + 1 }, (_, k) => k)
            : [...new Set([0, recs.length, ...rawCuts.map((c) => c % (recs.length + 1))])].sort((x, y) => x - y);
          runAndCheck(v, { memBytes: 4 * MiB, vcpus, populateOrder }, b, cuts);
        },
      ),
      { numRuns: 40, seed: 42 },
    );
  });
}
