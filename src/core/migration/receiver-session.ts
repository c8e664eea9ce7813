/**
 * One incoming migration, transport-free: stream bytes in, destination memory
 * and a verdict out. The socket adapter (src/adapters/migration/receiver.ts)
 * and in-process tests both drive it.
 *
 * Invariants: a batch is applied only after its checksum matched (the
 * decoder guarantees it); pages are applied in stream order, so the last copy
 * of a page wins; at END the digest is recomputed from destination memory
 * and compared with the source's.
 */
import type { Clock } from '../clock.ts';
import { computeDigest, type Digest } from './digest.ts';
import { PagedMemory, ZERO_PAGE_BYTES, type PageStore } from './paged-memory.ts';
import { hashPage, ZERO_PAGE_HASH } from './stream/checksum.ts';
import { StreamDecoder, type DecodedBatch } from './stream/decoder.ts';
import { digestHex, policyNameOf, type StreamEnd, type StreamHeader } from './stream/format.ts';

export interface ReceiverSessionOptions {
  /** Destination memory for a guest of `pageCount` pages; default a fresh PagedMemory. */
  readonly createStore?: (header: StreamHeader) => PageStore;
  readonly maxPageCount?: number;
  /** For the timings in the verdict (ms); none ⇒ 0. */
  readonly clock?: Clock;
  /**
   * Recompute the digest by reading destination memory back (default: only
   * for stores this session does not own). A PagedMemory written only by
   * this session holds exactly the verified bytes, whose page hashes the
   * decoder already computed, so its digest is taken from those (≈2 µs per
   * page cheaper at END).
   */
  readonly digestFromMemory?: boolean;
}

export interface ReceiverOutcome {
  readonly verified: boolean;
  readonly sourceDigest: string;
  readonly destDigest: string;
  readonly pageCount: number;
  readonly vcpuCount: number;
  readonly policy: string;
  readonly batches: number;
  readonly rounds: number;
  readonly pagesApplied: number;
  readonly zeroPages: number;
  readonly bytes: number;
  /** Page descriptors the source announced in END vs those applied. */
  readonly sourcePageRecords: number;
  readonly digestMs: number;
  readonly setupMs: number;
}

export class ReceiverSession {
  private readonly decoder: StreamDecoder;
  private header: StreamHeader | undefined;
  private store: PageStore | undefined;
  private vcpu: Uint8Array | undefined;
  private end: StreamEnd | undefined;
  private outcomeValue: ReceiverOutcome | undefined;
  private batches = 0;
  private lastRound = -1;
  private rounds = 0;
  private pagesApplied = 0;
  private zeroPages = 0;
  private setupMs = 0;
  /** Page hash of each destination page (lo, hi), when the digest is tracked. */
  private pageHashes: Uint32Array | undefined;

  constructor(private readonly opts: ReceiverSessionOptions = {}) {
    this.decoder = new StreamDecoder(
      {
        onHeader: (h) => this.onHeader(h),
        onBatch: (b) => this.onBatch(b),
        onVcpuState: (_n, s) => {
          this.vcpu = s.slice();
        },
        onEnd: (e) => this.onEnd(e),
      },
      { maxPageCount: opts.maxPageCount },
    );
  }

  /** Feeds stream bytes; throws a StreamError on any fault (nothing of the bad record applied). */
  push(chunk: Uint8Array): void {
    this.decoder.push(chunk);
  }

  /** The input ended: throws TruncatedStreamError unless END arrived. */
  finish(): void {
    this.decoder.finish();
  }

  get bytes(): number {
    return this.decoder.offset;
  }

  /** Stream offset of the first pushed byte still referenced (see StreamDecoder.retainedFrom). */
  get retainedFrom(): number {
    return this.decoder.retainedFrom;
  }

  /** Set once END has been processed. */
  get outcome(): ReceiverOutcome | undefined {
    return this.outcomeValue;
  }

  get memory(): PageStore | undefined {
    return this.store;
  }

  get vcpuState(): Uint8Array | undefined {
    return this.vcpu;
  }

  private ms(): number {
    return this.opts.clock ? this.opts.clock.nowNs() / 1e6 : 0;
  }

  private onHeader(h: StreamHeader): void {
    const t0 = this.ms();
    this.header = h;
    this.store = this.opts.createStore ? this.opts.createStore(h) : new PagedMemory(h.pageCount);
    if (this.store.pageCount < h.pageCount) throw new RangeError(`destination has ${this.store.pageCount} pages, the stream ${h.pageCount}`);
    const fromMemory = this.opts.digestFromMemory ?? !(this.store instanceof PagedMemory);
    if (!fromMemory) {
      // Destination memory starts zeroed (a fresh or cleared PagedMemory).
      const ph = (this.pageHashes = new Uint32Array(2 * h.pageCount));
      for (let i = 0; i < ph.length; i += 2) {
        ph[i] = ZERO_PAGE_HASH.lo;
        ph[i + 1] = ZERO_PAGE_HASH.hi;
      }
    }
    this.setupMs = this.ms() - t0;
  }

  private onBatch(b: DecodedBatch): void {
    const store = this.store!;
    const runs = store.writePages !== undefined;
    for (let i = 0; i < b.count; ) {
      const off = b.payloadOffset[i]!;
      const gfn = b.gfn[i]!;
      if (off < 0) {
        store.writePage(gfn, ZERO_PAGE_BYTES, 0);
        this.zeroPages++;
        i++;
        continue;
      }
      // A run: consecutive frames whose bytes follow each other in one buffer.
      const bytes = b.pageBytes[i]!;
      let j = i + 1;
      if (runs) while (j < b.count && b.gfn[j] === gfn + (j - i) && b.pageBytes[j] === bytes && b.payloadOffset[j] === off + (j - i) * 4096) j++;
      if (j - i > 1) store.writePages!(gfn, j - i, bytes, off);
      else store.writePage(gfn, bytes, off);
      i = j;
    }
    const ph = this.pageHashes;
    if (ph) {
      for (let i = 0; i < b.count; i++) {
        const g = b.gfn[i]!;
        ph[2 * g] = b.hashLo[i]!;
        ph[2 * g + 1] = b.hashHi[i]!;
      }
    }
    this.pagesApplied += b.count;
    this.batches++;
    if (b.round !== this.lastRound) {
      this.rounds++;
      this.lastRound = b.round;
    }
  }

  private onEnd(e: StreamEnd): void {
    this.end = e;
    const t0 = this.ms();
    const dest = this.destDigest();
    const digestMs = this.ms() - t0;
    const source = digestHex(e.digestLo, e.digestHi);
    const h = this.header!;
    this.outcomeValue = {
      verified: dest.hex === source && e.pageRecords === this.pagesApplied,
      sourceDigest: source,
      destDigest: dest.hex,
      pageCount: h.pageCount,
      vcpuCount: h.vcpuCount,
      policy: policyNameOf(h.policyId),
      batches: this.batches,
      rounds: this.rounds,
      pagesApplied: this.pagesApplied,
      zeroPages: this.zeroPages,
      bytes: this.decoder.offset,
      sourcePageRecords: e.pageRecords,
      digestMs,
      setupMs: this.setupMs,
    };
  }

  private destDigest(): Digest {
    const store = this.store!;
    const vcpu = this.vcpu ?? new Uint8Array(0);
    const ph = this.pageHashes;
    if (ph)
      return computeDigest(
        this.header!.pageCount,
        (g, o, i) => {
          o[i] = ph[2 * g]!;
          o[i + 1] = ph[2 * g + 1]!;
        },
        vcpu,
      );
    if (store instanceof PagedMemory) return computeDigest(this.header!.pageCount, (g, o, i) => store.hashPageInto(g, o, i), vcpu);
    const scratch = new Uint8Array(4096);
    return computeDigest(
      this.header!.pageCount,
      (g, o, i) => {
        store.readPage(g, scratch, 0);
        hashPage(scratch, 0, o, i);
      },
      vcpu,
    );
  }
}
