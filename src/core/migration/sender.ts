/**
 * The migration sender: pre-copy driven by log-dirty, stop-and-copy, and the
 * end-to-end digest. Pure: guest, transport, clock and timers are injected.
 *
 * Two loops, chosen by the policy's saver (saver.ts):
 *
 * Xen (`send_memory_live`, xg_sr_save.c), the policy asked at Xen's three points:
 * ```
 *   decide(stats)                                   ← dirtyCount −1, iteration 0
 *   loop:
 *     x++; send pass (first: every page; later: the CLEAN's bitmap)
 *     if decision ≠ continue: break
 *     iteration = x; totalWritten += dirtyCount; dirtyCount = −1
 *     decide(stats); if ≠ continue: break           ← only iteration rules fire
 *     CLEAN → bitmap, dirtyCount
 *     decide(stats)
 *   stop-and-copy: pause, final CLEAN (LOGDIRTY_FINAL for v2), send it
 * ```
 * QEMU (qemu-thread.ts): 100 ms rate-limit windows, the threshold from the
 * bandwidth each window measured, a bitmap sync whenever the pending pages
 * fall under it, the switchover when they stay under it, then stop, sync
 * and send the rest with the limit lifted. Its rounds run from one bitmap
 * sync to the next.
 * Both end the same way: VCPU_STATE, END(digest), the receiver's verdict.
 *
 * Page rules (saver.ts), applied to each page a pass considers:
 *   - skipRedirtied: PEEK before each batch; a page dirtied again since the
 *     pass began is skipped (not in the final pass);
 *   - the page is hashed once — in place, sent from where it sits (zero-copy:
 *     guests with `viewPage`), or copied into the batch first;
 *   - skipUnchanged: skipped if its hash equals the hash of its last send;
 *   - zeroPages 'flag': an unpopulated or all-zero page goes as a ZERO
 *     descriptor; 'data': every page goes with its 4096 bytes.
 *
 * Link and cap. The link (`link`) is the pipe; `capBytesPerSec` is the
 * saver's rate limit. Xen loop: every pass, the stop-and-copy included, at
 * min(link, cap, the policy's rate). QEMU loop: bytes cross at the link's
 * speed, the cap is enforced per 100 ms window, and lifted at switchover.
 *
 * Clocks. virtual: time advances by the link model — each batch by
 * bytes/rate, each pass end by the latency, each rate-limit wait to its
 * window's end — and the guest runs for exactly that long, so a seed
 * reproduces a run. real: durations are read from the injected wall clock
 * while the socket drains; the guest runs for the wall time elapsed.
 *
 * Failure: whatever throws (link lost, receiver refused, guest op refused),
 * log-dirty is turned off, the guest unpaused if we paused it, its memory
 * untouched, and a MigrationFailedError says in which phase and round.
 */
import { VirtualClock, type Clock } from '../clock.ts';
import type { PageHashPool } from '../pagehash/pool.ts';
import { digestOfPageHashes, type Digest } from './digest.ts';
import { MigrationFailedError, type MigrationPhase } from './errors.ts';
import { transferNs, type LinkModel } from './link-model.ts';
import { bitmapWords, LogDirtyRefusedError, type MigratableGuest, type PageView } from './migratable-guest.ts';
import type { PrecopyStats, StopPolicy } from './policy/stop-policy.ts';
import type { GuestThrottle } from './auto-converge.ts';
import { QemuMigrationThread } from './qemu-thread.ts';
import { XEN_SAVER, type SaverSpec } from './saver.ts';
import { hashPage, isZeroPage, ZERO_PAGE_HASH } from './stream/checksum.ts';
import { BatchBuilder, defaultAlloc, encodeEnd, encodeHeader, encodePreamble, encodeVcpuState, type Alloc } from './stream/encoder.ts';
import { HDR_FLAG_VIRTUAL_CLOCK, POLICY_IDS, STREAM_PAGE_SIZE } from './stream/format.ts';
import type { StreamTransport, Verdict } from './transport.ts';

export type ClockMode = 'virtual' | 'real';

export interface SenderOptions {
  readonly policy: StopPolicy;
  /** 'virtual' (default): the link model decides durations; 'real': the wall clock does. */
  readonly clock?: ClockMode;
  /** virtual: the modelled link (bandwidth, latency); real: unused but for reports. */
  readonly link: LinkModel;
  /**
   * The saver's rate limit, bytes/s (QEMU max-bandwidth; a cap on every Xen
   * pass). Default Infinity: none. Under the real clock, a cap is the only limit.
   */
  readonly capBytesPerSec?: number;
  /** Skip dirty pages whose content hash is unchanged since their last send (default: the saver's). */
  readonly skipUnchanged?: boolean;
  /** Unpause the source after a verified migration (default false: it now lives at the destination). */
  readonly resumeSourceAfter?: boolean;
  /**
   * Send pages from guest memory without copying them (default true when the
   * guest has `viewPage`). The bytes hashed must be the bytes that leave, so
   * the guest then runs only once the link holds none of its memory.
   */
  readonly zeroCopy?: boolean;
  /**
   * QEMU loop only: a guest throttle (auto-converge) the thread calls once per
   * live bitmap sync; the guest then runs `runFraction` of the time that passes,
   * and each round reports the `throttle_pct` it ran under.
   */
  readonly throttle?: GuestThrottle;
}

export interface SenderDeps {
  /** Required for clock 'real': a wall clock (ns). Ignored for 'virtual' (the sender keeps its own). */
  readonly wallClock?: Clock;
  /** Required for a finite bandwidth cap under the real clock. */
  readonly sleep?: (ns: number) => Promise<void>;
  /** Allocator for stream chunks (adapters: Buffer.allocUnsafe). */
  readonly alloc?: Alloc;
  readonly observer?: SenderObserver;
  /** Optional helper thread for the final digest (adapters: a worker); without it, one thread hashes. */
  readonly pageHashPool?: PageHashPool;
}

/** Below this many pages the final digest is not worth splitting between threads. */
const PARALLEL_DIGEST_MIN_PAGES = 16384;

export interface SenderObserver {
  /** After every batch: pages handled so far in this round, of `total`. */
  progress?(round: number, done: number, total: number, bytesSent: number): void;
  /** After every round. */
  round?(r: RoundStats): void;
  /** On entering a phase ('live', 'stop-and-copy', 'verify'), with the round about to run (−1 if none). */
  phase?(phase: MigrationPhase, round: number): void;
}

/** Per-round counters (field names as `migrate --json` prints them). */
export interface RoundStats {
  /** 0, 1, 2, … contiguous; the stop-and-copy is the last. */
  readonly round: number;
  /** Descriptors put on the wire (PAGE + ZERO). */
  readonly pages_sent: number;
  /**
   * Pages the log-dirty harvest(s) at the round's start returned (Xen
   * stats.dirty_count; KVM: distinct pages); round 0: every guest page.
   */
  readonly dirty: number;
  /** Pages in the send bitmap at the round's start (QEMU: leftovers of the last round + the sync's). */
  readonly pending: number;
  readonly bytes: number;
  /** Xen: the pass; QEMU: from this round's bitmap sync to the next one (stop-and-copy: to its last page). */
  readonly duration_ms: number;
  /** skipped_redirtied + skipped_unchanged. */
  readonly skipped: number;
  /** Not sent: dirtied again since the pass began (PEEK, legacy `skip_this_iter`). */
  readonly skipped_redirtied: number;
  /** Not sent: content hash unchanged since its last send (`--skip-unchanged`). */
  readonly skipped_unchanged: number;
  /** Pages sent as a ZERO flag. */
  readonly zero: number;
  /** Log-dirty harvests (CLEAN / bitmap sync) this round began with: QEMU's dirty-sync-count per round. */
  readonly bitmap_syncs: number;
  /** The final, paused round. */
  readonly stop_and_copy: boolean;
  /** With a throttle (auto-converge): the vCPU throttle in force through this round, %. */
  readonly throttle_pct?: number;
}

export interface DowntimeSplit {
  /** Pause → final CLEAN done and the last dirty page delivered. */
  readonly final_pages_ms: number;
  readonly vcpu_state_ms: number;
  /** Source digest + END + receiver digest + verdict back. */
  readonly verification_ms: number;
  /** Of verification_ms: the source's digest, and the receiver's (as it reported). */
  readonly source_digest_ms: number;
  readonly receiver_digest_ms: number;
}

export interface MigrationResult {
  readonly policy: string;
  readonly policy_params: Readonly<Record<string, number>>;
  readonly clock: ClockMode;
  readonly rounds: readonly RoundStats[];
  readonly downtime_ms: number;
  readonly downtime_split: DowntimeSplit;
  readonly total_ms: number;
  readonly pages_sent: number;
  readonly bytes_sent: number;
  readonly skipped: number;
  readonly skipped_redirtied: number;
  readonly skipped_unchanged: number;
  readonly zero_pages: number;
  /** Log-dirty harvests over the migration (QEMU's dirty-sync-count; Xen's CLEANs). */
  readonly bitmap_syncs: number;
  /** PEEKs (the legacy saver's one per batch). */
  readonly peeks: number;
  readonly source_digest: string;
  readonly dest_digest: string;
  readonly verified: boolean;
  readonly page_count: number;
  readonly vcpu_count: number;
  /** The saver's rate cap, MiB/s; null = none. */
  readonly bandwidth_mib_s: number | null;
  /** The modelled link, MiB/s (virtual clock); null = unlimited or the real socket. */
  readonly link_mib_s: number | null;
  readonly latency_ms: number;
  /** QEMU: why the switchover came ('converged': pending under the threshold; 'max-syncs': our cap). */
  readonly switchover?: 'converged' | 'max-syncs';
  /** True when the source guest was unpaused at the end (verification failed, or asked). */
  readonly source_resumed: boolean;
}

const NS_PER_MS = 1e6;
/** Bitmap syncs before a forced switchover when a throttle (auto-converge) is on: a safety net, not QEMU's. */
export const THROTTLED_MAX_SYNCS = 1000;
const MiB = 1024 * 1024;

/** Runs one migration of `guest` into `transport` (already connected and accepted). */
export async function migrate(
  guest: MigratableGuest,
  transport: StreamTransport,
  options: SenderOptions,
  deps: SenderDeps = {},
): Promise<MigrationResult> {
  const s = new Sender(guest, transport, options, deps);
  return s.run();
}

/** The round being sent: its counters until it closes. */
interface OpenRound {
  readonly round: number;
  readonly startNs: number;
  readonly startBytes: number;
  dirty: number;
  pending: number;
  syncs: number;
  sent: number;
  zero: number;
  skippedRedirtied: number;
  skippedUnchanged: number;
  /** Pages considered (progress). */
  done: number;
  readonly final: boolean;
  /** The throttle in force when the round opened, % (with a throttle). */
  throttlePct?: number;
}

class Sender {
  private readonly mode: ClockMode;
  private readonly clock: Clock;
  private readonly vclock: VirtualClock | undefined;
  private readonly policy: StopPolicy;
  private readonly saver: SaverSpec;
  private readonly link: LinkModel;
  private readonly cap: number;
  private readonly skipUnchanged: boolean;
  private readonly zeroFlag: boolean;
  private readonly builder: BatchBuilder;
  private readonly alloc: Alloc;
  private readonly M: number;
  /** The send bitmap: the CLEAN's (Xen), or QEMU's migration bitmap. */
  private readonly bitmap: Uint32Array;
  /** PEEK's bitmap (legacy `to_skip`), or the harvest QEMU merges into `bitmap`. */
  private readonly scratch: Uint32Array;
  /** Hash (lo, hi) of each page at its last send; valid where `sentOnce`. */
  private readonly lastHash: Uint32Array;
  private readonly sentOnce: Uint8Array;
  private readonly h = new Uint32Array(2);
  private readonly zeroCopy: boolean;
  private readonly view: PageView = { bytes: new Uint8Array(0), offset: 0 };
  /** Guest-memory bytes the transport still holds (zero-copy sends not yet released). */
  private viewBytesInFlight = 0;

  private phase: MigrationPhase = 'setup';
  private round = -1;
  private logDirtyOn = false;
  private pausedByUs = false;
  private guestRanUntilNs = 0;
  private totalBytes = 0;
  private totalPagesSent = 0;
  private pageRecords = 0;
  private syncs = 0;
  private peeks = 0;
  private readonly rounds: RoundStats[] = [];
  private cur: OpenRound | null = null;
  /** Rate for the bytes being sent now (bytes/s): the virtual clock's per-byte time, the real clock's pacing. */
  private rate = Infinity;
  /** QEMU: the thread that rate-limits and decides (null under the Xen loop). */
  private qemu: QemuMigrationThread | null = null;
  private switchover: 'converged' | 'max-syncs' | undefined;

  constructor(
    private readonly guest: MigratableGuest,
    private readonly transport: StreamTransport,
    private readonly opts: SenderOptions,
    private readonly deps: SenderDeps,
  ) {
    this.mode = opts.clock ?? 'virtual';
    if (this.mode === 'real') {
      if (!deps.wallClock) throw new TypeError('clock "real" needs deps.wallClock');
      this.clock = deps.wallClock;
    } else {
      this.vclock = new VirtualClock();
      this.clock = this.vclock;
    }
    this.policy = opts.policy;
    this.saver = opts.policy.saver ?? XEN_SAVER;
    this.link = opts.link;
    this.cap = opts.capBytesPerSec ?? Infinity;
    if (!(this.cap > 0)) throw new RangeError(`capBytesPerSec must be > 0, got ${this.cap}`);
    this.skipUnchanged = opts.skipUnchanged ?? this.saver.skipUnchanged;
    this.zeroFlag = this.saver.zeroPages === 'flag';
    this.alloc = deps.alloc ?? defaultAlloc;
    this.builder = new BatchBuilder(this.alloc);
    this.M = guest.pageCount;
    this.bitmap = new Uint32Array(bitmapWords(this.M));
    this.scratch = new Uint32Array(bitmapWords(this.M));
    this.lastHash = new Uint32Array(2 * this.M);
    this.sentOnce = new Uint8Array(this.M);
    this.zeroCopy = (opts.zeroCopy ?? true) && guest.viewPage !== undefined;
  }

  async run(): Promise<MigrationResult> {
    try {
      return await this.runInner();
    } catch (e) {
      this.cleanupAfterFailure();
      if (e instanceof MigrationFailedError) throw e;
      throw new MigrationFailedError(this.phase, this.round, this.transport.failure ?? e);
    }
  }

  private cleanupAfterFailure(): void {
    // Xen: cleanup always issues SHADOW_OP_OFF; the guest keeps running at the source.
    if (this.logDirtyOn) {
      try {
        this.guest.disableLogDirty();
      } catch {
        /* already off */
      }
      this.logDirtyOn = false;
    }
    if (this.pausedByUs) {
      this.guest.unpause();
      this.pausedByUs = false;
    }
    this.transport.close();
  }

  private enter(phase: MigrationPhase, round: number): void {
    this.phase = phase;
    this.deps.observer?.phase?.(phase, round);
  }

  private now(): number {
    return this.clock.nowNs();
  }

  private async runInner(): Promise<MigrationResult> {
    const guest = this.guest;
    const t0 = this.now();
    this.guestRanUntilNs = t0;

    // Setup (xg_sr_save.c enable_logdirty): ENABLE; if refused, OFF then ENABLE again.
    try {
      guest.enableLogDirty();
    } catch (e) {
      if (!(e instanceof LogDirtyRefusedError)) throw e;
      guest.disableLogDirty();
      guest.enableLogDirty();
    }
    this.logDirtyOn = true;
    const policyId = (POLICY_IDS as Record<string, number>)[this.policy.name] ?? 0;
    this.write([
      encodePreamble(this.alloc),
      encodeHeader(
        {
          pageCount: this.M,
          vcpuCount: guest.vcpuCount,
          policyId,
          flags: this.mode === 'virtual' ? HDR_FLAG_VIRTUAL_CLOCK : 0,
        },
        this.alloc,
      ),
    ]);
    this.enter('live', 0);

    const pauseAt = this.saver.loop === 'qemu' ? await this.qemuLoop() : await this.xenLoop(t0);
    const pagesDoneAt = this.now();

    const vcpu = guest.vcpuState();
    const vcpuRec = encodeVcpuState(guest.vcpuCount, vcpu, this.alloc);
    this.write([vcpuRec]);
    this.totalBytes += vcpuRec.length;
    await this.passTime(vcpuRec.length, false);
    const vcpuDoneAt = this.now();

    this.enter('verify', this.round);
    const digestStart = this.now();
    const digest = await this.sourceDigest(vcpu);
    const sourceDigestMs = (this.now() - digestStart) / NS_PER_MS;
    const end = encodeEnd(digest.lo, digest.hi, this.pageRecords, this.alloc);
    this.write([end]);
    this.totalBytes += end.length;
    await this.passTime(end.length, true);
    const verdict: Verdict = await this.transport.verdict();
    if (this.vclock) this.vclock.advanceNs(this.link.latencyNs); // the verdict's trip back
    const doneAt = this.now();

    // Success or not, log-dirty goes off. A failed verification leaves the source running.
    guest.disableLogDirty();
    this.logDirtyOn = false;
    const resume = !verdict.verified || (this.opts.resumeSourceAfter ?? false);
    if (resume) {
      guest.unpause();
      this.pausedByUs = false;
    }
    this.transport.close();

    const sum = (k: 'skipped' | 'skipped_redirtied' | 'skipped_unchanged' | 'zero') => this.rounds.reduce((n, r) => n + r[k], 0);
    return {
      policy: this.policy.name,
      policy_params: this.policy.params,
      clock: this.mode,
      rounds: this.rounds,
      downtime_ms: (doneAt - pauseAt) / NS_PER_MS,
      downtime_split: {
        final_pages_ms: (pagesDoneAt - pauseAt) / NS_PER_MS,
        vcpu_state_ms: (vcpuDoneAt - pagesDoneAt) / NS_PER_MS,
        verification_ms: (doneAt - vcpuDoneAt) / NS_PER_MS,
        source_digest_ms: this.mode === 'real' ? sourceDigestMs : 0,
        receiver_digest_ms: verdict.receiverDigestMs,
      },
      total_ms: (doneAt - t0) / NS_PER_MS,
      pages_sent: this.totalPagesSent,
      bytes_sent: this.totalBytes,
      skipped: sum('skipped'),
      skipped_redirtied: sum('skipped_redirtied'),
      skipped_unchanged: sum('skipped_unchanged'),
      zero_pages: sum('zero'),
      bitmap_syncs: this.syncs,
      peeks: this.peeks,
      source_digest: digest.hex,
      dest_digest: verdict.destDigest,
      verified: verdict.verified && verdict.destDigest === digest.hex,
      page_count: this.M,
      vcpu_count: guest.vcpuCount,
      bandwidth_mib_s: Number.isFinite(this.cap) ? this.cap / MiB : null,
      link_mib_s: this.mode === 'virtual' && Number.isFinite(this.link.bandwidthBytesPerSec) ? this.link.bandwidthBytesPerSec / MiB : null,
      latency_ms: this.link.latencyNs / NS_PER_MS,
      ...(this.switchover !== undefined ? { switchover: this.switchover } : {}),
      source_resumed: resume,
    };
  }

  // ------------------------------------------------------------------ Xen: send_memory_live

  /** Pre-copy and stop-and-copy as xg_sr_save.c does them; returns when the last page is delivered, with the pause time. */
  private async xenLoop(t0: number): Promise<number> {
    const guest = this.guest;
    let iteration = 0;
    let dirtyCount = -1;
    let totalWritten = 0;
    let lastPass: RoundStats | undefined;
    let lastCleanNs = t0;
    let dirtyIntervalNs = 0;
    const stats = (): PrecopyStats => ({
      iteration,
      dirtyCount,
      totalWritten,
      totalPagesSent: this.totalPagesSent,
      totalBytes: this.totalBytes,
      pageCount: this.M,
      pageSizeBytes: STREAM_PAGE_SIZE,
      lastPassPagesSent: lastPass ? lastPass.pages_sent : -1,
      lastPassSkipped: lastPass ? lastPass.skipped : -1,
      lastPassBytes: lastPass ? lastPass.bytes : 0,
      lastPassNs: lastPass ? lastPass.duration_ms * NS_PER_MS : 0,
      bandwidthBytesPerSec: lastPass && lastPass.duration_ms > 0 ? lastPass.bytes / (lastPass.duration_ms / 1000) : 0,
      dirtyIntervalNs,
      elapsedNs: this.now() - t0,
    });
    const rateFor = (final: boolean): number =>
      Math.min(this.link.bandwidthBytesPerSec, this.cap, this.policy.rateFor?.(stats(), final) ?? Infinity);

    let decision = this.policy.decide(stats());
    let x = 0;
    // CLEANs since the last pass (one that returned nothing sends no pass; the next round counts it).
    let cleansSincePass = 0;
    for (;;) {
      x++;
      const first = x === 1;
      if (first || dirtyCount > 0) {
        this.rate = rateFor(false);
        lastPass = await this.xenPass(first, first ? this.M : dirtyCount, cleansSincePass, false);
        cleansSincePass = 0;
      }
      if (decision !== 'continue') break;
      iteration = x;
      totalWritten += first ? this.M : dirtyCount;
      dirtyCount = -1;
      decision = this.policy.decide(stats());
      if (decision !== 'continue') break;
      const cleanAt = this.now();
      dirtyCount = guest.clean(this.bitmap).dirtyCount;
      this.syncs++;
      cleansSincePass++;
      dirtyIntervalNs = cleanAt - lastCleanNs;
      lastCleanNs = cleanAt;
      decision = this.policy.decide(stats());
    }

    // Stop-and-copy: suspend_and_send_dirty.
    this.enter('stop-and-copy', this.round + 1);
    const pauseAt = this.now();
    await this.syncGuestTime();
    guest.pause();
    this.pausedByUs = true;
    const finalDirty = guest.clean(this.bitmap, this.saver.finalCleanFlag).dirtyCount;
    this.syncs++;
    this.rate = rateFor(true);
    await this.xenPass(false, finalDirty, cleansSincePass + 1, true);
    return pauseAt;
  }

  /** One Xen pass: every page (`all`), or the pages set in the CLEAN's bitmap. */
  private async xenPass(all: boolean, dirty: number, cleans: number, final: boolean): Promise<RoundStats> {
    const r = this.openRound(dirty, all ? this.M : dirty, cleans, final);
    const peekSkip = this.saver.skipRedirtied && !final;
    const skip = this.scratch;
    const b = this.builder;
    // xc_domain_save.c: PEEK into to_skip before collecting each batch of up to 1024 pages.
    let needPeek = peekSkip;
    const consider = async (gfn: number): Promise<void> => {
      if (needPeek) {
        this.guest.peek(skip);
        this.peeks++;
        needPeek = false;
      }
      if (peekSkip && (skip[gfn >>> 5]! & (1 << (gfn & 31))) !== 0) {
        r.done++;
        r.skippedRedirtied++;
        return;
      }
      if (this.sendOne(gfn)) {
        await this.flushBatch();
        needPeek = peekSkip;
      }
    };
    if (all) {
      for (let gfn = 0; gfn < this.M; gfn++) await consider(gfn);
    } else {
      const bm = this.bitmap;
      for (let w = 0; w < bm.length; w++) {
        let bits = bm[w]!;
        while (bits !== 0) {
          const bit = 31 - Math.clz32(bits & -bits);
          bits &= bits - 1;
          const gfn = (w << 5) + bit;
          if (gfn < this.M) await consider(gfn);
        }
      }
    }
    if (b.count > 0) await this.flushBatch();
    await this.passTime(0, true);
    return this.closeRound();
  }

  // ------------------------------------------------------------------ QEMU: migration_thread

  /**
   * The QEMU thread: windows, syncs and the switchover, then the stop-and-copy
   * with the limit lifted. Returns when the last page is delivered, with the pause time.
   */
  private async qemuLoop(): Promise<number> {
    const guest = this.guest;
    const M = this.M;
    // Bytes cross at the link's speed; the thread enforces the cap per window.
    this.rate = this.mode === 'virtual' ? this.link.bandwidthBytesPerSec : Infinity;
    const downtimeLimitMs = this.policy.params['downtime_limit_ms'] ?? 300;
    const thread = new QemuMigrationThread({
      maxBandwidthBytesPerSec: this.cap,
      downtimeLimitMs,
      pageSizeBytes: STREAM_PAGE_SIZE,
      startNs: this.now(),
      // Our cap on syncs (not QEMU's) ends a run that cannot converge; with a throttle QEMU relies on
      // the throttle instead, so the cap is only a safety net then.
      maxSyncs: this.opts.throttle ? THROTTLED_MAX_SYNCS : (this.policy.params['max_iterations'] ?? 30),
    });
    this.qemu = thread;

    // ram_init_bitmaps: every page dirty, and a first sync (counted as QEMU counts it).
    for (let gfn = 0; gfn < M; gfn++) this.bitmap[gfn >>> 5] = this.bitmap[gfn >>> 5]! | (1 << (gfn & 31));
    let pending = M;
    guest.clean(this.scratch);
    this.syncs++;
    thread.setupSynced();
    this.opts.throttle?.onSync(this.now(), 0, 0); // the setup sync starts the first period
    this.openRound(M, M, 1, false);
    let cursor = 0;
    const PAGE = STREAM_PAGE_SIZE;

    /** migration_bitmap_sync_precopy: harvest, OR into the migration bitmap, a new round. */
    const sync = (): number => {
      this.closeRound();
      const dirty = guest.clean(this.scratch).dirtyCount;
      this.syncs++;
      const fresh = orInto(this.bitmap, this.scratch, M);
      pending += fresh;
      // migration_bitmap_sync → migration_trigger_throttle (auto-converge.ts), once per sync.
      this.opts.throttle?.onSync(this.now(), fresh, this.totalBytes);
      this.openRound(dirty, pending, 1, false);
      return dirty;
    };

    /** ram_save_iterate: send from the cursor while the thread allows; false ⇒ no dirty page was left. */
    const iterate = async (): Promise<void> => {
      const b = this.builder;
      const t0 = this.now();
      let n = 0;
      while (thread.mayContinueIterate(t0, n, this.nowWithBatch(), b.wireBytes)) {
        if (pending === 0) break; // ram_find_and_save_block found nothing
        const gfn = nextSetBit(this.bitmap, M, cursor);
        this.bitmap[gfn >>> 5] = this.bitmap[gfn >>> 5]! & ~(1 << (gfn & 31)); // migration_bitmap_clear_dirty
        pending--;
        cursor = gfn + 1 === M ? 0 : gfn + 1;
        // (QEMU clears a KVM dirty-log chunk lazily here, before its first page leaves:
        //  migration_clear_memory_region_dirty_bitmap.)
        if (this.sendOne(gfn)) await this.flushBatch();
        n++;
      }
      if (b.count > 0) await this.flushBatch(); // the iteration ends with EOS and a flush
    };

    let decisionSync = false;
    for (;;) {
      let a = thread.next(this.now(), pending * PAGE);
      if (a.kind === 'sync') {
        sync();
        a = thread.synced(pending * PAGE);
        decisionSync = a.kind === 'complete';
      }
      if (a.kind === 'complete') {
        this.switchover = a.reason;
        break;
      }
      if (a.kind === 'iterate') {
        await iterate();
        thread.iterated();
      } else if (a.kind === 'wait') {
        await this.waitUntil(a.untilNs);
      }
    }

    // migration_completion: stop the VM, lift the limit; ram_save_complete: sync, send the rest.
    this.enter('stop-and-copy', this.round + 1);
    thread.lift();
    const pauseAt = this.now();
    await this.syncGuestTime();
    guest.pause();
    this.pausedByUs = true;
    const r = this.cur!;
    let stop: OpenRound;
    if (decisionSync && r.sent === 0 && r.skippedUnchanged === 0) {
      // The sync that decided the switchover opened this round; the final sync joins it.
      this.cur = { ...r, final: true };
      stop = this.cur;
    } else {
      this.closeRound();
      stop = this.openRound(0, pending, 0, true);
    }
    stop.dirty += guest.clean(this.scratch).dirtyCount;
    this.syncs++;
    stop.syncs++;
    pending += orInto(this.bitmap, this.scratch, M);
    stop.pending = pending;
    this.rate = this.mode === 'virtual' ? this.link.bandwidthBytesPerSec : Infinity;
    while (pending > 0) {
      const gfn = nextSetBit(this.bitmap, M, cursor);
      this.bitmap[gfn >>> 5] = this.bitmap[gfn >>> 5]! & ~(1 << (gfn & 31));
      pending--;
      cursor = gfn + 1 === M ? 0 : gfn + 1;
      if (this.sendOne(gfn)) await this.flushBatch();
    }
    if (this.builder.count > 0) await this.flushBatch();
    await this.passTime(0, true);
    this.closeRound();
    return pauseAt;
  }

  /** Rate limited: time passes until the window ends (virtual: the clock jumps; real: sleep), the guest runs. */
  private async waitUntil(untilNs: number): Promise<void> {
    const ahead = untilNs - this.now();
    if (ahead > 0) {
      if (this.vclock) this.vclock.advanceNs(ahead);
      else if (this.deps.sleep) await this.deps.sleep(ahead);
    }
    await this.syncGuestTime();
  }

  /** The clock as the batch being built would leave it (virtual: its bytes at the current rate). */
  private nowWithBatch(): number {
    return this.vclock ? this.now() + transferNs(this.builder.wireBytes, this.rate) : this.now();
  }

  // ------------------------------------------------------------------ rounds and pages

  private openRound(dirty: number, pending: number, syncs: number, final: boolean): OpenRound {
    const r: OpenRound = {
      round: this.rounds.length,
      startNs: this.now(),
      startBytes: this.totalBytes,
      dirty,
      pending,
      syncs,
      sent: 0,
      zero: 0,
      skippedRedirtied: 0,
      skippedUnchanged: 0,
      done: 0,
      final,
      ...(this.opts.throttle ? { throttlePct: this.opts.throttle.pct } : {}),
    };
    this.round = r.round;
    this.cur = r;
    this.passStartNs = r.startNs;
    this.passBytes = 0;
    return r;
  }

  private closeRound(): RoundStats {
    const r = this.cur!;
    const out: RoundStats = {
      round: r.round,
      pages_sent: r.sent,
      dirty: r.dirty,
      pending: r.pending,
      bytes: this.totalBytes - r.startBytes,
      duration_ms: (this.now() - r.startNs) / NS_PER_MS,
      skipped: r.skippedRedirtied + r.skippedUnchanged,
      skipped_redirtied: r.skippedRedirtied,
      skipped_unchanged: r.skippedUnchanged,
      zero: r.zero,
      bitmap_syncs: r.syncs,
      stop_and_copy: r.final,
      ...(r.throttlePct !== undefined ? { throttle_pct: r.throttlePct } : {}),
    };
    this.rounds.push(out);
    this.cur = null;
    this.deps.observer?.progress?.(r.round, r.done, r.pending, this.totalBytes);
    this.deps.observer?.round?.(out);
    return out;
  }

  /**
   * One page under the saver's rules: seen in place (zero-copy) or read into
   * the batch, hashed once, then skipped (unchanged), ZERO, or PAGE.
   * Synchronous (no promise per page); returns true when the batch is full.
   */
  private sendOne(gfn: number): boolean {
    // QEMU clears the chunk's KVM dirty log just before it reads any of the
    // chunk's pages to send them (migration_bitmap_clear_dirty →
    // migration_clear_memory_region_dirty_bitmap); other modes have no hook.
    this.guest.beforeSend?.(gfn);
    const r = this.cur!;
    const b = this.builder;
    const view = this.view;
    let bytes: Uint8Array;
    let off: number;
    let populated: boolean;
    let inPlace = this.zeroCopy;
    if (inPlace) {
      populated = this.guest.viewPage!(gfn, view);
      bytes = view.bytes;
      off = view.offset;
      if (!populated && !this.zeroFlag) {
        // An unpopulated page sent with data: its zeros go through the batch.
        inPlace = false;
        bytes = b.payload;
        off = b.nextPayloadOffset;
        this.guest.readPage(gfn, bytes, off);
      }
    } else {
      bytes = b.payload;
      off = b.nextPayloadOffset;
      populated = this.guest.readPage(gfn, bytes, off);
    }
    const h = this.h;
    let isZero: boolean;
    if (populated) {
      hashPage(bytes, off, h, 0);
      isZero = this.zeroFlag && h[0] === ZERO_PAGE_HASH.lo && h[1] === ZERO_PAGE_HASH.hi && isZeroPage(bytes, off);
    } else {
      h[0] = ZERO_PAGE_HASH.lo;
      h[1] = ZERO_PAGE_HASH.hi;
      isZero = this.zeroFlag;
    }
    r.done++;
    const lh = this.lastHash;
    if (this.skipUnchanged && this.sentOnce[gfn] === 1 && lh[2 * gfn] === h[0] && lh[2 * gfn + 1] === h[1]) {
      r.skippedUnchanged++;
      return false;
    }
    lh[2 * gfn] = h[0]!;
    lh[2 * gfn + 1] = h[1]!;
    this.sentOnce[gfn] = 1;
    if (isZero) {
      b.addZero(gfn);
      r.zero++;
    } else if (inPlace) b.commitView(gfn, bytes, off, h[0]!, h[1]!);
    else b.commitPage(gfn, h[0]!, h[1]!);
    r.sent++;
    return b.full;
  }

  /**
   * The digest of paused memory, every page re-read (so a page whose dirty
   * bit was lost shows). With a helper thread and a large guest, the helper
   * hashes the upper half while this thread hashes the lower half.
   */
  private async sourceDigest(vcpu: Uint8Array): Promise<Digest> {
    const guest = this.guest;
    const M = this.M;
    const pool = this.deps.pageHashPool;
    const words = pool ? pool.sharedU32(2 * M + 2) : new Uint32Array(2 * M + 2);
    const scratch = new Uint8Array(STREAM_PAGE_SIZE);
    const view: PageView = { bytes: scratch, offset: 0 };
    const hashRange = (from: number, to: number): void => {
      for (let gfn = from; gfn < to; gfn++) {
        const populated = guest.viewPage ? guest.viewPage(gfn, view) : guest.readPage(gfn, scratch, 0);
        if (populated) hashPage(view.bytes, view.offset, words, 2 * gfn);
        else {
          words[2 * gfn] = ZERO_PAGE_HASH.lo;
          words[2 * gfn + 1] = ZERO_PAGE_HASH.hi;
        }
      }
    };
    let split = M;
    let helper: Promise<void> | undefined;
    if (pool && guest.viewPage && M >= PARALLEL_DIGEST_MIN_PAGES) {
      const from = M >>> 1;
      const locs = pool.sharedI32(2 * (M - from));
      let shareable = true;
      for (let gfn = from; gfn < M && shareable; gfn++) {
        const i = 2 * (gfn - from);
        if (!guest.viewPage(gfn, view)) locs[i] = -1;
        else {
          locs[i] = pool.memoryId(view.bytes);
          locs[i + 1] = view.bytes.byteOffset + view.offset;
          shareable = locs[i]! >= 0;
        }
      }
      if (shareable) {
        split = from;
        helper = pool.hash(locs, M - from, words, 2 * from);
      }
    }
    hashRange(0, split);
    if (helper) {
      try {
        await helper;
      } catch {
        hashRange(split, M); // the helper failed: this thread does its half
      }
    }
    return digestOfPageHashes(words, M, vcpu);
  }

  private write(chunks: readonly Uint8Array[], onReleased?: () => void): boolean {
    const f = this.transport.failure;
    if (f) throw f;
    return this.transport.write(chunks, onReleased);
  }

  /**
   * Lets the (running) guest catch up with the clock — once the link has
   * let go of every guest page sent in place, so no vCPU writes a frame
   * between its hash and its departure.
   */
  private async syncGuestTime(): Promise<void> {
    if (this.viewBytesInFlight > 0 && !this.pausedByUs) await this.transport.flush();
    const now = this.now();
    const dt = now - this.guestRanUntilNs;
    this.guestRanUntilNs = now;
    // A throttled vCPU sleeps pct% of the time (cpu_throttle_thread): it runs runFraction of it.
    const run = this.opts.throttle ? dt * this.opts.throttle.runFraction : dt;
    if (run > 0) await this.guest.runGuestFor(run);
  }

  /**
   * Time passes for `bytes` just written: virtual ⇒ advance the model clock
   * (and the latency at a pass end); real ⇒ honour backpressure, the cap, and
   * at a pass end wait until the socket has drained. Then the guest runs.
   */
  private async passTime(bytes: number, passEnd: boolean, drainNeeded = false): Promise<void> {
    if (this.vclock) {
      this.vclock.advanceNs(transferNs(bytes, this.rate) + (passEnd ? this.link.latencyNs : 0));
      if (drainNeeded) await this.transport.drain();
      // Model time is unaffected, but waiting for the pass to leave means a
      // lost link is noticed in the round it hit, not at the verdict.
      if (passEnd) await this.transport.flush();
    } else {
      if (drainNeeded) await this.transport.drain();
      if (passEnd) await this.transport.flush();
      if (this.rate !== Infinity && this.deps.sleep) {
        const due = this.passStartNs + transferNs(this.passBytes, this.rate);
        const ahead = due - this.now();
        if (ahead > 0) await this.deps.sleep(ahead);
      }
    }
    const f = this.transport.failure;
    if (f) throw f;
    await this.syncGuestTime();
  }
  private passStartNs = 0;
  private passBytes = 0;

  private async flushBatch(): Promise<void> {
    const b = this.builder;
    const wire = b.wireBytes;
    const pages = b.count;
    const viewBytes = b.viewBytes;
    const sealed = b.sealForWrite(this.round);
    this.viewBytesInFlight += viewBytes;
    const ok = this.write(sealed.chunks, () => {
      this.viewBytesInFlight -= viewBytes;
      sealed.release();
    });
    this.totalBytes += wire;
    this.passBytes += wire;
    this.totalPagesSent += pages;
    this.pageRecords += pages;
    this.qemu?.account(wire);
    await this.passTime(wire, false, !ok);
    const r = this.cur;
    if (r) this.deps.observer?.progress?.(r.round, r.done, r.pending, this.totalBytes);
  }
}

/** ORs `src` into `dst` over `pages` bits; returns how many bits were newly set. */
function orInto(dst: Uint32Array, src: Uint32Array, pages: number): number {
  let added = 0;
  const words = bitmapWords(pages);
  for (let w = 0; w < words; w++) {
    const s = src[w]!;
    if (s === 0) continue;
    let fresh = (s & ~dst[w]!) >>> 0;
    if (w === words - 1 && (pages & 31) !== 0) fresh &= (1 << (pages & 31)) - 1;
    dst[w] = dst[w]! | fresh;
    while (fresh !== 0) {
      fresh &= fresh - 1;
      added++;
    }
  }
  return added;
}

/** The first set bit at or after `from`, wrapping at `pages` (QEMU's page search continues where it stopped). The bitmap must not be empty. */
function nextSetBit(bm: Uint32Array, pages: number, from: number): number {
  const words = bitmapWords(pages);
  let w = from >>> 5;
  let bits = bm[w]! & (~0 << (from & 31));
  for (let scanned = 0; scanned <= words; scanned++) {
    if (bits !== 0) {
      const gfn = (w << 5) + (31 - Math.clz32(bits & -bits));
      if (gfn < pages) return gfn;
    }
    w = w + 1 === words ? 0 : w + 1;
    bits = bm[w]!;
  }
  throw new Error('nextSetBit: the bitmap is empty');
}
