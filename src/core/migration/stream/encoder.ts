/**
 * Stream encoder: builds the records described in format.ts.
 *
 * Allocation: every returned chunk is freshly allocated through the injected
 * `alloc` (the socket keeps a reference until the bytes leave), so a chunk is
 * never reused. Adapters pass `Buffer.allocUnsafe` to skip the zero fill; the
 * padding bytes are always written explicitly.
 */

import { hashWords, SEED_RECORD } from './checksum.ts';
import { pageHashArena } from './page-hash.ts';
import {
  BATCH_PREFIX_BYTES,
  DESC_BYTES,
  DESC_PAGE,
  DESC_ZERO,
  END_BODY_BYTES,
  HEADER_BODY_BYTES,
  MAX_BATCH_PAGES,
  pad8,
  PREAMBLE_BYTES,
  REC_END,
  REC_HEADER,
  REC_PAGE_BATCH,
  REC_VCPU_STATE,
  RECORD_HEADER_BYTES,
  STREAM_MAGIC,
  STREAM_MAJOR,
  STREAM_MINOR,
  STREAM_PAGE_SHIFT,
  STREAM_PAGE_SIZE,
} from './format.ts';

export type Alloc = (sizeBytes: number) => Uint8Array;
export const defaultAlloc: Alloc = (n) => new Uint8Array(n);

const TWO_POW_20 = 1 << 20;
const MAX_FREE_PAYLOADS = 8;
const noop = (): void => {};
const TWO_POW_32 = 0x100000000;
const EMPTY_PAYLOAD = new Uint8Array(0);

export function encodePreamble(alloc: Alloc = defaultAlloc): Uint8Array {
  const b = alloc(PREAMBLE_BYTES);
  const v = new DataView(b.buffer, b.byteOffset, PREAMBLE_BYTES);
  v.setUint32(0, STREAM_MAGIC, true);
  v.setUint16(4, STREAM_MAJOR, true);
  v.setUint16(6, STREAM_MINOR, true);
  return b;
}

/**
 * A record of `bodyLen` body bytes: returns the buffer (header + padded body,
 * padding zeroed) and a DataView on it; call `sealPlainRecord` once the body is written.
 */
function newRecord(alloc: Alloc, bodyLen: number): { bytes: Uint8Array; view: DataView } {
  const total = RECORD_HEADER_BYTES + pad8(bodyLen);
  const bytes = alloc(total);
  bytes.fill(0, RECORD_HEADER_BYTES + bodyLen, total);
  return { bytes, view: new DataView(bytes.buffer, bytes.byteOffset, total) };
}

const ck = new Uint32Array(2);

/** Writes type, bodyLen and the checksum of the padded body into the record header. */
function sealPlainRecord(rec: { bytes: Uint8Array; view: DataView }, type: number, bodyLen: number): Uint8Array {
  const padded = pad8(bodyLen);
  const words = new Uint32Array(padded >>> 2);
  new Uint8Array(words.buffer).set(rec.bytes.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + padded));
  hashWords(words, 0, words.length, (SEED_RECORD + bodyLen) | 0, type, ck, 0);
  rec.view.setUint32(0, type, true);
  rec.view.setUint32(4, bodyLen, true);
  rec.view.setUint32(8, ck[0]!, true);
  rec.view.setUint32(12, ck[1]!, true);
  return rec.bytes;
}

/** A record of any type with `body` (used for optional records of later minors, and by tests). */
export function encodeRecord(type: number, body: Uint8Array, alloc: Alloc = defaultAlloc): Uint8Array {
  const rec = newRecord(alloc, body.length);
  rec.bytes.set(body, RECORD_HEADER_BYTES);
  return sealPlainRecord(rec, type >>> 0, body.length);
}

export interface HeaderFields {
  readonly pageCount: number;
  readonly vcpuCount: number;
  readonly policyId: number;
  readonly flags: number;
}

export function encodeHeader(h: HeaderFields, alloc: Alloc = defaultAlloc): Uint8Array {
  const rec = newRecord(alloc, HEADER_BODY_BYTES);
  const v = rec.view;
  const o = RECORD_HEADER_BYTES;
  v.setUint32(o, h.pageCount % TWO_POW_32, true);
  v.setUint32(o + 4, Math.floor(h.pageCount / TWO_POW_32), true);
  v.setUint32(o + 8, STREAM_PAGE_SIZE, true);
  v.setUint32(o + 12, h.vcpuCount, true);
  v.setUint32(o + 16, h.policyId, true);
  v.setUint32(o + 20, h.flags, true);
  v.setUint32(o + 24, 0, true);
  v.setUint32(o + 28, 0, true);
  return sealPlainRecord(rec, REC_HEADER, HEADER_BODY_BYTES);
}

export function encodeVcpuState(vcpuCount: number, state: Uint8Array, alloc: Alloc = defaultAlloc): Uint8Array {
  const bodyLen = 8 + state.length;
  const rec = newRecord(alloc, bodyLen);
  rec.view.setUint32(RECORD_HEADER_BYTES, vcpuCount, true);
  rec.view.setUint32(RECORD_HEADER_BYTES + 4, state.length, true);
  rec.bytes.set(state, RECORD_HEADER_BYTES + 8);
  return sealPlainRecord(rec, REC_VCPU_STATE, bodyLen);
}

export function encodeEnd(digestLo: number, digestHi: number, pageRecords: number, alloc: Alloc = defaultAlloc): Uint8Array {
  const rec = newRecord(alloc, END_BODY_BYTES);
  const o = RECORD_HEADER_BYTES;
  rec.view.setUint32(o, digestLo, true);
  rec.view.setUint32(o + 4, digestHi, true);
  rec.view.setUint32(o + 8, pageRecords % TWO_POW_32, true);
  rec.view.setUint32(o + 12, Math.floor(pageRecords / TWO_POW_32), true);
  return sealPlainRecord(rec, REC_END, END_BODY_BYTES);
}

/** Encodes one descriptor `gfn << 12 | flags` as (lo, hi) u32 words. */
export function descLo(gfn: number, flags: number): number {
  return (((gfn % TWO_POW_20) << STREAM_PAGE_SHIFT) | flags) >>> 0;
}
export function descHi(gfn: number): number {
  return Math.floor(gfn / TWO_POW_20) >>> 0;
}

/**
 * Builds PAGE_BATCH records. The caller reads each candidate page straight
 * into `payload` at `nextPayloadOffset`, hashes it there, then either commits
 * it (`commitPage`), or drops it (zero page → `addZero`; unchanged → nothing),
 * so a page is copied once on the send side.
 *
 *   descriptors + page hashes → `summary` (scratch, checksum input)
 *   payload bytes             → `payload` (handed to the link at seal)
 *
 * Payload buffers come from the page-hash arena when it has room, so a page
 * is hashed where it was copied (page-hash.ts); `dispose()` gives them back.
 */
export class BatchBuilder {
  /** Payload of the batch being built: room for MAX_BATCH_PAGES pages. */
  payload: Uint8Array;
  /** Descriptors in the batch (ZERO + PAGE). */
  count = 0;
  /** PAGE descriptors (pages with payload) in the batch. */
  pages = 0;
  /** [count, round, desc lo/hi × count …] then [page hash lo/hi × pages …] at HASH_BASE. */
  private readonly summary = new Uint32Array(2 + 2 * MAX_BATCH_PAGES + 2 * MAX_BATCH_PAGES);
  private readonly pageHashes = new Uint32Array(2 * MAX_BATCH_PAGES);
  /** Released payload buffers, reused before allocating. */
  private readonly free: Uint8Array[] = [];

  private disposed = false;

  constructor(private readonly alloc: Alloc = defaultAlloc) {
    this.payload = this.newPayload();
  }

  private newPayload(): Uint8Array {
    const n = MAX_BATCH_PAGES * STREAM_PAGE_SIZE;
    return pageHashArena().alloc(n) ?? this.alloc(n);
  }

  /** Returns this builder's payload buffers to the arena; those still in flight go back on release. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const arena = pageHashArena();
    for (const p of this.free) arena.free(p);
    this.free.length = 0;
    arena.free(this.payload);
    this.payload = EMPTY_PAYLOAD;
  }

  get full(): boolean {
    return this.count >= MAX_BATCH_PAGES;
  }

  get nextPayloadOffset(): number {
    return this.pages * STREAM_PAGE_SIZE;
  }

  /** Accepts the page the caller placed at `nextPayloadOffset`, whose page hash is (lo, hi). */
  commitPage(gfn: number, hashLo: number, hashHi: number): void {
    const i = 2 + 2 * this.count;
    this.summary[i] = descLo(gfn, DESC_PAGE);
    this.summary[i + 1] = descHi(gfn);
    this.pageHashes[2 * this.pages] = hashLo;
    this.pageHashes[2 * this.pages + 1] = hashHi;
    this.count++;
    this.pages++;
  }

  addZero(gfn: number): void {
    const i = 2 + 2 * this.count;
    this.summary[i] = descLo(gfn, DESC_ZERO);
    this.summary[i + 1] = descHi(gfn);
    this.count++;
  }

  /** Payload bytes the sealed record will carry. */
  get payloadBytes(): number {
    return this.pages * STREAM_PAGE_SIZE;
  }

  /** Bytes the sealed record will occupy on the wire. */
  get wireBytes(): number {
    return RECORD_HEADER_BYTES + BATCH_PREFIX_BYTES + this.count * DESC_BYTES + this.payloadBytes;
  }

  /**
   * Finishes the record and returns its chunks (head, then payload if any),
   * ready for one corked write; starts a new, empty batch.
   */
  seal(round: number): Uint8Array[] {
    return this.sealForWrite(round).chunks;
  }

  /**
   * As `seal`, plus `release()`: call it once the chunks have left (the
   * transport's write callback) and the payload buffer is reused for a later
   * batch — fresh 4 MiB buffers cost a page fault per 4 KiB on first touch
   * (≈2.7 µs here), more than copying the page.
   */
  sealForWrite(round: number): { chunks: Uint8Array[]; release: () => void } {
    const count = this.count;
    const pages = this.pages;
    const descWords = 2 * count;
    const bodyLen = BATCH_PREFIX_BYTES + count * DESC_BYTES + pages * STREAM_PAGE_SIZE;
    const s = this.summary;
    s[0] = count;
    s[1] = round >>> 0;
    s.set(this.pageHashes.subarray(0, 2 * pages), 2 + descWords);
    hashWords(s, 0, 2 + descWords + 2 * pages, (SEED_RECORD + bodyLen) | 0, REC_PAGE_BATCH, ck, 0);

    const headLen = RECORD_HEADER_BYTES + BATCH_PREFIX_BYTES + count * DESC_BYTES;
    const head = this.alloc(headLen);
    const hv = new DataView(head.buffer, head.byteOffset, headLen);
    hv.setUint32(0, REC_PAGE_BATCH, true);
    hv.setUint32(4, bodyLen, true);
    hv.setUint32(8, ck[0]!, true);
    hv.setUint32(12, ck[1]!, true);
    for (let i = 0; i < 2 + descWords; i++) hv.setUint32(RECORD_HEADER_BYTES + 4 * i, s[i]!, true);

    const payload = this.payload;
    const chunks = pages > 0 ? [head, payload.subarray(0, pages * STREAM_PAGE_SIZE)] : [head];
    let release = noop;
    if (pages > 0) {
      this.payload = this.free.pop() ?? this.newPayload();
      release = () => {
        if (!this.disposed && this.free.length < MAX_FREE_PAYLOADS) this.free.push(payload);
        else pageHashArena().free(payload);
      };
    }
    this.count = 0;
    this.pages = 0;
    return { chunks, release };
  }
}
