/**
 * Dirty-rate estimation, QEMU's `calc-dirty-rate` (migration/dirtyrate.c,
 * v7.2.0), three methods over a running guest:
 *
 *   sample  (`calculate_dirtyrate_sample_vm`): pick 512 random pages per GiB
 *           of RAM (DIRTYRATE_DEFAULT_SAMPLE_PAGES, `record_ramblock_hash_info`:
 *           `sample_pages_count = used_length × 512 >> 30`, vfns drawn with
 *           replacement), hash each, let the guest run S seconds, hash them
 *           again (`compare_page_hash_info`); rate = changed / sampled × RAM / S
 *           (`update_dirtyrate`). QEMU hashes with crc32 and reports whole MB/s;
 *           we hash with the stream's 64-bit page hash and keep the fraction.
 *           It measures *distinct* pages: a page written twice counts once.
 *           QEMU skips ramblocks under 128 MiB (`skip_sample_ramblock`); a
 *           single-block guest here is always sampled, at least one page.
 *   bitmap  (`calculate_dirtyrate_dirty_bitmap`): turn the dirty log on, clear
 *           it, let the guest run S seconds, sync it once and count the pages
 *           (here: one log-dirty CLEAN/harvest, in any mode).
 *   ring    (`calculate_dirtyrate_dirty_ring`): count the entries the vCPUs
 *           pushed onto their KVM dirty rings over S seconds
 *           (`vcpu_calculate_dirtyrate`, per-vCPU `dirty_pages`); needs kvm-ring.
 *           A page re-dirtied after its entry was reaped and reset counts again.
 *
 * Pure: the guest, the random source and the time are injected; time is the
 * guest's virtual time (the guest runs exactly S seconds).
 * Units: pages (4 KiB), seconds, bytes.
 */
import type { Rng } from '../rng.ts';
import { bitmapWords, type MigratableGuest } from './migratable-guest.ts';
import { hashPage } from './stream/checksum.ts';
import { STREAM_PAGE_SIZE } from './stream/format.ts';

/** DIRTYRATE_DEFAULT_SAMPLE_PAGES: sampled pages per GiB. */
export const DIRTYRATE_DEFAULT_SAMPLE_PAGES = 512;
export const DIRTY_RATE_METHODS = ['sample', 'ring', 'bitmap'] as const;
export type DirtyRateMethod = (typeof DIRTY_RATE_METHODS)[number];

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;

/** What the estimator needs of a guest: the migration view, plus the ring's entry count for `ring`. */
export interface DirtyRateGuest extends Pick<MigratableGuest, 'pageCount' | 'readPage' | 'enableLogDirty' | 'clean' | 'disableLogDirty' | 'runGuestFor'> {
  /** kvm-ring only: entries reaped from the vCPUs' dirty rings so far (cumulative). */
  dirtyRingEntries?(): number;
}

export interface DirtyRateResult {
  readonly method: DirtyRateMethod;
  readonly seconds: number;
  readonly dirty_rate_pages_s: number;
  readonly dirty_rate_mib_s: number;
  /** sample: pages hashed, and how many changed. */
  readonly sample_pages?: number;
  readonly sample_dirty?: number;
  /** bitmap: pages the CLEAN returned; ring: entries counted. */
  readonly dirty_pages?: number;
  readonly page_count: number;
}

export class DirtyRateUnavailableError extends Error {
  readonly userFacing = true;
  constructor(why: string) {
    super(why);
    this.name = 'DirtyRateUnavailableError';
  }
}

/** The number of pages `sample` hashes for a guest of `pageCount` pages. */
export function samplePageCount(pageCount: number, perGiB = DIRTYRATE_DEFAULT_SAMPLE_PAGES): number {
  return Math.max(1, Math.floor((pageCount * STREAM_PAGE_SIZE * perGiB) / GiB));
}

export async function measureDirtyRate(guest: DirtyRateGuest, method: DirtyRateMethod, seconds: number, rng: Rng): Promise<DirtyRateResult> {
  if (!(seconds > 0)) throw new RangeError(`seconds must be > 0, got ${seconds}`);
  const M = guest.pageCount;
  const ns = seconds * 1e9;
  const result = (pages: number, extra: Partial<DirtyRateResult>): DirtyRateResult => ({
    method,
    seconds,
    dirty_rate_pages_s: pages / seconds,
    dirty_rate_mib_s: (pages * STREAM_PAGE_SIZE) / MiB / seconds,
    ...extra,
    page_count: M,
  });

  if (method === 'sample') {
    const n = samplePageCount(M);
    const vfn = new Uint32Array(n);
    const before = new Uint32Array(2 * n);
    const after = new Uint32Array(2 * n);
    const page = new Uint8Array(STREAM_PAGE_SIZE);
    for (let i = 0; i < n; i++) vfn[i] = rng.nextU32() % M;
    const hashAll = (into: Uint32Array): void => {
      for (let i = 0; i < n; i++) {
        guest.readPage(vfn[i]!, page, 0);
        hashPage(page, 0, into, 2 * i);
      }
    };
    hashAll(before);
    await guest.runGuestFor(ns);
    hashAll(after);
    let changed = 0;
    for (let i = 0; i < n; i++) if (before[2 * i] !== after[2 * i] || before[2 * i + 1] !== after[2 * i + 1]) changed++;
    return result((changed / n) * M, { sample_pages: n, sample_dirty: changed });
  }

  if (method === 'ring' && guest.dirtyRingEntries === undefined) throw new DirtyRateUnavailableError('dirty-rate --method ring counts KVM dirty-ring entries: it needs --mode kvm-ring');
  const bitmap = new Uint32Array(bitmapWords(M));
  guest.enableLogDirty();
  try {
    guest.clean(bitmap); // start from an empty log
    const entries0 = guest.dirtyRingEntries?.() ?? 0;
    await guest.runGuestFor(ns);
    const { dirtyCount } = guest.clean(bitmap);
    if (method === 'ring') {
      const entries = guest.dirtyRingEntries!() - entries0;
      return result(entries, { dirty_pages: entries });
    }
    return result(dirtyCount, { dirty_pages: dirtyCount });
  } finally {
    guest.disableLogDirty();
  }
}
