/**
 * The bounded-wait rule of `--io-timeout`, for both ends of a migration link.
 *
 * A TCP connection whose packets are silently dropped (a partition, a
 * firewall rule, a dead switch: no RST) does not fail for a long time — Linux
 * retransmits unacknowledged data for ~15 minutes (net.ipv4.tcp_retries2 = 15)
 * and an idle connection waits for ever. Node gives no TCP_USER_TIMEOUT, so
 * the rule is kept here, above the socket:
 *
 *   - the owner reports progress (`progress(bytes)`): bytes handed to the
 *     kernel (a write callback), bytes read;
 *   - while the owner is waiting on the link (`isWaiting()`), no progress for
 *     `timeoutMs` ⇒ `onExpire('silent')`; time spent not waiting (the sender
 *     hashing pages, the guest running) does not count;
 *   - with `minBytesPerSec`, each window of `timeoutMs` must also carry at
 *     least that rate, else `onExpire('slow')`: a peer trickling a byte a
 *     second makes progress for ever, never enough to finish.
 *
 * Checked on a timer (a tenth of the timeout, at most 1 s, unref'd: the
 * socket keeps the process alive, not the watchdog), so it fires within
 * `timeoutMs` plus one tick.
 */

export type ExpiryReason = 'silent' | 'slow';

export interface WatchdogOptions {
  readonly timeoutMs: number;
  /** True while the owner waits on the link; default: always. */
  readonly isWaiting?: () => boolean;
  /** Minimum average rate over each window of `timeoutMs` (default: none). */
  readonly minBytesPerSec?: number;
  readonly onExpire: (reason: ExpiryReason, bytesInWindow: number) => void;
  /** Milliseconds, monotonic (default performance.now). */
  readonly now?: () => number;
}

export class IoWatchdog {
  private lastProgressMs: number;
  private windowStartMs: number;
  private windowBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(private readonly o: WatchdogOptions) {
    this.now = o.now ?? (() => performance.now());
    this.lastProgressMs = this.windowStartMs = this.now();
    const tickMs = Math.max(20, Math.min(1000, o.timeoutMs / 10));
    this.timer = setInterval(() => this.check(), tickMs);
    this.timer.unref();
  }

  /** Something moved on the link (`bytes` of it, for the rate rule). */
  progress(bytes = 0): void {
    this.lastProgressMs = this.now();
    this.windowBytes += bytes;
  }

  /** Checks the rules now (also done on every tick). */
  check(): void {
    if (this.timer === undefined) return;
    const t = this.now();
    const waiting = this.o.isWaiting?.() ?? true;
    if (!waiting) {
      // Only time spent waiting on the link counts.
      this.lastProgressMs = t;
      this.windowStartMs = t;
      this.windowBytes = 0;
      return;
    }
    if (t - this.lastProgressMs >= this.o.timeoutMs) return this.expire('silent');
    if (this.o.minBytesPerSec !== undefined && t - this.windowStartMs >= this.o.timeoutMs) {
      const need = (this.o.minBytesPerSec * (t - this.windowStartMs)) / 1000;
      if (this.windowBytes < need) return this.expire('slow');
      this.windowStartMs = t;
      this.windowBytes = 0;
    }
  }

  private expire(reason: ExpiryReason): void {
    const bytes = this.windowBytes;
    this.stop();
    this.o.onExpire(reason, bytes);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
