/**
 * Incremental stream decoder: feed it chunks cut anywhere; it calls the sink
 * once per complete, verified record, in stream order.
 *
 * Invariants:
 *   - A record reaches the sink only after its checksum matched, so a
 *     corrupted PAGE_BATCH is never applied (the receiver applies in the sink).
 *   - Lengths are checked as soon as the bytes that define them arrive
 *     (count, descriptors, stateBytes), so a tampered length fails at once
 *     rather than stalling while waiting for bytes that will never come.
 *   - After any error the decoder is dead: every later call rethrows it.
 *   - A DecodedBatch and the byte views it holds are valid only during the
 *     sink call (the spill buffer is reused).
 *
 * Zero copy: a PAGE_BATCH payload page that lies wholly inside one pushed
 * chunk is hashed where it sits (at any alignment: socket reads need not
 * keep the stream 4-aligned) and handed to the sink as a view of that chunk;
 * only a page cut by a chunk boundary is copied, into a spill buffer. Each page is hashed as
 * soon as its last byte arrives, so verification is spread over the chunks
 * and the batch checksum at the end covers only descriptors and page hashes.
 * Ownership: the decoder keeps views into pushed chunks until the record they
 * belong to has been delivered, so a caller must not modify a chunk after
 * pushing it while `retainedFrom` is at or before the chunk's last byte (a
 * receiver reading into reused buffers asks it which are free; a sender's
 * payload buffer is reused only after the whole record was pushed).
 */

import { hashPage, hashWords, SEED_RECORD, ZERO_PAGE_HASH } from './checksum.ts';
import {
  BadHeaderError,
  BadMagicError,
  BadPageFlagsError,
  BadRecordLengthError,
  BadRecordTypeError,
  ChecksumMismatchError,
  GfnOutOfRangeError,
  LengthTooLargeError,
  RecordOutOfOrderError,
  StreamError,
  TruncatedStreamError,
  UnsupportedVersionError,
} from './errors.ts';
import {
  BATCH_PREFIX_BYTES,
  DESC_BYTES,
  DESC_FLAGS_MASK,
  DESC_PAGE,
  DESC_ZERO,
  END_BODY_BYTES,
  HEADER_BODY_BYTES,
  MAX_BATCH_BODY,
  MAX_BATCH_PAGES,
  MAX_END_BODY,
  MAX_HEADER_BODY,
  MAX_OPTIONAL_BODY,
  MAX_VCPU_BODY,
  pad8,
  PREAMBLE_BYTES,
  REC_END,
  REC_HEADER,
  REC_OPTIONAL,
  REC_PAGE_BATCH,
  REC_VCPU_STATE,
  RECORD_HEADER_BYTES,
  STREAM_MAGIC,
  STREAM_MAJOR,
  STREAM_PAGE_SHIFT,
  STREAM_PAGE_SIZE,
  type StreamEnd,
  type StreamHeader,
} from './format.ts';

/** One verified PAGE_BATCH, as arrays indexed by descriptor (0 … count−1). */
export interface DecodedBatch {
  readonly round: number;
  readonly count: number;
  /** Descriptors with payload. */
  readonly pages: number;
  readonly gfn: Float64Array;
  /** Byte offset of the descriptor's page in `pageBytes[i]`, or −1 for a ZERO page. */
  readonly payloadOffset: Int32Array;
  /** The bytes holding each PAGE descriptor's page (a pushed chunk or the spill buffer); stale for ZERO. */
  readonly pageBytes: readonly Uint8Array[];
  /** Page hash of each descriptor's page (a ZERO page gets the zero-page hash). */
  readonly hashLo: Uint32Array;
  readonly hashHi: Uint32Array;
  /** Stream byte offset of the record (for messages). */
  readonly offset: number;
}

export interface StreamSink {
  onHeader(h: StreamHeader): void;
  onBatch(b: DecodedBatch): void;
  onVcpuState(vcpuCount: number, state: Uint8Array): void;
  onEnd(e: StreamEnd): void;
}

export interface DecoderOptions {
  /** Largest guest (pages) the HEADER may announce; default 2^40 pages (4 EiB). */
  readonly maxPageCount?: number;
}

const enum Phase {
  Preamble,
  RecordHeader,
  Body,
  Done,
  Failed,
}

const TWO_POW_20 = 1 << 20;
const EMPTY = new Uint8Array(0);
/** Largest body prefix a PAGE_BATCH stages: count, round and the descriptors. */
const MAX_BATCH_PREFIX = BATCH_PREFIX_BYTES + MAX_BATCH_PAGES * DESC_BYTES;
const TWO_POW_32 = 0x100000000;

function typeName(type: number): string {
  switch (type) {
    case REC_HEADER:
      return 'HEADER';
    case REC_PAGE_BATCH:
      return 'PAGE_BATCH';
    case REC_VCPU_STATE:
      return 'VCPU_STATE';
    case REC_END:
      return 'END';
    default:
      return `optional 0x${(type >>> 0).toString(16)}`;
  }
}

export class StreamDecoder {
  private phase = Phase.Preamble;
  private error: StreamError | undefined;
  /** Bytes consumed so far (stream offset of the next byte). */
  private consumed = 0;

  private readonly head = new Uint8Array(RECORD_HEADER_BYTES);
  private readonly headView = new DataView(this.head.buffer);
  private headFill = 0;

  private staging = new Uint8Array(0);
  private stagingView = new DataView(this.staging.buffer);
  private bodyFill = 0;
  private bodyNeed = 0; // padded body length

  private recType = 0;
  private recLen = 0;
  private recCkLo = 0;
  private recCkHi = 0;
  private recOffset = 0;
  /** Batch: the descriptor region has been parsed and checked. */
  private batchChecked = false;
  private batchPages = 0;

  private header: StreamHeader | undefined;
  private seenVcpu = false;
  private readonly maxPageCount: number;

  private readonly summary = new Uint32Array(2 + 4 * MAX_BATCH_PAGES);
  private readonly ck = new Uint32Array(2);
  private readonly batch = {
    round: 0,
    count: 0,
    pages: 0,
    gfn: new Float64Array(MAX_BATCH_PAGES),
    payloadOffset: new Int32Array(MAX_BATCH_PAGES),
    pageBytes: new Array<Uint8Array>(MAX_BATCH_PAGES).fill(EMPTY),
    hashLo: new Uint32Array(MAX_BATCH_PAGES),
    hashHi: new Uint32Array(MAX_BATCH_PAGES),
    offset: 0,
  };

  // PAGE_BATCH payload state (valid once the descriptors are checked).
  /** Body bytes before the first payload page: count, round, descriptors. */
  private descEnd = 0;
  /** Payload page j belongs to descriptor payloadDesc[j]. */
  private readonly payloadDesc = new Int32Array(MAX_BATCH_PAGES);
  /** Payload pages complete (hashed) so far. */
  private pageIdx = 0;
  /** Bytes of the current page copied into the spill buffer (0 ⇒ none). */
  private pageFill = 0;
  /** Pages cut by a chunk boundary or unaligned, at j·4096 (allocated on first need). */
  private spill = EMPTY;
  /** Hashes pages in place (one view per chunk buffer, not per page). */

  constructor(
    private readonly sink: StreamSink,
    opts: DecoderOptions = {},
  ) {
    this.maxPageCount = opts.maxPageCount ?? 2 ** 40;
  }

  /** Stream bytes consumed so far. */
  get offset(): number {
    return this.consumed;
  }

  /**
   * Stream offset of the first pushed byte the decoder may still hold a view
   * of: the start of the current batch's payload while one is being taken,
   * else `offset` (it holds none). A pushed chunk whose bytes all lie before
   * it may be reused.
   */
  get retainedFrom(): number {
    return this.phase === Phase.Body && this.recType === REC_PAGE_BATCH && this.batchChecked ? this.payloadStart : this.consumed;
  }
  private payloadStart = 0;

  /** True once END has been decoded. */
  get done(): boolean {
    return this.phase === Phase.Done;
  }

  /** Feeds bytes; throws a StreamError (and stays failed) on any fault. */
  push(chunk: Uint8Array): void {
    if (this.phase === Phase.Failed) throw this.error!;
    try {
      this.pushInner(chunk);
    } catch (e) {
      if (e instanceof StreamError) {
        this.phase = Phase.Failed;
        this.error = e;
      }
      throw e;
    }
  }

  /** The input ended: throws TruncatedStreamError unless END was decoded. */
  finish(): void {
    if (this.phase === Phase.Failed) throw this.error!;
    if (this.phase === Phase.Done) return;
    let where: string;
    if (this.phase === Phase.Preamble) where = 'in the preamble';
    else if (this.phase === Phase.RecordHeader)
      where = this.headFill === 0 ? 'before the END record' : 'inside a record header';
    else where = `inside a ${typeName(this.recType)} record (${this.bodyFill} of ${this.bodyNeed} body bytes)`;
    this.phase = Phase.Failed;
    this.error = new TruncatedStreamError(where, this.consumed);
    throw this.error;
  }

  private pushInner(chunk: Uint8Array): void {
    let p = 0;
    const n = chunk.length;
    while (p < n) {
      switch (this.phase) {
        case Phase.Preamble:
        case Phase.RecordHeader: {
          const need = (this.phase === Phase.Preamble ? PREAMBLE_BYTES : RECORD_HEADER_BYTES) - this.headFill;
          const take = Math.min(need, n - p);
          this.head.set(chunk.subarray(p, p + take), this.headFill);
          this.headFill += take;
          p += take;
          this.consumed += take;
          if (take === need) {
            this.headFill = 0;
            if (this.phase === Phase.Preamble) this.onPreamble();
            else this.onRecordHeader();
          }
          break;
        }
        case Phase.Body: {
          if (this.recType === REC_PAGE_BATCH && this.batchChecked) {
            p = this.takePayload(chunk, p, n);
            if (this.pageIdx === this.batchPages) this.onRecordBody();
            break;
          }
          // A batch stages only its prefix (count, round, descriptors); other records their whole body.
          const target =
            this.recType !== REC_PAGE_BATCH ? this.bodyNeed : this.bodyFill < BATCH_PREFIX_BYTES ? BATCH_PREFIX_BYTES : this.descEnd;
          const take = Math.min(target - this.bodyFill, n - p);
          this.staging.set(chunk.subarray(p, p + take), this.bodyFill);
          this.bodyFill += take;
          p += take;
          this.consumed += take;
          if (this.recType === REC_PAGE_BATCH) {
            this.checkBatchPrefix();
            if (this.batchChecked && this.batchPages === 0) this.onRecordBody();
          } else {
            if (this.recType === REC_VCPU_STATE && this.bodyFill >= 8 && !this.batchChecked) this.checkVcpuPrefix();
            if (this.bodyFill === this.bodyNeed) this.onRecordBody();
          }
          break;
        }
        case Phase.Done:
          throw new RecordOutOfOrderError('data', 'after END', this.consumed);
        case Phase.Failed:
          throw this.error!;
      }
    }
  }

  private onPreamble(): void {
    const v = this.headView;
    const magic = v.getUint32(0, true);
    if (magic !== STREAM_MAGIC) throw new BadMagicError(magic, 0);
    const major = v.getUint16(4, true);
    const minor = v.getUint16(6, true);
    if (major !== STREAM_MAJOR) throw new UnsupportedVersionError(major, minor, STREAM_MAJOR, 4);
    this.major = major;
    this.minor = minor;
    this.phase = Phase.RecordHeader;
  }
  private major = 0;
  private minor = 0;

  private onRecordHeader(): void {
    const v = this.headView;
    const type = v.getUint32(0, true);
    const len = v.getUint32(4, true);
    const at = this.consumed - RECORD_HEADER_BYTES;
    this.recType = type;
    this.recLen = len;
    this.recCkLo = v.getUint32(8, true);
    this.recCkHi = v.getUint32(12, true);
    this.recOffset = at;
    this.batchChecked = false;

    let max: number;
    let min: number;
    switch (type) {
      case REC_HEADER:
        if (this.header) throw new RecordOutOfOrderError('HEADER', 'twice', at);
        max = MAX_HEADER_BODY;
        min = HEADER_BODY_BYTES;
        break;
      case REC_PAGE_BATCH:
        if (!this.header) throw new RecordOutOfOrderError('PAGE_BATCH', 'before HEADER', at);
        if (this.seenVcpu) throw new RecordOutOfOrderError('PAGE_BATCH', 'after VCPU_STATE', at);
        max = MAX_BATCH_BODY;
        min = BATCH_PREFIX_BYTES + DESC_BYTES;
        break;
      case REC_VCPU_STATE:
        if (!this.header) throw new RecordOutOfOrderError('VCPU_STATE', 'before HEADER', at);
        if (this.seenVcpu) throw new RecordOutOfOrderError('VCPU_STATE', 'twice', at);
        max = MAX_VCPU_BODY;
        min = 8;
        break;
      case REC_END:
        if (!this.header) throw new RecordOutOfOrderError('END', 'before HEADER', at);
        if (!this.seenVcpu) throw new RecordOutOfOrderError('END', 'before VCPU_STATE', at);
        max = MAX_END_BODY;
        min = END_BODY_BYTES;
        break;
      default:
        if ((type & REC_OPTIONAL) === 0) throw new BadRecordTypeError(type, at);
        if (!this.header) throw new RecordOutOfOrderError(typeName(type), 'before HEADER', at);
        max = MAX_OPTIONAL_BODY;
        min = 0;
    }
    if (len > max) throw new LengthTooLargeError(typeName(type), len, max, at);
    if (len < min) throw new BadRecordLengthError(typeName(type), len, `at least ${min}`, at);
    this.bodyNeed = pad8(len);
    this.bodyFill = 0;
    // A batch stages at most its prefix; its pages stay in the pushed chunks.
    const stage = type === REC_PAGE_BATCH ? Math.min(this.bodyNeed, MAX_BATCH_PREFIX) : this.bodyNeed;
    if (this.staging.length < stage) {
      this.staging = new Uint8Array(pad8(Math.max(stage, type === REC_PAGE_BATCH ? MAX_BATCH_PREFIX : 64 * 1024)));
      this.stagingView = new DataView(this.staging.buffer);
    }
    this.phase = Phase.Body;
    if (this.bodyNeed === 0) this.onRecordBody();
  }

  /** Checks a batch's count and descriptors as soon as they are in. */
  private checkBatchPrefix(): void {
    if (this.bodyFill < BATCH_PREFIX_BYTES) return;
    const v = this.stagingView;
    const count = v.getUint32(0, true);
    const at = this.recOffset;
    if (count === 0 || count > MAX_BATCH_PAGES)
      throw new BadRecordLengthError('PAGE_BATCH', this.recLen, `a page count in 1..${MAX_BATCH_PAGES}, found ${count}`, at);
    const descEnd = BATCH_PREFIX_BYTES + count * DESC_BYTES;
    if (this.recLen < descEnd)
      throw new BadRecordLengthError('PAGE_BATCH', this.recLen, `at least ${descEnd} for ${count} pages`, at);
    this.descEnd = descEnd;
    if (this.bodyFill < descEnd) return;
    const pageCount = this.header!.pageCount;
    let pages = 0;
    const b = this.batch;
    for (let i = 0; i < count; i++) {
      const off = BATCH_PREFIX_BYTES + i * DESC_BYTES;
      const lo = v.getUint32(off, true);
      const hi = v.getUint32(off + 4, true);
      const flags = lo & DESC_FLAGS_MASK;
      const gfn = hi * TWO_POW_20 + (lo >>> STREAM_PAGE_SHIFT);
      if (flags !== DESC_ZERO && flags !== DESC_PAGE)
        throw new BadPageFlagsError(flags, at + RECORD_HEADER_BYTES + off);
      if (gfn >= pageCount) throw new GfnOutOfRangeError(gfn, pageCount, at + RECORD_HEADER_BYTES + off);
      b.gfn[i] = gfn;
      if (flags === DESC_PAGE) this.payloadDesc[pages++] = i;
      b.payloadOffset[i] = -1;
    }
    const expected = descEnd + pages * STREAM_PAGE_SIZE;
    if (this.recLen !== expected)
      throw new BadRecordLengthError('PAGE_BATCH', this.recLen, `${expected} for ${count} pages, ${pages} with data`, at);
    b.count = count;
    this.batchPages = pages;
    this.pageIdx = 0;
    this.pageFill = 0;
    this.payloadStart = at + RECORD_HEADER_BYTES + descEnd;
    this.batchChecked = true;
  }

  /**
   * Takes payload bytes of the current batch from `chunk[p, n)`: hashes each
   * page that is whole in the chunk where it sits, spills the rest. Returns the new `p`.
   */
  private takePayload(chunk: Uint8Array, p: number, n: number): number {
    const b = this.batch;
    const ck = this.ck;
    const start = p;
    const pages = this.batchPages;
    while (p < n && this.pageIdx < pages) {
      const j = this.pageIdx;
      const i = this.payloadDesc[j]!;
      if (this.pageFill === 0 && n - p >= STREAM_PAGE_SIZE) {
        hashPage(chunk, p, ck, 0);
        b.pageBytes[i] = chunk;
        b.payloadOffset[i] = p;
        p += STREAM_PAGE_SIZE;
      } else {
        if (this.spill.length === 0) {
          this.spill = new Uint8Array(MAX_BATCH_PAGES * STREAM_PAGE_SIZE);
        }
        const take = Math.min(STREAM_PAGE_SIZE - this.pageFill, n - p);
        const at = j * STREAM_PAGE_SIZE;
        this.spill.set(chunk.subarray(p, p + take), at + this.pageFill);
        this.pageFill += take;
        p += take;
        if (this.pageFill < STREAM_PAGE_SIZE) break;
        this.pageFill = 0;
        hashPage(this.spill, at, ck, 0);
        b.pageBytes[i] = this.spill;
        b.payloadOffset[i] = at;
      }
      b.hashLo[i] = ck[0]!;
      b.hashHi[i] = ck[1]!;
      this.pageIdx = j + 1;
    }
    this.bodyFill += p - start;
    this.consumed += p - start;
    return p;
  }

  private checkVcpuPrefix(): void {
    const stateBytes = this.stagingView.getUint32(4, true);
    if (stateBytes + 8 !== this.recLen)
      throw new BadRecordLengthError('VCPU_STATE', this.recLen, `${stateBytes + 8} for ${stateBytes} state bytes`, this.recOffset);
    this.batchChecked = true;
  }

  private onRecordBody(): void {
    const type = this.recType;
    const at = this.recOffset;
    const ck = this.ck;
    const seed = (SEED_RECORD + this.recLen) | 0;
    if (type === REC_PAGE_BATCH) {
      // Checksum input: [count, round, descriptors…, page hashes…] (format.ts).
      const b = this.batch;
      const count = b.count;
      const s = this.summary;
      const v = this.stagingView;
      const descWords = 2 + 2 * count;
      for (let i = 0; i < descWords; i++) s[i] = v.getUint32(4 * i, true);
      let k = descWords;
      for (let i = 0; i < count; i++) {
        if (b.payloadOffset[i]! < 0) {
          b.hashLo[i] = ZERO_PAGE_HASH.lo;
          b.hashHi[i] = ZERO_PAGE_HASH.hi;
        } else {
          // Hashed in takePayload as the page arrived.
          s[k++] = b.hashLo[i]!;
          s[k++] = b.hashHi[i]!;
        }
      }
      hashWords(s, 0, k, seed, type, ck, 0);
      if (ck[0] !== this.recCkLo || ck[1] !== this.recCkHi) throw new ChecksumMismatchError('PAGE_BATCH', at);
      b.round = s[1]!;
      b.pages = this.batchPages;
      b.offset = at;
      this.phase = Phase.RecordHeader;
      this.sink.onBatch(b);
      return;
    }
    const words = new Uint32Array(this.staging.buffer, 0, this.bodyNeed >>> 2);
    hashWords(words, 0, words.length, seed, type, ck, 0);
    if (ck[0] !== this.recCkLo || ck[1] !== this.recCkHi) throw new ChecksumMismatchError(typeName(type), at);
    const v = this.stagingView;
    this.phase = Phase.RecordHeader;
    switch (type) {
      case REC_HEADER: {
        const pageCount = v.getUint32(0, true) + v.getUint32(4, true) * TWO_POW_32;
        const pageSize = v.getUint32(8, true);
        const vcpuCount = v.getUint32(12, true);
        if (pageSize !== STREAM_PAGE_SIZE) throw new BadHeaderError(`page size ${pageSize}, only 4096 is supported`, at);
        if (pageCount === 0 || pageCount > this.maxPageCount)
          throw new BadHeaderError(`guest of ${pageCount} pages (this receiver takes 1..${this.maxPageCount})`, at);
        if (vcpuCount === 0) throw new BadHeaderError('zero vCPUs', at);
        this.header = {
          major: this.major,
          minor: this.minor,
          pageCount,
          pageSize,
          vcpuCount,
          policyId: v.getUint32(16, true),
          flags: v.getUint32(20, true),
        };
        this.sink.onHeader(this.header);
        return;
      }
      case REC_VCPU_STATE: {
        this.seenVcpu = true;
        const vcpuCount = v.getUint32(0, true);
        const stateBytes = v.getUint32(4, true);
        this.sink.onVcpuState(vcpuCount, this.staging.subarray(8, 8 + stateBytes));
        return;
      }
      case REC_END: {
        this.phase = Phase.Done;
        this.sink.onEnd({
          digestLo: v.getUint32(0, true),
          digestHi: v.getUint32(4, true),
          pageRecords: v.getUint32(8, true) + v.getUint32(12, true) * TWO_POW_32,
        });
        return;
      }
      default:
        return; // optional record of a later minor version: verified, skipped
    }
  }
}
