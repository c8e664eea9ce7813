/**
 * Lazy re-arm: ENABLE and CLEAN on a 128 GiB guest against a 1 GiB guest, in
 * every x86 Xen HAP mode, in one run.
 *
 *   node --import tsx bench/rearm.bench.ts
 *
 * Each guest has one page populated in every 2 MiB of its memory, so its p2m
 * holds every leaf table a fully populated guest would (65,536 of them at
 * 128 GiB) while the host holds only 256 MiB. An eager re-arm would rewrite
 * every leaf table; Xen's global type change marks the top-level entries and
 * lets the vCPUs recompute one 512-entry table per misconfig. The bench
 * times ENABLE and CLEAN (null bitmap: the re-arm, not the copy-out, which is
 * O(guest) by nature) as wall-clock medians, and reports the engine's own
 * control-cycle count. Target: 128 GiB costs ≤ 2× 1 GiB. The two sizes run
 * interleaved, alternating which goes first in each run.
 */
import { performance } from 'node:perf_hooks';
import { Domain } from '../src/core/domain/domain.ts';
import { modeEntry } from '../src/core/modes/registry.ts';
import type { DirtyMode } from '../src/core/modes/dirty-mode.ts';
import { GiB } from '../src/core/units.ts';

const RUNS = 21;
const SIZES = [1 * GiB, 128 * GiB];
// arm-wp is not here: it follows the ARM dirty-tracing series, whose ENABLE is an eager
// walk (its cost grows with the guest by design) and whose CLEAN re-protects the recorded
// pages only (arm-wp.test.ts checks both).
const MODES = ['ept-wp', 'npt-wp', 'ept-pml'];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

interface Figures {
  enableMs: number;
  cleanMs: number;
  enableCycles: number;
  cleanCycles: number;
}

interface Case {
  readonly mode: DirtyMode;
  readonly enable: number[];
  readonly clean: number[];
  enableCycles: number;
  cleanCycles: number;
}

function setUp(modeName: string, memBytes: number): Case {
  const entry = modeEntry(modeName);
  const domain = new Domain({ format: entry.format, memBytes, vcpus: 2 });
  const pages = memBytes / 4096;
  for (let gfn = 0; gfn < pages; gfn += 512) domain.memory.populate(gfn);
  const mode = entry.create(domain, {});
  domain.setPagingMode(mode);
  return { mode, enable: [], clean: [], enableCycles: 0, cleanCycles: 0 };
}

/** One ENABLE, CLEAN (null bitmap), OFF cycle, timed. */
function once(c: Case): void {
  const mode = c.mode;
  let c0 = mode.controlCycles;
  let t0 = performance.now();
  mode.enable();
  c.enable.push(performance.now() - t0);
  c.enableCycles = mode.controlCycles - c0;
  c0 = mode.controlCycles;
  t0 = performance.now();
  mode.harvest(null);
  c.clean.push(performance.now() - t0);
  c.cleanCycles = mode.controlCycles - c0;
  mode.disable();
}

/**
 * Both sizes of one mode, run by run, alternating which size goes first
 * (1 GiB first on even runs, 128 GiB first on odd ones), so neither size
 * always runs on a warmer or a busier moment of the box.
 */
function measure(modeName: string): Figures[] {
  const cases = SIZES.map((s) => setUp(modeName, s));
  for (let i = 0; i < RUNS; i++) {
    const order = i % 2 === 0 ? cases : [...cases].reverse();
    for (const c of order) once(c);
  }
  return cases.map((c) => ({ enableMs: median(c.enable), cleanMs: median(c.clean), enableCycles: c.enableCycles, cleanCycles: c.cleanCycles }));
}

console.log(`lazy re-arm, median of ${RUNS}; one page populated per 2 MiB`);
console.log('mode      size     ENABLE ms  CLEAN ms  ENABLE cycles  CLEAN cycles');
let worst = 0;
for (const m of MODES) {
  const figs = measure(m);
  figs.forEach((f, i) =>
    console.log(
      `${m.padEnd(9)} ${String(SIZES[i]! / GiB).padStart(4)} GiB ${f.enableMs.toFixed(4).padStart(9)} ${f.cleanMs.toFixed(4).padStart(9)} ${String(f.enableCycles).padStart(14)} ${String(f.cleanCycles).padStart(13)}`,
    ),
  );
  const [small, big] = figs as [Figures, Figures];
  const r = Math.max(big.enableMs / small.enableMs, big.cleanMs / small.cleanMs);
  worst = Math.max(worst, r);
  console.log(`${m.padEnd(9)} ratio 128 GiB / 1 GiB: ENABLE ${(big.enableMs / small.enableMs).toFixed(2)}x, CLEAN ${(big.cleanMs / small.cleanMs).toFixed(2)}x (cycles: ${(big.enableCycles / small.enableCycles).toFixed(2)}x, ${(big.cleanCycles / small.cleanCycles).toFixed(2)}x)`);
}
console.log(`worst wall-clock ratio ${worst.toFixed(2)}x (target ≤ 2x)`);
