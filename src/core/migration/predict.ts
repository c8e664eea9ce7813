/**
 * Predicting a pre-copy migration before it runs: the saver's own loop
 * driven by expected values instead of a guest.
 *
 * The guest is summarised by one number, its write rate D (pages/s, spread
 * uniformly over a working set of W pages), measured beforehand
 * (dirty-rate.ts). The pre-copy law: in Δ seconds such a guest dirties
 * W(1 − e^(−DΔ/W)) distinct pages; of those, the ones already waiting to be
 * sent add nothing (QEMU's migration bitmap ORs them in).
 *
 *   Xen savers: `send_memory_live`'s loop (sender.ts) with the policy's own
 *     `decide` asked at its three points; each pass takes its bytes at
 *     min(link, cap, policy rate) plus the latency; a CLEAN returns the law's
 *     count for the time since the last CLEAN. The legacy saver's PEEK-skip
 *     and the hash-skip are not modelled (they only lower the bytes).
 *   QEMU: the real state machine (qemu-thread.ts) is driven page by page —
 *     windows, budget, MAX_WAIT, syncs, threshold and switchover are its own —
 *     with pages leaving at the link's speed and each sync adding the law's
 *     fresh pages.
 *   Both end with the stop-and-copy: the last harvest's pages at the final
 *   rate, plus the latency of the pass and of the verdict's trip back.
 *
 * Pure. Units: pages, bytes, ns (ms in the result).
 */
import type { PrecopyStats, StopPolicy } from './policy/stop-policy.ts';
import { QemuMigrationThread } from './qemu-thread.ts';
import { XEN_SAVER } from './saver.ts';
import { STREAM_PAGE_SIZE } from './stream/format.ts';

/** Wire bytes of a page sent with data (8-byte descriptor + 4096) and of a ZERO flag, as the stream encodes them. */
export const PAGE_WIRE_BYTES = 8 + STREAM_PAGE_SIZE;
export const ZERO_WIRE_BYTES = 8;

export interface PredictInput {
  readonly policy: StopPolicy;
  /** Guest pages (M). */
  readonly pageCount: number;
  /** Pages the workload writes within (W ≤ M); the rest hold zeros when `zeroOutsideWs`. */
  readonly workingSetPages: number;
  /** Pages above the working set are all-zero (--fill random with --wss, or --fill zero). */
  readonly zeroOutsideWs: boolean;
  /** Write rate over the working set, pages/s. */
  readonly writeRatePagesPerSec: number;
  readonly linkBytesPerSec: number;
  /** The saver's cap (QEMU max-bandwidth); Infinity: none. */
  readonly capBytesPerSec: number;
  readonly latencyNs: number;
  /** With auto-converge, a throttle would change D as it goes: not predicted. */
}

export interface Prediction {
  readonly policy: string;
  /** Rounds as migrate numbers them (the stop-and-copy included). */
  readonly rounds: number;
  readonly bytes: number;
  readonly downtime_ms: number;
  readonly total_ms: number;
  /** Pages the stop-and-copy sends. */
  readonly final_pages: number;
}

const NS_PER_S = 1e9;
const NS_PER_MS = 1e6;

/** Distinct pages W(1 − e^(−DΔ/W)) a uniform writer dirties in `ns`. */
function distinct(W: number, D: number, ns: number): number {
  return W * (1 - Math.exp((-D * ns) / NS_PER_S / W));
}

export function predictMigration(p: PredictInput): Prediction {
  const saver = p.policy.saver ?? XEN_SAVER;
  return saver.loop === 'qemu' ? predictQemu(p) : predictXen(p);
}

function predictXen(p: PredictInput): Prediction {
  const saver = p.policy.saver ?? XEN_SAVER;
  const { pageCount: M, workingSetPages: W, writeRatePagesPerSec: D } = p;
  const zeroBytes = saver.zeroPages === 'flag' && p.zeroOutsideWs ? ZERO_WIRE_BYTES : PAGE_WIRE_BYTES;
  let t = 0;
  let bytes = 0;
  let pagesSent = 0;
  let iteration = 0;
  let dirtyCount = -1;
  let totalWritten = 0;
  let lastCleanNs = 0;
  let dirtyIntervalNs = 0;
  let rounds = 0;
  let last = { pages: -1, bytes: 0, ns: 0 };
  const stats = (): PrecopyStats => ({
    iteration, dirtyCount, totalWritten, totalPagesSent: pagesSent, totalBytes: bytes, pageCount: M, pageSizeBytes: STREAM_PAGE_SIZE,
    lastPassPagesSent: last.pages, lastPassSkipped: last.pages < 0 ? -1 : 0, lastPassBytes: last.bytes, lastPassNs: last.ns,
    bandwidthBytesPerSec: last.ns > 0 ? last.bytes / (last.ns / NS_PER_S) : 0, dirtyIntervalNs, elapsedNs: t,
  });
  const rate = (final: boolean): number => Math.min(p.linkBytesPerSec, p.capBytesPerSec, p.policy.rateFor?.(stats(), final) ?? Infinity);
  const pass = (pages: number, passBytes: number, final: boolean): void => {
    const ns = (passBytes / rate(final)) * NS_PER_S + p.latencyNs;
    t += ns;
    bytes += passBytes;
    pagesSent += pages;
    last = { pages, bytes: passBytes, ns };
    rounds++;
  };
  let decision = p.policy.decide(stats());
  for (let x = 1; ; x++) {
    const first = x === 1;
    if (first) pass(M, W * PAGE_WIRE_BYTES + (M - W) * zeroBytes, false);
    else if (dirtyCount > 0) pass(dirtyCount, dirtyCount * PAGE_WIRE_BYTES, false);
    if (decision !== 'continue') break;
    iteration = x;
    totalWritten += first ? M : dirtyCount;
    dirtyCount = -1;
    decision = p.policy.decide(stats());
    if (decision !== 'continue') break;
    dirtyCount = Math.round(distinct(W, D, t - lastCleanNs));
    dirtyIntervalNs = t - lastCleanNs;
    lastCleanNs = t;
    decision = p.policy.decide(stats());
  }
  const pauseNs = t;
  const finalPages = Math.round(distinct(W, D, t - lastCleanNs));
  pass(finalPages, finalPages * PAGE_WIRE_BYTES, true);
  t += p.latencyNs; // the verdict's trip back
  return { policy: p.policy.name, rounds, bytes, downtime_ms: (t - pauseNs) / NS_PER_MS, total_ms: t / NS_PER_MS, final_pages: finalPages };
}

function predictQemu(p: PredictInput): Prediction {
  const { pageCount: M, workingSetPages: W, writeRatePagesPerSec: D } = p;
  const link = p.linkBytesPerSec;
  const thread = new QemuMigrationThread({
    maxBandwidthBytesPerSec: p.capBytesPerSec,
    downtimeLimitMs: p.policy.params['downtime_limit_ms'] ?? 300,
    pageSizeBytes: STREAM_PAGE_SIZE,
    startNs: 0,
    maxSyncs: p.policy.params['max_iterations'] ?? 30,
  });
  thread.setupSynced();
  // The migration bitmap: working-set pages (data) and, in round 0 only, the pages above it (ZERO flags when zero).
  let pendingData = W;
  let pendingRest = M - W;
  const restBytes = p.zeroOutsideWs ? ZERO_WIRE_BYTES : PAGE_WIRE_BYTES;
  let t = 0;
  let bytes = 0;
  let lastSyncNs = 0;
  let rounds = 1;
  // Fractions of a page carry over between syncs, so the totals are not rounded away.
  const sync = (): void => {
    pendingData += (W - pendingData) * (1 - Math.exp((-D * (t - lastSyncNs)) / NS_PER_S / W));
    lastSyncNs = t;
  };
  const pendingBytes = (): number => (pendingData + pendingRest) * STREAM_PAGE_SIZE;
  for (;;) {
    let a = thread.next(t, pendingBytes());
    if (a.kind === 'sync') {
      sync();
      rounds++;
      a = thread.synced(pendingBytes());
    }
    if (a.kind === 'complete') break;
    if (a.kind === 'wait') {
      t = Math.max(t, a.untilNs);
      continue;
    }
    const t0 = t;
    let n = 0;
    while (thread.mayContinueIterate(t0, n, t) && pendingData + pendingRest >= 1) {
      const b = pendingData >= 1 ? PAGE_WIRE_BYTES : restBytes;
      if (pendingData >= 1) pendingData -= 1;
      else pendingRest -= 1;
      t += (b / link) * NS_PER_S;
      bytes += b;
      thread.account(b);
      n++;
    }
    if (pendingData + pendingRest < 1) {
      // The pass ran out (ram_find_and_save_block found nothing): the fraction left is not a page.
      pendingData = 0;
      pendingRest = 0;
    }
    thread.iterated();
  }
  const pauseNs = t;
  sync();
  const finalData = Math.round(pendingData);
  const finalBytes = finalData * PAGE_WIRE_BYTES + pendingRest * restBytes;
  t += (finalBytes / link) * NS_PER_S + p.latencyNs; // uncapped, then the pass's latency
  bytes += finalBytes;
  t += p.latencyNs; // the verdict's trip back
  return { policy: p.policy.name, rounds, bytes, downtime_ms: (t - pauseNs) / NS_PER_MS, total_ms: t / NS_PER_MS, final_pages: finalData + pendingRest };
}
