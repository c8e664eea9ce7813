/**
 * StopPolicy: after each pre-copy step the sender asks "another live pass,
 * or stop-and-copy?". Modelled on Xen's pluggable `precopy_policy()`
 * (xg_sr_save.c), called with the same stats at the same points of the same
 * loop (see sender.ts): once before each pass, once after it with
 * dirtyCount = −1 (only iteration-based rules can fire), once after CLEAN.
 *
 * A policy object may keep state across calls (Clark's rate); create one per
 * migration with createPolicy(). Units: pages, bytes, ns.
 */

import type { SaverSpec } from '../saver.ts';

export type PrecopyDecision = 'continue' | 'stop';

export interface PrecopyStats {
  /** Live passes completed (Xen precopy_stats.iteration). */
  readonly iteration: number;
  /** Pages the last CLEAN reported (Xen stats.dirty_count); −1 while not known (Xen). */
  readonly dirtyCount: number;
  /** Xen's total_written: the sum of dirtyCount over completed passes (first pass: pageCount). */
  readonly totalWritten: number;
  /** Pages actually put on the wire so far (ZERO + PAGE descriptors). */
  readonly totalPagesSent: number;
  readonly totalBytes: number;
  readonly pageCount: number;
  readonly pageSizeBytes: number;
  /** Pages sent / skipped in the last completed pass (−1 before the first). */
  readonly lastPassPagesSent: number;
  readonly lastPassSkipped: number;
  readonly lastPassBytes: number;
  readonly lastPassNs: number;
  /** Bytes per second measured over the last pass (0 when unknown). */
  readonly bandwidthBytesPerSec: number;
  /** Time between the last two CLEANs (or since logging started): what dirtyCount accumulated over. */
  readonly dirtyIntervalNs: number;
  readonly elapsedNs: number;
}

export interface StopPolicy {
  readonly name: string;
  /** The policy's parameters, for reports. */
  readonly params: Readonly<Record<string, number>>;
  /** The saver this policy belongs to: its loop and page rules (saver.ts). Default: Xen v2's. */
  readonly saver?: SaverSpec;
  decide(stats: PrecopyStats): PrecopyDecision;
  /**
   * Optional rate limit (bytes/s) for the next pass; undefined ⇒ the link's
   * speed. `final` is the stop-and-copy pass.
   */
  rateFor?(stats: PrecopyStats, final: boolean): number | undefined;
}

/** Xen's rule for "is a dirty count known and below a threshold". */
export function knownBelow(dirtyCount: number, threshold: number): boolean {
  return dirtyCount >= 0 && dirtyCount < threshold;
}
