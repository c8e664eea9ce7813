/**
 * Stream encoder: builds the records described in format.ts.
 *
 * Allocation: every returned chunk is freshly allocated through the injected
 * `alloc` (the socket keeps a reference until the bytes leave), so a chunk is
 * never reused. Adapters pass `Buffer.allocUnsafe` to skip the zero fill; the
 * padding bytes are always written explicitly.
 */

import { hashWords, SEED_RECORD } from './checksum.ts';
import { allocHashable } from '../../pagehash/page-hash.ts';
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
 * so a page is copied once on the send side. Or the caller hands a page
 * where it sits (`commitView`: no copy at all); it must then keep those bytes
 * unchanged until the batch's `release` (the sender holds the guest still).
 *
 *   descriptors + page hashes → `summary` (scratch, checksum input)
 *   payload bytes             → segments, in descriptor order: runs of
 *                               `payload` (copied pages) and of caller
 *                               buffers (views; adjacent pages coalesce)
 *
 * Payload buffers are WebAssembly memories (page-hash.ts `allocHashable`),
 * so a page is hashed where it was copied.
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
  /** Bytes of `payload` used by copied pages. */
  private payloadUsed = 0;
  /** Payload segments: bytes[start, end) each, in wire order. */
  private segBytes: Uint8Array[] = [];
  private segStart: number[] = [];
  private segEnd: number[] = [];
  /** Bytes of this batch sent from caller buffers (`commitView`). */
  viewBytes = 0;

  constructor(private readonly alloc: Alloc = defaultAlloc) {
    this.payload = allocHashable(MAX_BATCH_PAGES * STREAM_PAGE_SIZE);
  }

  get full(): boolean {
    return this.count >= MAX_BATCH_PAGES;
  }

  get nextPayloadOffset(): number {
    return this.payloadUsed;
  }

  /** Appends bytes[start, start + 4096) to the payload, extending the last segment when adjacent. */
  private appendSegment(bytes: Uint8Array, start: number): void {
    const n = this.segBytes.length - 1;
    if (n >= 0 && this.segBytes[n] === bytes && this.segEnd[n] === start) this.segEnd[n] = start + STREAM_PAGE_SIZE;
    else {
      this.segBytes.push(bytes);
      this.segStart.push(start);
      this.segEnd.push(start + STREAM_PAGE_SIZE);
    }
  }

  /**
   * Accepts the page at `bytes[offset …+4096]`, sent from there without a
   * copy; the bytes must not change until the sealed batch is released.
   */
  commitView(gfn: number, bytes: Uint8Array, offset: number, hashLo: number, hashHi: number): void {
    this.appendSegment(bytes, offset);
    this.viewBytes += STREAM_PAGE_SIZE;
    this.addPageDescriptor(gfn, hashLo, hashHi);
  }

  /** Accepts the page the caller placed at `nextPayloadOffset`, whose page hash is (lo, hi). */
  commitPage(gfn: number, hashLo: number, hashHi: number): void {
    this.appendSegment(this.payload, this.payloadUsed);
    this.payloadUsed += STREAM_PAGE_SIZE;
    this.addPageDescriptor(gfn, hashLo, hashHi);
  }

  private addPageDescriptor(gfn: number, hashLo: number, hashHi: number): void {
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
    const chunks: Uint8Array[] = [head];
    for (let i = 0; i < this.segBytes.length; i++) chunks.push(this.segBytes[i]!.subarray(this.segStart[i], this.segEnd[i]));
    let release = noop;
    if (this.payloadUsed > 0) {
      this.payload = this.free.pop() ?? allocHashable(MAX_BATCH_PAGES * STREAM_PAGE_SIZE);
      release = () => {
        if (this.free.length < MAX_FREE_PAYLOADS) this.free.push(payload);
      };
    }
    this.count = 0;
    this.pages = 0;
    this.payloadUsed = 0;
    this.viewBytes = 0;
    this.segBytes = [];
    this.segStart = [];
    this.segEnd = [];
    return { chunks, release };
  }
}
