/**
 * MigratableGuest over a real domain: the migration sender's view of a
 * running guest. Log-dirty operations go to the installed DirtyMode (Xen
 * ENABLE/CLEAN/OFF, or the KVM equivalents), pages are read through the
 * p2m, and "the guest runs for T ns" means the workload issues
 * rate × T accesses on the vCPUs (through the TLB, walker, exits and
 * dirty tracking), paced exactly by AccessRate.
 *
 * Units: gfn 4 KiB frames; virtual ns; rate in pages (accesses) per second.
 */
import type { Domain } from '../domain/domain.ts';
import type { MigratableGuest, PageView } from '../migration/migratable-guest.ts';
import { LogDirtyRefusedError } from '../migration/migratable-guest.ts';
import type { DirtyMode } from '../modes/dirty-mode.ts';
import { STAT_COUNT } from '../mmu/mmu-stats.ts';
import type { Rng } from '../rng.ts';
import { PAGE_SIZE } from '../units.ts';
import { AccessBatch, type AccessSource } from '../workload/access-batch.ts';
import { AccessRate } from '../workload/access-rate.ts';

export interface MigratableDomainOptions {
  readonly domain: Domain;
  readonly mode: DirtyMode;
  /** The guest's workload: accesses it makes while migrating (synthetic, or a trace read as it goes). */
  readonly workload: AccessSource;
  /** Accesses (page writes for write workloads) per virtual second. */
  readonly accessesPerSecond: number;
}

/** Raised when the guest crashes while the sender lets it run. */
export class GuestCrashedError extends Error {
  readonly userFacing = true;
  constructor(why: string) {
    super(`the source guest crashed while running: ${why}`);
    this.name = 'GuestCrashedError';
  }
}

export class MigratableDomain implements MigratableGuest {
  readonly pageCount: number;
  readonly vcpuCount: number;
  /** Accesses the guest made while migrating. */
  accessesRun = 0;
  private readonly domain: Domain;
  private readonly mode: DirtyMode;
  private readonly workload: AccessSource;
  private readonly rate: AccessRate;
  private readonly batch = new AccessBatch(4096);
  private workloadEnded = false;
  /** Next unrun record of `batch` (a trace batch may outlast one window). */
  private batchPos = 0;
  /** The mode's lazy CLEAR before a page is sent (MigratableGuest.beforeSend); absent for other modes. */
  readonly beforeSend?: (gfn: number) => void;
  /** kvm-ring: entries reaped from the vCPUs' dirty rings so far (dirty-rate --method ring). */
  readonly dirtyRingEntries?: () => number;

  constructor(o: MigratableDomainOptions) {
    this.domain = o.domain;
    this.mode = o.mode;
    this.workload = o.workload;
    this.rate = new AccessRate(Math.round(o.accessesPerSecond));
    this.pageCount = o.domain.memory.pageCount;
    this.vcpuCount = o.domain.vcpus.length;
    const ringStats = (o.mode as { kvmStats?: { entriesReaped?: number } }).kvmStats;
    if (ringStats !== undefined && typeof ringStats.entriesReaped === 'number') this.dirtyRingEntries = () => ringStats.entriesReaped!;
    // The sender sends pages: a mode that clears its log lazily before each send (kvm-bitmap, manual protect) waits for it.
    if (o.mode.deferClearsToSender !== undefined && o.mode.beforeSend !== undefined) {
      o.mode.deferClearsToSender();
      const mode = o.mode;
      this.beforeSend = (gfn) => mode.beforeSend!(gfn);
    }
  }

  readPage(gfn: number, dst: Uint8Array, dstOffset: number): boolean {
    return this.domain.memory.readPage(gfn, dst, dstOffset);
  }

  /** The frame holding gfn, in place (no copy): for hashing paused memory. False ⇒ unpopulated. */
  viewPage(gfn: number, view: PageView): boolean {
    const mfn = this.domain.memory.frameOf(gfn);
    if (mfn < 0) return false;
    view.bytes = this.domain.pool.bytesOf(mfn);
    view.offset = this.domain.pool.byteOffset(mfn);
    return true;
  }

  enableLogDirty(): void {
    if (this.mode.enabled) throw new LogDirtyRefusedError('enable', 'EINVAL', 'log-dirty is already enabled');
    this.mode.enable();
  }

  clean(bitmap: Uint32Array, final = false): { dirtyCount: number } {
    return { dirtyCount: this.mode.harvest(bitmap, final).dirtyCount };
  }

  peek(bitmap: Uint32Array): { dirtyCount: number } {
    return { dirtyCount: this.mode.peek(bitmap).dirtyCount };
  }

  disableLogDirty(): void {
    if (this.mode.enabled) this.mode.disable();
  }

  pause(): void {
    this.domain.pause();
  }

  unpause(): void {
    this.domain.unpause();
  }

  runGuestFor(virtualNs: number): void | Promise<void> {
    if (this.domain.pauseCount > 0) return;
    return this.runAccesses(this.rate.accessesIn(Math.max(0, Math.round(virtualNs))));
  }

  /**
   * Runs the next n accesses: from what is left of the current batch, then
   * from refills. A synthetic source refills synchronously; a trace reader
   * may return a promise, and then so does this.
   */
  private runAccesses(n: number): void | Promise<void> {
    const batch = this.batch;
    while (n > 0) {
      if (this.batchPos >= batch.length) {
        if (this.workloadEnded) return;
        const more = this.workload.fill(batch, Math.min(n, batch.capacity));
        this.batchPos = 0;
        if (typeof more !== 'boolean') {
          return more.then((m) => {
            if (!m || batch.length === 0) this.workloadEnded = true;
            return this.runAccesses(n);
          });
        }
        if (!more || batch.length === 0) {
          this.workloadEnded = true;
          return;
        }
      }
      const start = this.batchPos;
      const end = Math.min(batch.length, start + n);
      const next = this.domain.run(batch, start, end);
      if (next < end) throw new GuestCrashedError(this.domain.crashReason || `stopped at access ${batch.line[next]}`);
      this.accessesRun += end - start;
      n -= end - start;
      this.batchPos = end;
    }
  }

  /**
   * The vCPUs' state as the migration stream carries it: per vCPU its id,
   * CR3 and counters, little-endian. (Registers are not modelled.)
   */
  vcpuState(): Uint8Array {
    const perVcpu = 8 + 8 + STAT_COUNT * 8;
    const out = new Uint8Array(8 + perVcpu * this.vcpuCount);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, this.vcpuCount, true);
    dv.setUint32(4, this.domain.writeSeq >>> 0, true);
    let off = 8;
    for (const v of this.domain.vcpus) {
      dv.setUint32(off, v.id, true);
      dv.setFloat64(off + 8, v.mmu.cr3, true);
      for (let k = 0; k < STAT_COUNT; k++) dv.setFloat64(off + 16 + k * 8, v.stats[k]!, true);
      off += perVcpu;
    }
    return out;
  }
}

/**
 * Fills guest pages [0, pages) (default: all) with non-zero pseudo-random
 * data, as a guest that has been running would have (`--fill random`); the
 * pages above stay as they are (zero: never written, `--wss`). One Rng draw
 * seeds each page's xorshift stream, so 1 GiB fills in about a second.
 */
export function fillGuestRandom(domain: Domain, rng: Rng, pages?: number): void {
  const mem = domain.memory;
  const pool = domain.pool;
  const n = Math.min(pages ?? mem.pageCount, mem.pageCount);
  for (let gfn = 0; gfn < n; gfn++) {
    const mfn = mem.populate(gfn); // the frame gfn has, or a new one
    fillFrame(pool.wordsOf(mfn), pool.wordOffset(mfn), rng.nextU32() | 1);
  }
}

/** One page of xorshift32 output, written straight into the host frame (int32 math only). */
function fillFrame(words: Uint32Array, base: number, seed: number): void {
  let x = seed | 0;
  const end = base + PAGE_SIZE / 4;
  for (let i = base; i < end; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
}
