/**
 * Replays an access source (trace or synthetic workload) on a guest, with
 * log-dirty rounds: tracking is enabled before the first record, and a
 * harvest (Xen CLEAN, KVM GET/CLEAR or ring harvest) runs after every
 * `cleanEvery` records — counting every I/L/S/M record — and after the last,
 * partial window. Each round reports the records it ran, the dirty count the
 * harvest returned, fault_count, exits by reason and the cycles the vCPUs
 * spent. Without a mode it is one round with no harvest.
 *
 * Pure: the source may be async (a file reader), but nothing here touches
 * node:*; callers sample progress through `onProgress`.
 */
import { STAT_CYCLES } from '../mmu/mmu-stats.ts';
import { PAGE_SIZE } from '../units.ts';
import { EXIT_REASON_COUNT, EXIT_REASON_NAMES } from '../vm-exit.ts';
import { AccessBatch, type AccessSource } from '../workload/access-batch.ts';
import type { Guest } from './guest.ts';

export interface Round {
  readonly records: number;
  readonly dirty: number;
  readonly fault_count: number;
  readonly exits: Record<string, number>;
  /** vCPU cycles (guest work plus exit handling) spent in this round. */
  readonly cycles: number;
  /** Toolstack/hypervisor cycles the harvest that closed this round cost. */
  readonly harvest_cycles: number;
}

export interface ReplayResult {
  readonly records: number;
  readonly rounds: Round[];
  /** With `stopBefore`: the record the replay stopped in front of (not run), or null when the source ended first. */
  readonly next?: NextRecord | null;
}

/** One access record, as the source gave it. */
export interface NextRecord {
  readonly kind: number;
  readonly addr: number;
  readonly size: number;
  /** Trace line (or sequence number for a synthetic workload). */
  readonly line: number;
}

export interface ReplayOptions {
  /** Records per round (Infinity: one round). */
  readonly cleanEvery: number;
  /** Called after every batch with the records run so far. */
  readonly onProgress?: (records: number) => void;
  /** Called after each round closes. */
  readonly onRound?: (round: Round, index: number) => void;
  /** Called with each harvest's bitmap (tests); when set, harvests copy into a bitmap. */
  readonly onHarvestBitmap?: (bitmap: Uint32Array, round: number) => void;
  readonly batchCapacity?: number;
  /**
   * Stop in front of record N (1-based, counting every I/L/S/M record): records
   * 1..N-1 run, N does not, the open round is not closed (no harvest), and the
   * result's `next` is record N. The walk explainer starts there.
   */
  readonly stopBefore?: number;
}

/** The guest stopped on a record: the domain crashed, e.g. an address outside guest memory. */
export class ReplayError extends Error {
  readonly userFacing = true;
  constructor(readonly source: string, readonly line: number, why: string) {
    super(`${source}:${line}: ${why}`);
    this.name = 'ReplayError';
  }
}

export async function replay(guest: Guest, source: AccessSource, opts: ReplayOptions): Promise<ReplayResult> {
  const { domain, mode } = guest;
  const batch = new AccessBatch(opts.batchCapacity ?? 8192);
  const rounds: Round[] = [];
  const cleanEvery = opts.cleanEvery > 0 ? opts.cleanEvery : Infinity;
  const bitmap = opts.onHarvestBitmap ? new Uint32Array(Math.ceil(domain.memory.pageCount / 32)) : null;
  let records = 0;
  let inWindow = 0;
  let lastExits = domain.totalExits();
  let lastCycles = domain.totalStats()[STAT_CYCLES]!;
  const stopAt = opts.stopBefore !== undefined ? opts.stopBefore - 1 : Infinity;

  const closeRound = (): void => {
    let dirty = 0;
    let faultCount = 0;
    let harvestCycles = 0;
    if (mode !== null) {
      const before = mode.controlCycles;
      if (bitmap) bitmap.fill(0);
      const h = mode.harvest(bitmap);
      dirty = h.dirtyCount;
      faultCount = h.faultCount;
      harvestCycles = mode.controlCycles - before;
      if (bitmap) opts.onHarvestBitmap?.(bitmap, rounds.length);
    }
    const exitsNow = domain.totalExits();
    const cyclesNow = domain.totalStats()[STAT_CYCLES]!;
    const exits: Record<string, number> = {};
    for (let r = 0; r < EXIT_REASON_COUNT; r++) {
      const d = exitsNow[r]! - lastExits[r]!;
      if (d > 0) exits[EXIT_REASON_NAMES[r]!] = d;
    }
    const round: Round = { records: inWindow, dirty, fault_count: faultCount, exits, cycles: cyclesNow - lastCycles, harvest_cycles: harvestCycles };
    rounds.push(round);
    opts.onRound?.(round, rounds.length - 1);
    lastExits = exitsNow;
    lastCycles = cyclesNow;
    inWindow = 0;
  };

  mode?.enable();
  for (;;) {
    const more = await source.fill(batch);
    if (!more || batch.length === 0) break;
    let pos = 0;
    while (pos < batch.length) {
      if (records >= stopAt) {
        const next = { kind: batch.kind[pos]!, addr: batch.addr[pos]!, size: batch.size[pos]!, line: batch.line[pos]! };
        return { records, rounds, next };
      }
      const end = Math.min(batch.length, pos + (cleanEvery - inWindow), pos + (stopAt - records));
      const next = domain.run(batch, pos, end);
      if (next < end) {
        const line = batch.line[next]!;
        const addr = batch.addr[next]!;
        const memBytes = domain.memory.pageCount * PAGE_SIZE;
        const identity = !domain.vcpus[0]!.mmu.twoD;
        const why = domain.crashed && identity && addr + batch.size[next]! > memBytes
          ? `address 0x${addr.toString(16)} is beyond guest memory (${memBytes} bytes): give a larger --mem`
          : domain.crashed
            ? `guest crashed: ${domain.crashReason || 'unhandled VM exit'}`
            : 'guest stopped (a vCPU is paused)';
        throw new ReplayError(source.name.replace(/^trace /, ''), line, why);
      }
      records += end - pos;
      inWindow += end - pos;
      pos = end;
      if (inWindow >= cleanEvery) closeRound();
    }
    opts.onProgress?.(records);
  }
  if (inWindow > 0 || rounds.length === 0) closeRound();
  return opts.stopBefore !== undefined ? { records, rounds, next: null } : { records, rounds };
}

/** Sums rounds into totals (exits merged by reason). */
export function totalsOf(rounds: readonly Round[]): Omit<Round, 'records'> & { records: number } {
  const exits: Record<string, number> = {};
  let records = 0;
  let dirty = 0;
  let faultCount = 0;
  let cycles = 0;
  let harvest = 0;
  for (const r of rounds) {
    records += r.records;
    dirty += r.dirty;
    faultCount += r.fault_count;
    cycles += r.cycles;
    harvest += r.harvest_cycles;
    for (const [k, v] of Object.entries(r.exits)) exits[k] = (exits[k] ?? 0) + v;
  }
  return { records, dirty, fault_count: faultCount, exits, cycles, harvest_cycles: harvest };
}
