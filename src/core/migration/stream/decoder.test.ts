/** Every malformed or tampered stream is refused with its own named error. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeSpec } from './codec.test.ts';
import { StreamDecoder } from './decoder.ts';
import { BatchBuilder, encodeRecord, encodeEnd, encodeHeader, encodePreamble, encodeVcpuState } from './encoder.ts';
import { hashPage } from './checksum.ts';
import {
  BadHeaderError, BadMagicError, BadPageFlagsError, BadRecordLengthError, BadRecordTypeError, ChecksumMismatchError,
  GfnOutOfRangeError, LengthTooLargeError, RecordOutOfOrderError, TruncatedStreamError, UnsupportedVersionError,
} from './errors.ts';
import { MAX_BATCH_BODY, REC_OPTIONAL, RECORD_HEADER_BYTES, STREAM_MAJOR } from './format.ts';

const good = () => encodeSpec({
  pageCount: 64, vcpus: 2,
  batches: [[{ gfn: 1, fill: [7] }, { gfn: 2, fill: null }, { gfn: 3, fill: [9, 9] }], [{ gfn: 1, fill: [8] }]],
  vcpu: [1, 2, 3, 4, 5], digest: [0xdead, 0xbeef],
});

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** Decodes, counting applied batches; returns the error thrown (or undefined). */
function run(bytes: Uint8Array, chunk = 7): { err: unknown; batches: number } {
  let batches = 0;
  const d = new StreamDecoder({ onHeader() {}, onBatch() { batches++; }, onVcpuState() {}, onEnd() {} });
  try {
    for (let i = 0; i < bytes.length; i += chunk) d.push(bytes.subarray(i, i + chunk));
    d.finish();
    return { err: undefined, batches };
  } catch (err) {
    return { err, batches };
  }
}

const u32 = (b: Uint8Array, off: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(off, v, true);
const rd32 = (b: Uint8Array, off: number) => new DataView(b.buffer, b.byteOffset).getUint32(off, true);
/** Offset of the first record header of `type` (walks the record chain). */
function findRecord(b: Uint8Array, type: number, nth = 0): number {
  let o = 8;
  while (o < b.length) {
    if (rd32(b, o) === type && nth-- === 0) return o;
    o += RECORD_HEADER_BYTES + ((rd32(b, o + 4) + 7) & ~7);
  }
  throw new Error('no such record');
}

test('a good stream decodes', () => {
  assert.equal(run(good()).err, undefined);
  assert.equal(run(good()).batches, 2);
});

test('bad magic', () => {
  const b = good(); b[0] = 0x58;
  assert.ok(run(b).err instanceof BadMagicError);
});

test('unsupported major version', () => {
  for (const major of [STREAM_MAJOR - 1, STREAM_MAJOR + 1]) {
    const b = good(); new DataView(b.buffer).setUint16(4, major, true);
    const { err } = run(b);
    assert.ok(err instanceof UnsupportedVersionError);
    assert.match((err as Error).message, new RegExp(`${major}\\.0 is not supported`));
  }
});

test('a newer minor version is accepted, and its optional records skipped', () => {
  const b = good(); new DataView(b.buffer).setUint16(6, 7, true);
  assert.equal(run(b).err, undefined);
  // An optional record (bit 31) between HEADER and the first batch is checked and skipped…
  const at = findRecord(b, 2);
  const opt = encodeRecord(0x55 | REC_OPTIONAL, new Uint8Array([1, 2, 3]));
  assert.equal(run(concat(b.subarray(0, at), opt, b.subarray(at))).err, undefined);
  // …but only if its checksum holds.
  opt[RECORD_HEADER_BYTES] ^= 1;
  const withOpt = concat(b.subarray(0, at), opt, b.subarray(at));
  assert.ok(run(withOpt).err instanceof ChecksumMismatchError);
});

test('bad (unknown mandatory) record type', () => {
  const b = good(); u32(b, findRecord(b, 2), 0x77);
  assert.ok(run(b).err instanceof BadRecordTypeError);
});

test('length too large', () => {
  const b = good(); u32(b, findRecord(b, 2) + 4, MAX_BATCH_BODY + 8);
  assert.ok(run(b).err instanceof LengthTooLargeError);
});

test('a length that disagrees with the batch contents fails as soon as the descriptors are in', () => {
  const b = good(); const at = findRecord(b, 2);
  u32(b, at + 4, rd32(b, at + 4) + 4096);
  // Cut right after the descriptors: the error must come without the rest of the stream.
  const { err } = run(b.subarray(0, at + RECORD_HEADER_BYTES + 8 + 3 * 8));
  assert.ok(err instanceof BadRecordLengthError);
});

test('checksum mismatch: a flipped payload byte, and the batch is not applied', () => {
  const b = good(); const at = findRecord(b, 2);
  b[at + RECORD_HEADER_BYTES + 8 + 3 * 8 + 100] ^= 0x10;
  const { err, batches } = run(b);
  assert.ok(err instanceof ChecksumMismatchError);
  assert.equal(batches, 0);
});

test('checksum mismatch: a flipped END digest', () => {
  const b = good(); b[findRecord(b, 4) + RECORD_HEADER_BYTES] ^= 1;
  assert.ok(run(b).err instanceof ChecksumMismatchError);
});

test('truncated stream: every proper prefix is refused', () => {
  const b = good();
  for (let n = 0; n < b.length; n += 5) {
    const { err } = run(b.subarray(0, n));
    assert.ok(err instanceof TruncatedStreamError, `prefix ${n}: ${String(err)}`);
  }
});

test('gfn out of range', () => {
  const bb = new BatchBuilder(); const h = new Uint32Array(2);
  bb.payload.fill(3, 0, 4096); hashPage(bb.payload, 0, h, 0); bb.commitPage(64, h[0]!, h[1]!);
  const s = concat(encodePreamble(), encodeHeader({ pageCount: 64, vcpuCount: 1, policyId: 1, flags: 0 }), ...bb.seal(0));
  const { err } = run(s);
  assert.ok(err instanceof GfnOutOfRangeError);
  assert.match((err as Error).message, /0x40/);
});

test('bad page flags', () => {
  const b = good(); const at = findRecord(b, 2) + RECORD_HEADER_BYTES + 8;
  u32(b, at, rd32(b, at) | 0x3); // ZERO and PAGE together
  assert.ok(run(b).err instanceof BadPageFlagsError);
});

test('records out of order', () => {
  const hdr = encodeHeader({ pageCount: 8, vcpuCount: 1, policyId: 1, flags: 0 });
  const vc = encodeVcpuState(1, new Uint8Array(4));
  const end = encodeEnd(1, 2, 0);
  const bb = new BatchBuilder(); bb.addZero(1); const batch = bb.seal(0);
  const cases: Uint8Array[] = [
    concat(encodePreamble(), ...batch),                 // batch before HEADER
    concat(encodePreamble(), hdr, hdr),                 // HEADER twice
    concat(encodePreamble(), hdr, end),                 // END before VCPU_STATE
    concat(encodePreamble(), hdr, vc, ...batch),        // batch after VCPU_STATE
    concat(encodePreamble(), hdr, vc, end, end),        // data after END
  ];
  for (const c of cases) assert.ok(run(c).err instanceof RecordOutOfOrderError, String(run(c).err));
});

test('bad header: page size other than 4 KiB', () => {
  const b = encodeHeader({ pageCount: 8, vcpuCount: 1, policyId: 1, flags: 0 });
  // The checksum covers the body, so tampering fails the checksum first…
  const t = b.slice(); u32(t, RECORD_HEADER_BYTES + 8, 8192);
  assert.ok(run(concat(encodePreamble(), t)).err instanceof ChecksumMismatchError);
  // …and a zero-page guest is refused by the header check itself.
  const z = encodeHeader({ pageCount: 0, vcpuCount: 1, policyId: 1, flags: 0 });
  assert.ok(run(concat(encodePreamble(), z)).err instanceof BadHeaderError);
});

test('the decoder stays failed after an error', () => {
  const b = good(); b[0] = 0;
  const d = new StreamDecoder({ onHeader() {}, onBatch() {}, onVcpuState() {}, onEnd() {} });
  assert.throws(() => d.push(b), BadMagicError);
  assert.throws(() => d.push(new Uint8Array(1)), BadMagicError);
});

test('every single-byte flip anywhere is refused, and no damaged batch is applied', () => {
  const ref = good();
  for (let i = 0; i < ref.length; i++) {
    if (i === 6 || i === 7) continue; // the minor version: any minor is accepted by design (format.ts)
    const b = ref.slice(); b[i] ^= 0x01 << (i % 8);
    let applied = 0;
    const d = new StreamDecoder({ onHeader() {}, onVcpuState() {}, onEnd() {}, onBatch() { applied++; } });
    let err: unknown;
    try { d.push(b); d.finish(); } catch (e) { err = e; }
    assert.ok(err instanceof Error, `flip at ${i} was accepted`);
    // Only batches wholly before the flip were applied.
    const firstBatch = findRecord(ref, 2), secondBatch = findRecord(ref, 2, 1);
    assert.ok(applied <= (i >= secondBatch + 16 + rd32(ref, secondBatch + 4) ? 2 : i >= secondBatch ? 1 : 0) || i < firstBatch && applied === 0);
  }
});

test('pages hashed in place in an unaligned chunk: a good stream decodes, a flipped payload byte is refused unapplied', () => {
  const shifted = (b: Uint8Array) => { const host = new Uint8Array(b.length + 3); host.set(b, 3); return host.subarray(3); };
  assert.equal(run(shifted(good()), 1 << 20).err, undefined);
  assert.equal(run(shifted(good()), 1 << 20).batches, 2);
  const b = good(); const at = findRecord(b, 2);
  b[at + RECORD_HEADER_BYTES + 8 + 3 * 8 + 4096 + 5] ^= 0x80; // second page of the first batch
  const { err, batches } = run(shifted(b), 1 << 20);
  assert.ok(err instanceof ChecksumMismatchError);
  assert.equal(batches, 0);
});

test('retainedFrom: a chunk wholly before it may be overwritten without changing what any batch delivers', () => {
  // Pages of distinct content, cut into chunks that a reader recycles as soon
  // as retainedFrom allows it, scribbling on each recycled chunk first.
  const spec = { pageCount: 4096, vcpus: 1, batches: [] as { gfn: number; fill: number[] | null }[][], vcpu: [1], digest: [1, 2] as [number, number] };
  for (let r = 0; r < 3; r++) spec.batches.push(Array.from({ length: 700 }, (_, i) => ({ gfn: (i * 5 + r) % 4096, fill: i % 9 === 0 ? null : [r + 1, i + 1, i * 7] })));
  const bytes = encodeSpec(spec);
  const expected = new Map<number, string>();
  const got = new Map<number, string>();
  const dec0 = new StreamDecoder({ onHeader() {}, onVcpuState() {}, onEnd() {}, onBatch(b) {
    for (let i = 0; i < b.count; i++) expected.set(b.gfn[i]!, b.payloadOffset[i]! < 0 ? 'zero' : Buffer.from(b.pageBytes[i]!.subarray(b.payloadOffset[i]!, b.payloadOffset[i]! + 4096)).toString('base64'));
  } });
  dec0.push(bytes.slice());
  const dec = new StreamDecoder({ onHeader() {}, onVcpuState() {}, onEnd() {}, onBatch(b) {
    for (let i = 0; i < b.count; i++) got.set(b.gfn[i]!, b.payloadOffset[i]! < 0 ? 'zero' : Buffer.from(b.pageBytes[i]!.subarray(b.payloadOffset[i]!, b.payloadOffset[i]! + 4096)).toString('base64'));
  } });
  const pool: { buf: Uint8Array; lastEnd: number }[] = [];
  let reused = 0;
  for (let at = 0, k = 0; at < bytes.length; k++) {
    const n = Math.min(bytes.length - at, 10_000 + ((k * 7919) % 60_000));
    const free = dec.retainedFrom;
    let slot = pool.find((s) => s.lastEnd <= free && s.buf.length >= n);
    if (slot) { slot.buf.fill(0xa5); reused++; } else pool.push((slot = { buf: new Uint8Array(70_000), lastEnd: 0 }));
    slot.buf.set(bytes.subarray(at, at + n));
    dec.push(slot.buf.subarray(0, n));
    at += n;
    slot.lastEnd = dec.offset;
    assert.ok(dec.retainedFrom <= dec.offset);
  }
  dec.finish();
  assert.ok(reused > 10, `chunks reused: ${reused}`);
  assert.ok(pool.length < 100, `pool of ${pool.length}`); // about a batch's worth, not the stream
  assert.deepEqual(got, expected);
});
