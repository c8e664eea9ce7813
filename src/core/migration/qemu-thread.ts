/**
 * QEMU's migration thread (migration/migration.c and migration/ram.c at the
 * v7.2.0 tag) as a pure state machine: it decides, the sender acts. It reads
 * no clock: every call gets the time (virtual or wall, ns) from its driver,
 * so the same machine runs under `--clock virtual` and `--clock real`.
 *
 * The loop it models (`migration_thread`, 7.2):
 * ```
 *   while active:
 *     if urgent || !rate_limited:                     qemu_file_rate_limit
 *       migration_iteration_run:
 *         pending = dirty pages × page size           ram_save_pending
 *         if pending < threshold: SYNC, pending again   (migration_bitmap_sync_precopy)
 *         if pending == 0 || pending < threshold: COMPLETE (break)
 *         else ITERATE                                 ram_save_iterate: send pages while
 *                                                      !rate_limited, < MAX_WAIT (50 ms), pages left
 *     migration_update_counters(now)                  only once ≥ BUFFER_DELAY (100 ms) into the window:
 *                                                      bw = bytes this window / its length,
 *                                                      threshold = bw × downtime_limit,
 *                                                      rate budget reset, new window
 *     if rate_limited: WAIT until window start + BUFFER_DELAY
 * ```
 * The rate budget is max-bandwidth / XFER_LIMIT_RATIO bytes per window
 * (XFER_LIMIT_RATIO = 1000 / BUFFER_DELAY = 10); the check allows the page
 * that crosses it, as QEMU checks before each page. At COMPLETE,
 * `migration_completion` stops the VM and lifts the limit
 * (`qemu_file_set_rate_limit(INT64_MAX)`), and `ram_save_complete` syncs once
 * more and sends every remaining page at the link's speed.
 *
 * Where current master differs (noted, not modelled): `ram_save_pending` was
 * split (8.1, c8df4a7aef) into `_estimate` (no sync) and `_exact` (sync),
 * called as above, so RAM behaves the same; `avail-switchover-bandwidth`
 * (8.2) may replace the measured bandwidth in the threshold; `switchover-ack`
 * may hold the switch back; the rate accounting moved to `mig_stats` and
 * `migration_rate_limit()`; the limit is lifted by
 * `migration_rate_set(RATE_LIMIT_DISABLED)` in `migration_completion_precopy`.
 *
 * Not QEMU: `maxSyncs` (default 30) forces the switchover after that many
 * bitmap syncs, so a run that cannot converge ends (QEMU would run until
 * cancelled, or throttle with auto-converge).
 *
 * Units: ns, bytes. State fields carry QEMU's names in their comments.
 */

/** BUFFER_DELAY: the rate-limit window and the counters' period, ms. */
export const BUFFER_DELAY_MS = 100;
/** XFER_LIMIT_RATIO: windows per second (the budget per window is max-bandwidth / this). */
export const XFER_LIMIT_RATIO = 1000 / BUFFER_DELAY_MS;
/** MAX_WAIT (ram.c): one ram_save_iterate call stops sending after this long, ms. */
export const MAX_WAIT_MS = 50;
/** ram_save_iterate reads the clock every this many pages (`(i & 63) == 0`). */
export const MAX_WAIT_CHECK_PAGES = 64;
/** QEMU's default max-bandwidth (migration/options.c, MAX_THROTTLE): 128 MiB/s. */
export const QEMU_DEFAULT_MAX_BANDWIDTH = 128 * 1024 * 1024;

const NS_PER_MS = 1e6;

export interface QemuThreadOptions {
  /** max-bandwidth, bytes/s; Infinity ⇒ no rate limit. */
  readonly maxBandwidthBytesPerSec: number;
  /** downtime-limit, ms (QEMU default 300). */
  readonly downtimeLimitMs: number;
  readonly pageSizeBytes: number;
  /** Time the thread starts (after setup), ns. */
  readonly startNs: number;
  /** Bitmap syncs before a forced switchover (not QEMU; see header). */
  readonly maxSyncs?: number;
}

/** What the driver does next. */
export type QemuAction =
  /** migration_bitmap_sync_precopy: harvest the log into the migration bitmap, then call `synced`. */
  | { readonly kind: 'sync' }
  /** ram_save_iterate: send pages while `mayContinueIterate` says so, then call `iterated`. */
  | { readonly kind: 'iterate' }
  /** Rate limited: let time pass (the guest runs) until `untilNs`, then call `next` again. */
  | { readonly kind: 'wait'; readonly untilNs: number }
  /** migration_completion: stop the VM, sync, send the rest with the limit lifted. */
  | { readonly kind: 'complete'; readonly reason: 'converged' | 'max-syncs' };

type Stage = 'top' | 'after-sync' | 'bottom';

export class QemuMigrationThread {
  /** s->threshold_size: bytes that fit in the downtime limit at the last window's bandwidth (0 until the first window ends). */
  thresholdBytes = 0;
  /** Bandwidth measured over the last window, bytes/s (s->mbps, in bytes). */
  bandwidthBytesPerSec = 0;
  /** ram_counters.dirty_sync_count: bitmap syncs so far (the setup sync included once `setupSynced` is called). */
  syncs = 0;
  /** s->iteration_start_time: start of the current window, ns. */
  windowStartNs: number;
  /** Windows closed by migration_update_counters. */
  windows = 0;
  /** Whether the limit has been lifted (completion). */
  lifted = false;

  private readonly budgetBytes: number;
  private readonly thresholdPerByteRate: number;
  private readonly maxSyncs: number;
  /** f->rate_limit_used: bytes written in this window. */
  private rateLimitUsed = 0;
  /** s->iteration_initial_bytes, as a running total of bytes since the window started. */
  private windowBytes = 0;
  private stage: Stage = 'top';
  private forced = false;

  constructor(private readonly opts: QemuThreadOptions) {
    if (!(opts.maxBandwidthBytesPerSec > 0)) throw new RangeError(`max-bandwidth must be > 0, got ${opts.maxBandwidthBytesPerSec}`);
    if (!(opts.downtimeLimitMs >= 0)) throw new RangeError(`downtime-limit must be ≥ 0 ms, got ${opts.downtimeLimitMs}`);
    this.windowStartNs = opts.startNs;
    this.budgetBytes = opts.maxBandwidthBytesPerSec / XFER_LIMIT_RATIO;
    this.thresholdPerByteRate = opts.downtimeLimitMs / 1000;
    this.maxSyncs = opts.maxSyncs ?? 30;
  }

  /** The bitmap sync ram_init_bitmaps does at setup (every page dirty): counted as QEMU counts it. */
  setupSynced(): void {
    this.syncs++;
  }

  /** Bytes put on the wire (QEMUFile accounting): the rate budget and the window's bandwidth. */
  account(bytes: number): void {
    this.rateLimitUsed += bytes;
    this.windowBytes += bytes;
  }

  /** qemu_file_rate_limit: the window's budget is spent (`pendingBytes` not yet accounted counts too). */
  rateLimited(pendingBytes = 0): boolean {
    return !this.lifted && this.rateLimitUsed + pendingBytes > this.budgetBytes;
  }

  /** ram_save_iterate's loop condition, checked before each page: budget left, and MAX_WAIT not exceeded. */
  mayContinueIterate(iterateStartNs: number, pagesThisIterate: number, nowNs: number, pendingBytes = 0): boolean {
    if (this.rateLimited(pendingBytes)) return false;
    // QEMU checks the clock after pages 1, 65, 129, … (`(i & 63) == 0` after the send).
    if (pagesThisIterate > 0 && (pagesThisIterate - 1) % MAX_WAIT_CHECK_PAGES === 0 && nowNs - iterateStartNs > MAX_WAIT_MS * NS_PER_MS) return false;
    return true;
  }

  /**
   * The next step, given the time and the migration bitmap's pending bytes
   * (rs->migration_dirty_pages × page size).
   */
  next(nowNs: number, pendingBytes: number): QemuAction {
    for (;;) {
      switch (this.stage) {
        case 'top':
          if (!this.rateLimited()) {
            // migration_iteration_run → ram_save_pending: sync when below the threshold.
            if (pendingBytes < this.thresholdBytes) {
              this.stage = 'after-sync';
              return { kind: 'sync' };
            }
            return this.afterPending(pendingBytes);
          }
          this.stage = 'bottom';
          break;
        case 'after-sync':
          throw new Error('QemuMigrationThread: call synced() after a sync action');
        case 'bottom': {
          this.updateCounters(nowNs);
          this.stage = 'top';
          if (this.rateLimited()) return { kind: 'wait', untilNs: this.windowStartNs + BUFFER_DELAY_MS * NS_PER_MS };
          break;
        }
      }
    }
  }

  /** The sync asked for is done; `pendingBytes` is the migration bitmap now. Returns iterate or complete. */
  synced(pendingBytes: number): QemuAction {
    if (this.stage !== 'after-sync') throw new Error('QemuMigrationThread: synced() without a sync action');
    this.syncs++;
    if (this.syncs >= this.maxSyncs) this.forced = true;
    return this.afterPending(pendingBytes);
  }

  /** ram_save_iterate returned; the loop goes on to the counters and the rate limit. */
  iterated(): void {
    this.stage = 'bottom';
  }

  /** migration_completion lifted the rate limit (`qemu_file_set_rate_limit(INT64_MAX)`). */
  lift(): void {
    this.lifted = true;
  }

  /** s->expected_downtime: what `pendingBytes` would take at the measured bandwidth, ms. */
  expectedDowntimeMs(pendingBytes: number): number {
    return this.bandwidthBytesPerSec > 0 ? (pendingBytes / this.bandwidthBytesPerSec) * 1000 : Infinity;
  }

  /** migration_iteration_run after ram_save_pending. */
  private afterPending(pendingBytes: number): QemuAction {
    if (this.forced) return this.complete('max-syncs');
    if (pendingBytes === 0 || pendingBytes < this.thresholdBytes) return this.complete('converged');
    this.stage = 'bottom'; // iterated() confirms; a driver that skips it still reaches the counters
    return { kind: 'iterate' };
  }

  private complete(reason: 'converged' | 'max-syncs'): QemuAction {
    this.stage = 'top';
    return { kind: 'complete', reason };
  }

  /** migration_update_counters: at most once per BUFFER_DELAY. */
  private updateCounters(nowNs: number): void {
    const spentNs = nowNs - this.windowStartNs;
    if (spentNs < BUFFER_DELAY_MS * NS_PER_MS) return;
    this.bandwidthBytesPerSec = this.windowBytes / (spentNs / 1e9);
    this.thresholdBytes = this.bandwidthBytesPerSec * this.thresholdPerByteRate;
    this.rateLimitUsed = 0; // qemu_file_reset_rate_limit
    this.windowBytes = 0; // update_iteration_initial_status
    this.windowStartNs = nowNs;
    this.windows++;
  }
}
