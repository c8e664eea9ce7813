/**
 * Test support for dirty modes: runs a seeded synthetic workload on a Domain
 * with a mode installed, harvesting every `windowRecords` records, and returns
 * for each round the pages the harvest reported next to the pages a naive
 * model says were written in that window (every Store / Modify record's page;
 * synthetic accesses never cross a page). Pure: assertions stay in the tests.
 */
import { Domain } from '../../domain/domain.ts';
import { Xoshiro128 } from '../../rng.ts';
import { ORDER_4K } from '../../units.ts';
import { AccessBatch, AccessKind } from '../../workload/access-batch.ts';
import { createSyntheticWorkload } from '../../workload/synthetic.ts';
import type { DirtyMode, ModeFactory, ModeOptions } from '../dirty-mode.ts';

export interface WindowRunOptions {
  readonly create: ModeFactory;
  readonly modeOptions?: ModeOptions;
  readonly vcpus: number;
  readonly workload: string;
  readonly seed: number;
  readonly pageCount: number;
  readonly records: number;
  readonly windowRecords: number;
  readonly populate?: 'on-demand' | 'up-front';
  readonly populateOrder?: number;
  readonly quantumRecords?: number;
}

export interface WindowRound {
  /** Pages written in the window (naive model), sorted. */
  readonly written: number[];
  /** Pages the harvest's bitmap held, sorted. */
  readonly harvested: number[];
  readonly dirtyCount: number;
}

export interface WindowRun {
  readonly domain: Domain;
  readonly mode: DirtyMode;
  readonly rounds: WindowRound[];
}

export function runWindows(o: WindowRunOptions): WindowRun {
  const domain = new Domain({
    format: 'ept',
    memBytes: o.pageCount * 4096,
    vcpus: o.vcpus,
    quantumRecords: o.quantumRecords ?? 16,
    populate: o.populate ?? 'on-demand',
    populateOrder: o.populateOrder ?? ORDER_4K,
  });
  const mode = o.create(domain, o.modeOptions ?? {});
  mode.enable();
  const wl = createSyntheticWorkload(o.workload, { pageCount: o.pageCount, rng: new Xoshiro128(o.seed), count: o.records });
  const batch = new AccessBatch(o.windowRecords);
  const bitmap = new Uint32Array(Math.ceil(o.pageCount / 32));
  const rounds: WindowRound[] = [];
  while (wl.fill(batch, o.windowRecords)) {
    const written = new Set<number>();
    for (let i = 0; i < batch.length; i++) {
      if (batch.kind[i] === AccessKind.Store || batch.kind[i] === AccessKind.Modify) written.add(Math.floor(batch.addr[i]! / 4096));
    }
    const ran = domain.run(batch);
    if (ran !== batch.length) throw new Error(`domain stopped at record ${ran}: ${domain.crashReason}`);
    bitmap.fill(0xdeadbeef); // the harvest must overwrite every word
    const h = mode.harvest(bitmap);
    rounds.push({ written: [...written].sort((a, b) => a - b), harvested: bitmapPages(bitmap, o.pageCount), dirtyCount: h.dirtyCount });
  }
  return { domain, mode, rounds };
}

/** Set bits of `bitmap` below `pageCount`, ascending. */
export function bitmapPages(bitmap: Uint32Array, pageCount: number): number[] {
  const out: number[] = [];
  for (let g = 0; g < pageCount; g++) if (((bitmap[g >>> 5]! >>> (g & 31)) & 1) !== 0) out.push(g);
  return out;
}
