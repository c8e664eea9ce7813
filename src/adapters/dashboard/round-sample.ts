/**
 * One dashboard round as JSON (the SSE `round` event): what the guest did
 * between two harvests, sampled from the engine's integer counters — never
 * per-access data. Exit reasons use the CLI contract's names.
 *
 * Units: cycles at the cost model's nominal frequency; virtual_ns the guest's
 * virtual time in this round (accesses / rate).
 */
import { STAT_ACCESSES, STAT_CYCLES, STAT_STORES } from '../../core/mmu/mmu-stats.ts';
import { EXIT_REASON_COUNT, EXIT_REASON_NAMES } from '../../core/vm-exit.ts';

export interface RoundSample {
  /** Which run (POST /api/run) this round belongs to. */
  readonly run: number;
  /** 1-based round within the run. */
  readonly round: number;
  /** Heatmap round this harvest recorded (GET /api/heatmap returns it once drawn). */
  readonly heat_round: number;
  /** Guest accesses executed in the round. */
  readonly accesses: number;
  readonly stores: number;
  /** Pages the harvest that closed the round returned (Xen stats.dirty_count; KVM distinct pages). */
  readonly dirty: number;
  readonly fault_count: number;
  /** Exits by reason in this round; reasons with none are left out. */
  readonly exits: Record<string, number>;
  /** vCPU cycles (guest work plus exit handling). */
  readonly cycles: number;
  /** Toolstack/hypervisor cycles of the harvest that closed the round. */
  readonly harvest_cycles: number;
  readonly virtual_ns: number;
  /** Distinct pages dirtied since the run began. */
  readonly ever_dirty: number;
  readonly page_count: number;
  /** Host bytes the tracking structures hold now. */
  readonly tracking_bytes: number;
}

/**
 * Counter snapshot → deltas. Holds the previous totals so each call returns
 * the round's share; one instance per run.
 */
export class CounterDeltas {
  private lastExits: Float64Array;
  private lastStats: Float64Array;

  constructor(stats: Float64Array, exits: Float64Array) {
    this.lastStats = stats.slice();
    this.lastExits = exits.slice();
  }

  /** Deltas since the previous call (or construction). */
  take(stats: Float64Array, exits: Float64Array): { accesses: number; stores: number; cycles: number; exits: Record<string, number> } {
    const out: Record<string, number> = {};
    for (let r = 0; r < EXIT_REASON_COUNT; r++) {
      const d = exits[r]! - this.lastExits[r]!;
      if (d > 0) out[EXIT_REASON_NAMES[r]!] = d;
    }
    const res = {
      accesses: stats[STAT_ACCESSES]! - this.lastStats[STAT_ACCESSES]!,
      stores: stats[STAT_STORES]! - this.lastStats[STAT_STORES]!,
      cycles: stats[STAT_CYCLES]! - this.lastStats[STAT_CYCLES]!,
      exits: out,
    };
    this.lastStats = stats.slice();
    this.lastExits = exits.slice();
    return res;
  }
}

/**
 * One Server-Sent Events frame. `data` is JSON on one line (JSON.stringify
 * never emits a raw newline), so the frame needs a single `data:` field.
 */
export function sseFrame(event: string, data: unknown): string {
  if (/[\r\n]/.test(event)) throw new RangeError('SSE event names cannot hold line breaks');
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
