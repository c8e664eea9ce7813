/**
 * Destination memory of a standalone receiver, three ways, in the same run
 * and alternating: lazy (slabs faulted inside the stream's copies, what
 * `receive` did before), background (allocated from the header's size and
 * pre-faulted by a helper thread while the copies run: `receive` without
 * --prealloc now), and warm (pre-faulted before the stream, what --prealloc
 * and migrate's own receiver do; its pre-faulting is not timed). The copies
 * are the receiver's: runs of 256 pages in gfn order, yielding to the event
 * loop every 16 MiB as a socket would.
 *
 * Run: node --import tsx bench/prefault.bench.ts [MiB, default 256] [runs, default 5]
 */
import { loadavg } from 'node:os';
import { backgroundPrefaulted } from '../src/adapters/migration/background-prefault.ts';
import { PagedMemory } from '../src/core/migration/paged-memory.ts';

const MIB = Number(process.argv[2] ?? 256);
const RUNS = Number(process.argv[3] ?? 5);
const PAGES = MIB * 256;
const RUN = 256;
const src = new Uint8Array(RUN * 4096).fill(0x5a);

async function copyIn(mem: PagedMemory): Promise<number> {
  const t0 = performance.now();
  for (let g = 0; g < PAGES; g += RUN) {
    mem.writePages(g, Math.min(RUN, PAGES - g), src, 0);
    if ((g & 4095) === 0) await new Promise((r) => setImmediate(r));
  }
  return performance.now() - t0;
}

const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const lazy: number[] = [];
const background: number[] = [];
const warm: number[] = [];
console.log(`${MIB} MiB, ${RUNS} runs; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
for (let i = 0; i < RUNS; i++) {
  lazy.push(await copyIn(new PagedMemory(PAGES)));
  background.push(await copyIn(backgroundPrefaulted(PAGES, undefined, true).memory));
  const pre = new PagedMemory(PAGES);
  pre.prefault();
  warm.push(await copyIn(pre));
  console.log(`run ${i}: lazy ${lazy[i]!.toFixed(0)} ms | background ${background[i]!.toFixed(0)} ms | warm ${warm[i]!.toFixed(0)} ms`);
}
console.log(`median: lazy ${med(lazy).toFixed(0)} ms, background ${med(background).toFixed(0)} ms, warm ${med(warm).toFixed(0)} ms; ` +
  `background/lazy time ${(med(background) / med(lazy)).toFixed(2)}; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
