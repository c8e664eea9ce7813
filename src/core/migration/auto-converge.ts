/**
 * QEMU's auto-converge (the `auto-converge` capability), as QEMU 7.2 runs it
 * from `migration_bitmap_sync` (migration/ram.c):
 * ```
 *   every bitmap sync:
 *     num_dirty_pages_period += pages newly set in the migration bitmap
 *     if now > time_last_bitmap_sync + 1000 ms:          (one "period")
 *       migration_trigger_throttle:
 *         bytes_xfer_period  = transferred − bytes_xfer_prev
 *         bytes_dirty_period = num_dirty_pages_period × page size
 *         if bytes_dirty_period > bytes_xfer_period × threshold / 100
 *            and ++dirty_rate_high_cnt ≥ 2:               (twice, counted across periods)
 *           dirty_rate_high_cnt = 0
 *           mig_throttle_guest_down: not throttling ⇒ initial; else min(now + increment, max)
 *       reset the period: time_last_bitmap_sync = now, num_dirty_pages_period = 0,
 *                         bytes_xfer_prev = transferred
 * ```
 * The throttle itself (softmmu/cpu-throttle.c `cpu_throttle_thread`): each
 * vCPU sleeps pct/(1 − pct) × CPU_THROTTLE_TIMESLICE (10 ms) per timer period
 * of timeslice/(1 − pct), so it runs (100 − pct)% of the time. Here that is
 * fluid: the guest runs `runFraction` of each stretch of time the sender
 * lets pass. `cpu-throttle-tailslow` (off by default) is not modelled.
 *
 * Pure: the driver gives the time and the byte counters. Units: ns, bytes, pages.
 */

/** QEMU's defaults (migration/migration.c DEFAULT_MIGRATE_*). */
export const CPU_THROTTLE_INITIAL = 20;
export const CPU_THROTTLE_INCREMENT = 10;
export const MAX_CPU_THROTTLE = 99;
export const THROTTLE_TRIGGER_THRESHOLD = 50;
/** migration_bitmap_sync looks at the period only once this much time has passed since its start, ms. */
export const THROTTLE_PERIOD_MS = 1000;

export interface AutoConvergeParams {
  readonly initialPct: number;
  readonly incrementPct: number;
  readonly maxPct: number;
  /** throttle-trigger-threshold, %. */
  readonly triggerThresholdPct: number;
}

export const QEMU_AUTO_CONVERGE: AutoConvergeParams = {
  initialPct: CPU_THROTTLE_INITIAL,
  incrementPct: CPU_THROTTLE_INCREMENT,
  maxPct: MAX_CPU_THROTTLE,
  triggerThresholdPct: THROTTLE_TRIGGER_THRESHOLD,
};

/** The hook the QEMU thread calls once per live bitmap sync; the sender scales the guest's run time by `runFraction`. */
export interface GuestThrottle {
  /** Throttle in force, % (0: none). */
  readonly pct: number;
  /** The fraction of time the vCPUs run: (100 − pct) / 100. */
  readonly runFraction: number;
  /**
   * A bitmap sync just ran at `nowNs`: `newDirtyPages` newly set in the
   * migration bitmap, `transferredBytes` sent since the migration began.
   */
  onSync(nowNs: number, newDirtyPages: number, transferredBytes: number): void;
}

const NS_PER_MS = 1e6;

export class AutoConverge implements GuestThrottle {
  /** cpu_throttle_get_percentage(). */
  pct = 0;
  /** Times the throttle was raised (trace_migration_throttle). */
  raises = 0;
  /** rs->dirty_rate_high_cnt. */
  private highCount = 0;
  /** rs->time_last_bitmap_sync, ns (NaN until the first sync). */
  private periodStartNs = Number.NaN;
  /** rs->num_dirty_pages_period. */
  private dirtyPagesPeriod = 0;
  /** rs->bytes_xfer_prev. */
  private bytesXferPrev = 0;

  constructor(
    private readonly pageSizeBytes: number,
    private readonly p: AutoConvergeParams = QEMU_AUTO_CONVERGE,
  ) {
    if (!(p.initialPct > 0 && p.initialPct <= p.maxPct && p.maxPct < 100)) throw new RangeError(`auto-converge: need 0 < initial ≤ max < 100, got ${p.initialPct}, ${p.maxPct}`);
  }

  get runFraction(): number {
    return (100 - this.pct) / 100;
  }

  onSync(nowNs: number, newDirtyPages: number, transferredBytes: number): void {
    // migration_bitmap_sync: the first sync starts the period.
    if (Number.isNaN(this.periodStartNs)) this.periodStartNs = nowNs;
    this.dirtyPagesPeriod += newDirtyPages;
    if (nowNs <= this.periodStartNs + THROTTLE_PERIOD_MS * NS_PER_MS) return;
    this.triggerThrottle(transferredBytes);
    this.periodStartNs = nowNs;
    this.dirtyPagesPeriod = 0;
    this.bytesXferPrev = transferredBytes;
  }

  /** migration_trigger_throttle. */
  private triggerThrottle(transferredBytes: number): void {
    const xferPeriod = transferredBytes - this.bytesXferPrev;
    const dirtyPeriod = this.dirtyPagesPeriod * this.pageSizeBytes;
    const dirtyThreshold = (xferPeriod * this.p.triggerThresholdPct) / 100;
    if (dirtyPeriod > dirtyThreshold && ++this.highCount >= 2) {
      this.highCount = 0;
      this.throttleGuestDown();
    }
  }

  /** mig_throttle_guest_down (tailslow off). */
  private throttleGuestDown(): void {
    this.pct = this.pct === 0 ? this.p.initialPct : Math.min(this.pct + this.p.incrementPct, this.p.maxPct);
    this.raises++;
  }
}
