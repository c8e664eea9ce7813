/**
 * An in-memory MigratableGuest for tests and benchmarks: a flat Uint8Array
 * of guest memory, Xen-like log-dirty (a bitmap and a dirty_count of distinct
 * newly dirtied pages, reset by CLEAN; ENABLE while on is refused with
 * EINVAL), and a synthetic writer that dirties `dirtyRatePagesPerSec` uniformly
 * random pages of [0, workingSetPages) per virtual second, seeded.
 *
 * Each write stores a fresh non-zero u32 at a random word of the page, or,
 * with probability `sameValueFraction`, rewrites the value already there (a
 * dirty page whose content did not change: the hash-skip case).
 */
import { allocHashable } from '../../pagehash/page-hash.ts';
import { Xoshiro128, type Rng } from '../../rng.ts';
import { LogDirtyRefusedError, bitmapWords, type MigratableGuest, type PageView } from '../migratable-guest.ts';

export interface FakeGuestOptions {
  readonly pageCount: number;
  readonly vcpuCount?: number;
  /** 'random' (default): every page holds non-zero data; 'zero': a freshly booted guest. */
  readonly fill?: 'random' | 'zero';
  readonly dirtyRatePagesPerSec?: number;
  readonly workingSetPages?: number;
  readonly sameValueFraction?: number;
  readonly seed?: number;
}

const PAGE = 4096;
const WORDS = PAGE / 4;
const VCPU_STATE_BYTES = 1024;

export class FakeGuest implements MigratableGuest {
  readonly pageCount: number;
  readonly vcpuCount: number;
  readonly memory: Uint8Array;
  private readonly words: Uint32Array;
  /** 1 once a page has been written (fill 'zero' leaves pages unpopulated). */
  private readonly populated: Uint8Array;
  private readonly rng: Rng;
  private dirtyRate: number;
  private readonly workingSet: number;
  private readonly sameValueFraction: number;
  private carry = 0;

  private logDirty = false;
  private readonly dirty: Uint32Array;
  private dirtyCount = 0;
  private pauseCount = 0;
  /** Guest time it has run, ns (feeds the vCPU state). */
  private ranNs = 0;

  /** Counters for tests. */
  readonly counters = { writes: 0, cleans: 0, finalCleans: 0, peeks: 0, enables: 0, disables: 0, pauses: 0, unpauses: 0 };

  constructor(opts: FakeGuestOptions) {
    this.pageCount = opts.pageCount;
    this.vcpuCount = opts.vcpuCount ?? 1;
    this.memory = allocHashable(opts.pageCount * PAGE, true);
    this.words = new Uint32Array(this.memory.buffer);
    this.populated = new Uint8Array(opts.pageCount);
    this.rng = new Xoshiro128(opts.seed ?? 1);
    this.dirtyRate = opts.dirtyRatePagesPerSec ?? 0;
    this.workingSet = Math.min(opts.workingSetPages ?? opts.pageCount, opts.pageCount);
    this.sameValueFraction = opts.sameValueFraction ?? 0;
    this.dirty = new Uint32Array(bitmapWords(opts.pageCount));
    if ((opts.fill ?? 'random') === 'random') {
      // xorshift32 fill: fast enough for a 1 GiB guest (the Rng would take seconds).
      let x = (this.rng.nextU32() | 1) >>> 0;
      const w = this.words;
      for (let i = 0; i < w.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        w[i] = x;
      }
      this.populated.fill(1);
    }
  }

  get paused(): boolean {
    return this.pauseCount > 0;
  }
  get logDirtyEnabled(): boolean {
    return this.logDirty;
  }

  setDirtyRate(pagesPerSec: number): void {
    this.dirtyRate = pagesPerSec;
  }

  readPage(gfn: number, dst: Uint8Array, dstOffset: number): boolean {
    if (this.populated[gfn] === 0) {
      dst.fill(0, dstOffset, dstOffset + PAGE);
      return false;
    }
    dst.set(this.memory.subarray(gfn * PAGE, gfn * PAGE + PAGE), dstOffset);
    return true;
  }

  viewPage(gfn: number, view: PageView): boolean {
    if (this.populated[gfn] === 0) return false;
    view.bytes = this.memory;
    view.offset = gfn * PAGE;
    return true;
  }

  enableLogDirty(): void {
    if (this.logDirty) throw new LogDirtyRefusedError('enable', 'EINVAL', 'log-dirty mode is already on');
    this.logDirty = true;
    this.counters.enables++;
  }

  disableLogDirty(): void {
    this.logDirty = false;
    this.dirty.fill(0);
    this.dirtyCount = 0;
    this.counters.disables++;
  }

  clean(bitmap: Uint32Array, final = false): { dirtyCount: number } {
    if (!this.logDirty) throw new LogDirtyRefusedError('clean', 'EINVAL', 'log-dirty mode is off');
    bitmap.set(this.dirty);
    this.dirty.fill(0);
    const dirtyCount = this.dirtyCount;
    this.dirtyCount = 0;
    this.counters.cleans++;
    if (final) this.counters.finalCleans++;
    return { dirtyCount };
  }

  peek(bitmap: Uint32Array): { dirtyCount: number } {
    if (!this.logDirty) throw new LogDirtyRefusedError('clean', 'EINVAL', 'log-dirty mode is off');
    bitmap.set(this.dirty);
    this.counters.peeks++;
    return { dirtyCount: this.dirtyCount };
  }

  pause(): void {
    this.pauseCount++;
    this.counters.pauses++;
  }

  unpause(): void {
    if (this.pauseCount === 0) throw new Error('unpause of a guest that is not paused');
    this.pauseCount--;
    this.counters.unpauses++;
  }

  /** One guest store of `value` into word `wordIndex` of page `gfn` (marks it dirty). */
  write(gfn: number, wordIndex: number, value: number): void {
    this.words[gfn * WORDS + wordIndex] = value;
    this.populated[gfn] = 1;
    this.counters.writes++;
    if (this.logDirty) {
      const w = gfn >>> 5;
      const bit = 1 << (gfn & 31);
      if ((this.dirty[w]! & bit) === 0) {
        this.dirty[w] = this.dirty[w]! | bit;
        this.dirtyCount++;
      }
    }
  }

  runGuestFor(virtualNs: number): void {
    if (this.pauseCount > 0 || virtualNs <= 0) return;
    this.ranNs += virtualNs;
    this.carry += (this.dirtyRate * virtualNs) / 1e9;
    const n = Math.floor(this.carry);
    this.carry -= n;
    const rng = this.rng;
    for (let i = 0; i < n; i++) {
      const gfn = rng.nextInt(this.workingSet);
      const word = rng.nextU32() & (WORDS - 1);
      const same = this.sameValueFraction > 0 && rng.nextFloat() < this.sameValueFraction;
      this.write(gfn, word, same ? this.words[gfn * WORDS + word]! : (rng.nextU32() | 1) >>> 0);
    }
  }

  vcpuState(): Uint8Array {
    const out = new Uint8Array(this.vcpuCount * VCPU_STATE_BYTES);
    const v = new DataView(out.buffer);
    for (let c = 0; c < this.vcpuCount; c++) {
      const base = c * VCPU_STATE_BYTES;
      v.setUint32(base, c, true); // vcpu id
      v.setFloat64(base + 8, this.ranNs, true); // "rip": how far it ran
      for (let i = 16; i < VCPU_STATE_BYTES; i += 4) v.setUint32(base + i, Math.imul(i + c, 0x9e3779b1) >>> 0, true);
    }
    return out;
  }
}
