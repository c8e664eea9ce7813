/**
 * The migration sender: pre-copy rounds driven by log-dirty, a stop policy,
 * stop-and-copy, and the end-to-end digest. Pure: guest, transport, clock
 * and timers are injected.
 *
 * The loop is Xen's send_memory_live (xg_sr_save.c), with the policy asked at
 * the same three points:
 * ```
 *   decide(stats)                                   ← dirtyCount −1, iteration 0
 *   loop:
 *     x++; send pass (first: every page; later: the CLEAN's bitmap)
 *     if decision ≠ continue: break
 *     iteration = x; totalWritten += dirtyCount; dirtyCount = −1
 *     decide(stats); if ≠ continue: break           ← only iteration rules fire
 *     CLEAN → bitmap, dirtyCount
 *     decide(stats)
 *   stop-and-copy: pause, final CLEAN, send it, VCPU_STATE, END(digest), verdict
 * ```
 * A pass hashes each page once — in place, sent from where it sits
 * (zero-copy: guests with `viewPage`), or copied into the batch first — and
 *   - sends a ZERO descriptor for an unpopulated or all-zero page,
 *   - skips it (counted) if its hash equals the hash of its last send,
 *   - otherwise sends it; per-page hashes live in one flat Uint32Array.
 *
 * Clocks. virtual: time advances by the link model — each batch by
 * bytes/rate, each pass end by the latency — and the guest runs for exactly
 * that long, so a seed reproduces a run. real: durations are read from the
 * injected wall clock while the socket drains; the guest runs for the wall
 * time elapsed, after each batch; `bandwidth` becomes a cap.
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
import { hashPage, isZeroPage, ZERO_PAGE_HASH } from './stream/checksum.ts';
import { BatchBuilder, defaultAlloc, encodeEnd, encodeHeader, encodePreamble, encodeVcpuState, type Alloc } from './stream/encoder.ts';
import { HDR_FLAG_VIRTUAL_CLOCK, POLICY_IDS, STREAM_PAGE_SIZE } from './stream/format.ts';
import type { StreamTransport, Verdict } from './transport.ts';

export type ClockMode = 'virtual' | 'real';

export interface SenderOptions {
  readonly policy: StopPolicy;
  /** 'virtual' (default): the link model decides durations; 'real': the wall clock does. */
  readonly clock?: ClockMode;
  /** virtual: the modelled link; real: bandwidth is a cap (Infinity ⇒ none), latency unused. */
  readonly link: LinkModel;
  /** Skip dirty pages whose content hash is unchanged since their last send (default true). */
  readonly skipUnchanged?: boolean;
  /** Unpause the source after a verified migration (default false: it now lives at the destination). */
  readonly resumeSourceAfter?: boolean;
  /**
   * Send pages from guest memory without copying them (default true when the
   * guest has `viewPage`). The bytes hashed must be the bytes that leave, so
   * the guest then runs only once the link holds none of its memory.
   */
  readonly zeroCopy?: boolean;
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
}

/** Per-round counters (field names as `migrate --json` prints them). */
export interface RoundStats {
  readonly round: number;
  /** Descriptors put on the wire (PAGE + ZERO). */
  readonly pages_sent: number;
  /** Pages this round had to consider: guest pages for round 0, else what the CLEAN at its start returned. */
  readonly dirty: number;
  readonly bytes: number;
  readonly duration_ms: number;
  /** Dirty pages not sent because their hash equals the hash of their last send. */
  readonly skipped: number;
  /** Pages sent as a ZERO flag. */
  readonly zero: number;
  /** The final, paused round. */
  readonly stop_and_copy: boolean;
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
  readonly zero_pages: number;
  readonly source_digest: string;
  readonly dest_digest: string;
  readonly verified: boolean;
  readonly page_count: number;
  readonly vcpu_count: number;
  /** The modelled link (virtual) or the cap (real); null = uncapped. */
  readonly bandwidth_mib_s: number | null;
  readonly latency_ms: number;
  /** True when the source guest was unpaused at the end (verification failed, or asked). */
  readonly source_resumed: boolean;
}

const NS_PER_MS = 1e6;
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

class Sender {
  private readonly mode: ClockMode;
  private readonly clock: Clock;
  private readonly vclock: VirtualClock | undefined;
  private readonly policy: StopPolicy;
  private readonly link: LinkModel;
  private readonly skipUnchanged: boolean;
  private readonly builder: BatchBuilder;
  private readonly alloc: Alloc;
  private readonly M: number;
  private readonly bitmap: Uint32Array;
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
  private readonly rounds: RoundStats[] = [];
  /** Rate limit for the current pass (bytes/s). */
  private rate = Infinity;

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
    this.link = opts.link;
    this.skipUnchanged = opts.skipUnchanged ?? true;
    this.alloc = deps.alloc ?? defaultAlloc;
    this.builder = new BatchBuilder(this.alloc);
    this.M = guest.pageCount;
    this.bitmap = new Uint32Array(bitmapWords(this.M));
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
    this.phase = 'live';

    // Pre-copy: send_memory_live.
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

    let decision = this.policy.decide(stats());
    let x = 0;
    for (;;) {
      x++;
      const first = x === 1;
      if (first || dirtyCount > 0) {
        this.rate = Math.min(this.link.bandwidthBytesPerSec, this.policy.rateFor?.(stats(), false) ?? Infinity);
        lastPass = await this.sendPass(x - 1, first, first ? this.M : dirtyCount, false);
      }
      if (decision !== 'continue') break;
      iteration = x;
      totalWritten += first ? this.M : dirtyCount;
      dirtyCount = -1;
      decision = this.policy.decide(stats());
      if (decision !== 'continue') break;
      const cleanAt = this.now();
      dirtyCount = guest.clean(this.bitmap).dirtyCount;
      dirtyIntervalNs = cleanAt - lastCleanNs;
      lastCleanNs = cleanAt;
      decision = this.policy.decide(stats());
    }

    // Stop-and-copy: suspend_and_send_dirty.
    this.phase = 'stop-and-copy';
    const pauseAt = this.now();
    await this.syncGuestTime();
    guest.pause();
    this.pausedByUs = true;
    const finalDirty = guest.clean(this.bitmap).dirtyCount;
    this.rate = Math.min(this.link.bandwidthBytesPerSec, this.policy.rateFor?.(stats(), true) ?? Infinity);
    await this.sendPass(x, false, finalDirty, true);
    const pagesDoneAt = this.now();

    const vcpu = guest.vcpuState();
    const vcpuRec = encodeVcpuState(guest.vcpuCount, vcpu, this.alloc);
    this.write([vcpuRec]);
    this.totalBytes += vcpuRec.length;
    await this.passTime(vcpuRec.length, false);
    const vcpuDoneAt = this.now();

    this.phase = 'verify';
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

    const sum = (k: 'skipped' | 'zero') => this.rounds.reduce((n, r) => n + r[k], 0);
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
      zero_pages: sum('zero'),
      source_digest: digest.hex,
      dest_digest: verdict.destDigest,
      verified: verdict.verified && verdict.destDigest === digest.hex,
      page_count: this.M,
      vcpu_count: guest.vcpuCount,
      bandwidth_mib_s: Number.isFinite(this.link.bandwidthBytesPerSec) ? this.link.bandwidthBytesPerSec / MiB : null,
      latency_ms: this.link.latencyNs / NS_PER_MS,
      source_resumed: resume,
    };
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
    if (dt > 0) await this.guest.runGuestFor(dt);
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

  private async flushBatch(round: number): Promise<void> {
    const wire = this.builder.wireBytes;
    const pages = this.builder.count;
    const viewBytes = this.builder.viewBytes;
    const sealed = this.builder.sealForWrite(round);
    this.viewBytesInFlight += viewBytes;
    const ok = this.write(sealed.chunks, () => {
      this.viewBytesInFlight -= viewBytes;
      sealed.release();
    });
    this.totalBytes += wire;
    this.passBytes += wire;
    this.totalPagesSent += pages;
    this.pageRecords += pages;
    await this.passTime(wire, false, !ok);
  }

  /** One pass: every page (`all`), or the pages set in the bitmap. */
  private async sendPass(round: number, all: boolean, dirty: number, final: boolean): Promise<RoundStats> {
    this.round = round;
    const start = this.now();
    this.passStartNs = start;
    this.passBytes = 0;
    const startBytes = this.totalBytes;
    let sent = 0;
    let skipped = 0;
    let zero = 0;
    let done = 0;
    const total = all ? this.M : dirty;
    const b = this.builder;
    const obs = this.deps.observer;

    // One page: seen in place (zero-copy) or read into the batch, hashed once, then ZERO / skip / PAGE.
    // Synchronous (no promise per page); returns true when the batch is full.
    const zeroCopy = this.zeroCopy;
    const view = this.view;
    const one = (gfn: number): boolean => {
      this.guest.beforeSend?.(gfn); // QEMU clears the chunk's KVM dirty log before sending any of its pages
      let bytes: Uint8Array;
      let off: number;
      let populated: boolean;
      if (zeroCopy) {
        populated = this.guest.viewPage!(gfn, view);
        bytes = view.bytes;
        off = view.offset;
      } else {
        bytes = b.payload;
        off = b.nextPayloadOffset;
        populated = this.guest.readPage(gfn, bytes, off);
      }
      const h = this.h;
      let isZero: boolean;
      if (populated) {
        hashPage(bytes, off, h, 0);
        isZero = h[0] === ZERO_PAGE_HASH.lo && h[1] === ZERO_PAGE_HASH.hi && isZeroPage(bytes, off);
      } else {
        h[0] = ZERO_PAGE_HASH.lo;
        h[1] = ZERO_PAGE_HASH.hi;
        isZero = true;
      }
      done++;
      const lh = this.lastHash;
      if (this.skipUnchanged && this.sentOnce[gfn] === 1 && lh[2 * gfn] === h[0] && lh[2 * gfn + 1] === h[1]) {
        skipped++;
        return false;
      }
      lh[2 * gfn] = h[0]!;
      lh[2 * gfn + 1] = h[1]!;
      this.sentOnce[gfn] = 1;
      if (isZero) {
        b.addZero(gfn);
        zero++;
      } else if (zeroCopy) b.commitView(gfn, bytes, off, h[0]!, h[1]!);
      else b.commitPage(gfn, h[0]!, h[1]!);
      sent++;
      return b.full;
    };
    const flush = async (): Promise<void> => {
      await this.flushBatch(round);
      obs?.progress?.(round, done, total, this.totalBytes);
    };

    if (all) {
      for (let gfn = 0; gfn < this.M; gfn++) if (one(gfn)) await flush();
    } else {
      const bm = this.bitmap;
      for (let w = 0; w < bm.length; w++) {
        let bits = bm[w]!;
        while (bits !== 0) {
          const bit = 31 - Math.clz32(bits & -bits);
          bits &= bits - 1;
          const gfn = (w << 5) + bit;
          if (gfn < this.M && one(gfn)) await flush();
        }
      }
    }
    if (b.count > 0) await this.flushBatch(round);
    await this.passTime(0, true);
    obs?.progress?.(round, done, total, this.totalBytes);

    const r: RoundStats = {
      round,
      pages_sent: sent,
      dirty: all ? this.M : dirty,
      bytes: this.totalBytes - startBytes,
      duration_ms: (this.now() - start) / NS_PER_MS,
      skipped,
      zero,
      stop_and_copy: final,
    };
    this.rounds.push(r);
    obs?.round?.(r);
    return r;
  }
}
