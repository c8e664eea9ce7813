/**
 * The contract every dirty-tracking mode meets, as a function a test file
 * calls: memvisor's own modes run it (src/core/modes/dirty-mode.contract.test.ts)
 * and so does a mode a user writes (`import { dirtyModeContract } from
 * 'memvisor/testing'` in their node:test file), so both are checked alike.
 * It registers node:test tests, per mode and option variant, with 1 and 4
 * vCPUs and 4 KiB or 2 MiB population:
 *  - log-dirty enabled before the first record, a harvest every N records and
 *    after the last window: each harvest's bitmap is exactly the set of pages
 *    written in that window (S and M records; both pages of a store crossing a
 *    page boundary), computed by a naive model; dirtyCount is its size;
 *  - a peek in the middle of the run sees the same set and resets nothing;
 *  - the mechanism logs each page once per window: the window's delta of
 *    `writesLogged` (PML entries logged, ring entries pushed, write faults that
 *    recorded a page) equals the model's count of first writes in the window,
 *    so a mechanism that logs more than first writes fails;
 *  - the same trace gives the same dirty sets in every mode given, and (with
 *    `expectedVariants`) every one of those modes and variants ran on every
 *    workload and setup (a mode that drops out fails it);
 *  - no write is lost wherever the harvests fall (seeded random runs,
 *    harvests between any two records).
 * Workloads: seeded synthetic ones and a slice of a real lackey trace
 * (identity addressing in a sparse 256 GiB guest): the shared sort trace when
 * it sits beside a memvisor checkout, else the recording shipped with the
 * package; skipped if neither is there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LackeyReader } from '../adapters/lackey-reader.ts';
import { Domain } from '../core/domain/domain.ts';
import type { ModeFactory, ModeOptions } from '../core/modes/dirty-mode.ts';
import type { P2mFormatName } from '../core/p2m/p2m-format.ts';
import { Xoshiro128 } from '../core/rng.ts';
import { GiB, MiB, PAGE_SIZE } from '../core/units.ts';
import { AccessBatch, AccessKind } from '../core/workload/access-batch.ts';
import { createSyntheticWorkload } from '../core/workload/synthetic.ts';

/** A mode under test: what registerMode takes (a ModeEntry fits). */
export interface DirtyModeSubject {
  readonly name: string;
  /** p2m format the domain is built in. */
  readonly format: P2mFormatName;
  /** Creates the mode and installs it as the domain's paging mode. */
  readonly create: ModeFactory;
}

/** How the contract runs. */
export interface DirtyModeContractOptions {
  /** Option variants per mode name; a mode not listed runs once with {}. */
  readonly variants?: Readonly<Record<string, readonly ModeOptions[]>>;
  /**
   * Modes that count Xen's stats.fault_count (shadow): each harvest's
   * fault_count is then at least its dirty count; every other mode reports 0.
   * Default ['shadow'].
   */
  readonly faultCounting?: readonly string[];
  /** A lackey trace (plain or gzip) for the real-trace part; null skips it. Default: see the module header. */
  readonly trace?: string | null;
  /** Random runs in the no-write-lost part (default 40). */
  readonly randomRuns?: number;
  /**
   * Labels (`name` or `name(k=v,…)`) of every mode and variant that must run:
   * the cross-mode test then fails if one drops out instead of comparing fewer sets.
   */
  readonly expectedVariants?: readonly string[];
}

const SHARED_TRACE = fileURLToPath(new URL('../../../shared/traces/sort-2m.lackey.gz', import.meta.url));
const PACKAGED_TRACE = fileURLToPath(new URL('../../test/fixtures/sort-small.lackey.gz', import.meta.url));
const TRACE_RECORDS = 100_000;
const TRACE_WINDOW = 10_000;

interface Variant {
  readonly mode: DirtyModeSubject;
  readonly opts: ModeOptions;
  readonly label: string;
  readonly countsFaults: boolean;
}

/** Registers the contract's tests for each mode (and each of its variants). */
export function dirtyModeContract(modes: DirtyModeSubject | readonly DirtyModeSubject[], options: DirtyModeContractOptions = {}): void {
  const list: readonly DirtyModeSubject[] = Array.isArray(modes) ? modes : [modes as DirtyModeSubject];
  const faultCounting = options.faultCounting ?? ['shadow'];
  const variants: Variant[] = [];
  for (const mode of list) {
    for (const opts of options.variants?.[mode.name] ?? [{}]) {
      const o = Object.entries(opts).map(([k, v]) => `${k}=${String(v)}`).join(',');
      variants.push({ mode, opts, label: o === '' ? mode.name : `${mode.name}(${o})`, countsFaults: faultCounting.includes(mode.name) });
    }
  }
  const trace = options.trace === undefined ? (existsSync(SHARED_TRACE) ? SHARED_TRACE : PACKAGED_TRACE) : options.trace;
  const seen = new Map<string, { label: string; sets: number[][] }[]>();
  const remember = (key: string, label: string, sets: number[][]): void => {
    const l = seen.get(key) ?? [];
    l.push({ label, sets });
    seen.set(key, l);
  };

  const syn = [
    { name: 'hotspot', batch: synthetic('hotspot', 7) },
    { name: 'read-mostly', batch: synthetic('read-mostly', 8) },
  ];
  for (const v of variants) {
    test(`contract ${v.label}: synthetic workloads, harvest every 1500 records, 1/4 vCPUs, 4K/2M`, () => {
      for (const w of syn) {
        for (const s of SETUPS) {
          const sets = runAndCheck(v, { memBytes: 64 * MiB, ...s }, w.batch, evenCuts(w.batch.length, 1500), 2000);
          remember(`${w.name}/${s.vcpus}/${s.populateOrder}`, v.label, sets);
        }
      }
    });
  }

  const haveTrace = trace !== null && existsSync(trace);
  let traceBatch: Promise<AccessBatch> | null = null;
  for (const v of variants) {
    test(`contract ${v.label}: trace slice (${TRACE_RECORDS} records, CLEAN every ${TRACE_WINDOW}), 256 GiB sparse guest`,
      { skip: haveTrace ? false : `trace ${trace ?? '(none)'} absent` }, async () => {
        traceBatch ??= loadTrace(trace!);
        const b = await traceBatch;
        for (const s of SETUPS) {
          const sets = runAndCheck(v, { memBytes: 256 * GiB, ...s }, b, evenCuts(b.length, TRACE_WINDOW), 15_000);
          remember(`trace/${s.vcpus}/${s.populateOrder}`, v.label, sets);
        }
      });
  }

  if (variants.length > 1 || options.expectedVariants !== undefined) {
    test('same workload ⇒ same dirty sets in every mode, variant and setup', () => {
      assert.ok(seen.size > 0);
      const expected = options.expectedVariants;
      if (expected !== undefined) {
        assert.deepEqual(variants.map((v) => v.label).sort(), [...expected].sort(), 'the contract runs exactly the expected modes and variants');
        const keys = syn.flatMap((w) => SETUPS.map((st) => `${w.name}/${st.vcpus}/${st.populateOrder}`));
        if (haveTrace) keys.push(...SETUPS.map((st) => `trace/${st.vcpus}/${st.populateOrder}`));
        assert.deepEqual([...seen.keys()].sort(), keys.sort(), 'every workload and setup ran');
        for (const [key, runs] of seen) assert.deepEqual(runs.map((r) => r.label).sort(), [...expected].sort(), `every variant ran on ${key}`);
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
  }

  const runs = options.randomRuns ?? 40;
  for (const v of variants) {
    test(`contract ${v.label}: no write lost wherever harvests fall (between any two records)`, () => {
      const rng = new Xoshiro128(42);
      for (let run = 0; run < runs; run++) {
        const c = randomCase(rng);
        try {
          runAndCheck(v, { memBytes: 4 * MiB, vcpus: c.vcpus, populateOrder: c.populateOrder }, c.batch, c.cuts);
        } catch (e) {
          (e as Error).message += ` [random run ${run}: ${c.batch.length} records, vcpus ${c.vcpus}, order ${c.populateOrder}, cuts ${c.cuts.join(',')}]`;
          throw e;
        }
      }
    });
  }
}

// ---------------------------------------------------------------- model and runner

const SETUPS = [1, 4].flatMap((vcpus) => [0, 9].map((populateOrder) => ({ vcpus, populateOrder })));

interface RunSetup {
  readonly memBytes: number;
  readonly vcpus: number;
  readonly populateOrder: number;
}

/** Pages written in each window [cuts[i], cuts[i+1]): the naive model. */
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

/**
 * Runs `b` under the mode, harvesting at each cut (cuts[0] = 0, last = b.length),
 * checking each window against the model. Returns the harvested sets.
 */
function runAndCheck(v: Variant, s: RunSetup, b: AccessBatch, cuts: readonly number[], peekAt = -1): number[][] {
  const dom = new Domain({ format: v.mode.format, memBytes: s.memBytes, vcpus: s.vcpus, populateOrder: s.populateOrder });
  const mode = v.mode.create(dom, v.opts);
  assert.equal(dom.pagingMode, mode, `${v.label}: the factory installs the mode (domain.setPagingMode)`);
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
      const seenSoFar = modelWindows(b, [cuts[w]!, peekAt])[0]!;
      assert.deepEqual(bitsOf(bm), seenSoFar, `${v.label}: peek in window ${w}`);
      assert.equal(pk.dirtyCount, seenSoFar.length);
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
    if (v.countsFaults) assert.ok(r.faultCount >= r.dirtyCount, `${v.label}: fault_count ${r.faultCount} < dirty ${r.dirtyCount}`);
    else assert.equal(r.faultCount, 0, `${v.label}: fault_count is 0 outside shadow mode`);
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

const SYN_PAGES = 8192; // 32 MiB
const SYN_RECORDS = 12_000;
function synthetic(name: string, seed: number): AccessBatch {
  const w = createSyntheticWorkload(name, { pageCount: SYN_PAGES, rng: new Xoshiro128(seed), count: SYN_RECORDS, writeFraction: 0.3 });
  const b = new AccessBatch(SYN_RECORDS);
  w.fill(b, SYN_RECORDS);
  return b;
}

async function loadTrace(file: string): Promise<AccessBatch> {
  const big = new AccessBatch(TRACE_RECORDS);
  const rd = new LackeyReader(file);
  const b = new AccessBatch(8192);
  try {
    while (big.length < TRACE_RECORDS && (await rd.fill(b))) {
      for (let k = 0; k < b.length && big.length < TRACE_RECORDS; k++) big.push(b.kind[k]!, b.addr[k]!, b.size[k]!, b.line[k]!);
    }
  } finally {
    rd.close();
  }
  return big;
}

const KINDS = [AccessKind.Fetch, AccessKind.Load, AccessKind.Store, AccessKind.Store, AccessKind.Modify];
const SIZES = [1, 4, 8];

/**
 * One random run: 1–120 records over 3 MiB (two 2 MiB blocks' worth of pages),
 * half of them 3 bytes before a page end so 4- and 8-byte stores cross it, and
 * harvests after every record or at up to 20 random points.
 */
function randomCase(rng: Xoshiro128): { batch: AccessBatch; cuts: number[]; vcpus: number; populateOrder: number } {
  const n = 1 + rng.nextInt(120);
  const batch = new AccessBatch(n);
  for (let k = 0; k < n; k++) {
    const a = rng.nextInt(768 * PAGE_SIZE - 8);
    const addr = rng.nextInt(2) === 0 ? a : a - (a % PAGE_SIZE) + PAGE_SIZE - 3;
    batch.push(KINDS[rng.nextInt(KINDS.length)]!, addr, SIZES[rng.nextInt(SIZES.length)]!, k + 1);
  }
  let cuts: number[];
  if (rng.nextInt(2) === 0) cuts = Array.from({ length: n + 1 }, (_, k) => k);
  else {
    const raw = Array.from({ length: rng.nextInt(21) }, () => rng.nextInt(n + 1));
    cuts = [...new Set([0, n, ...raw])].sort((x, y) => x - y);
  }
  return { batch, cuts, vcpus: rng.nextInt(2) === 0 ? 1 : 4, populateOrder: rng.nextInt(2) === 0 ? 0 : 9 };
}
