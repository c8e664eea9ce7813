/**
 * Structured fuzzers (fast-check) for the two parsers that read untrusted
 * bytes: the migration stream decoder and the lackey trace reader. Each is a
 * property taking a run count, shared by the short run in `npm test`
 * (fuzz.test.ts) and long runs (`npm run fuzz -- --minutes N`).
 *
 * Stream: a valid stream (random pages, zero pages, rounds, vCPU state) is
 * split into its records and damaged at one of three levels —
 *   record: dropped, duplicated, swapped, the stream cut short;
 *   field:  a HEADER / VCPU_STATE / END field or a batch's count/round set
 *           to an edge value, the record's checksum recomputed (so only the
 *           meaning is wrong); batches with gfns beyond the guest, built by
 *           the real encoder so their checksums are right;
 *   byte:   a byte flipped, a record length that lies —
 * and decoded in random chunk sizes. Must hold: the decoder either accepts or
 * throws a StreamError with a code (never another error), and every batch it
 * hands on has every gfn inside the announced guest and every page's bytes
 * matching its hash, recomputed here.
 *
 * Lackey: random bytes, and traces of valid lines mixed with long lines,
 * CRLF, NUL, huge sizes, Valgrind's '==' lines. Must hold: the reader ends or
 * throws TraceParseError/TraceReadError (never another error); for traces
 * made only of valid lines, it yields exactly the records a naive parser
 * written here yields.
 */
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { LackeyReader, TraceParseError, TraceReadError } from '../../src/adapters/lackey-reader.ts';
import { hashPage } from '../../src/core/migration/stream/checksum.ts';
import { StreamDecoder } from '../../src/core/migration/stream/decoder.ts';
import { BatchBuilder, encodeEnd, encodeHeader, encodePreamble, encodeRecord, encodeVcpuState } from '../../src/core/migration/stream/encoder.ts';
import { StreamError } from '../../src/core/migration/stream/errors.ts';
import { REC_PAGE_BATCH, RECORD_HEADER_BYTES } from '../../src/core/migration/stream/format.ts';
import { AccessBatch } from '../../src/core/workload/access-batch.ts';

// ---------------------------------------------------------------- stream

interface PageSpec { readonly gfn: number; readonly fill: number | null }
interface StreamSpec { readonly pageCount: number; readonly batches: readonly (readonly PageSpec[])[]; readonly vcpu: readonly number[] }

const specArb = fc.integer({ min: 1, max: 64 }).chain((pageCount) =>
  fc.record({
    pageCount: fc.constant(pageCount),
    batches: fc.array(fc.array(fc.record({ gfn: fc.integer({ min: 0, max: pageCount - 1 }), fill: fc.option(fc.integer({ min: 1, max: 255 }), { nil: null }) }), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 }),
    vcpu: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 24 }),
  }),
);

/** One builder for every case (it holds a 4 MiB payload buffer); each sealed batch is copied out at once. */
const builder = new BatchBuilder();

/** The records of a stream built by the real encoder (each with a correct checksum). */
function encodeRecords(spec: StreamSpec, gfnOverride?: (g: number) => number): Uint8Array[] {
  const recs: Uint8Array[] = [encodeHeader({ pageCount: spec.pageCount, vcpuCount: 1, policyId: 1, flags: 0 })];
  const b = builder;
  const h = new Uint32Array(2);
  spec.batches.forEach((batch, round) => {
    for (const p of batch) {
      const gfn = gfnOverride ? gfnOverride(p.gfn) : p.gfn;
      if (p.fill === null) {
        b.addZero(gfn);
        continue;
      }
      const off = b.nextPayloadOffset;
      b.payload.fill(p.fill, off, off + 4096);
      b.payload[off] = gfn & 0xff;
      hashPage(b.payload, off, h, 0);
      b.commitPage(gfn, h[0]!, h[1]!);
    }
    const parts = b.seal(round);
    const total = parts.reduce((n, c) => n + c.length, 0);
    const rec = new Uint8Array(total);
    let o = 0;
    for (const c of parts) {
      rec.set(c, o);
      o += c.length;
    }
    recs.push(rec);
  });
  recs.push(encodeVcpuState(1, Uint8Array.from(spec.vcpu)), encodeEnd(0x1234, 0x5678, spec.batches.flat().length));
  return recs;
}

const u32 = (b: Uint8Array, off: number): number => new DataView(b.buffer, b.byteOffset, b.length).getUint32(off, true);

const EDGE_U32 = [0, 1, 2, 7, 8, 1023, 1024, 1025, 4096, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

type Mutation =
  | { kind: 'drop' | 'dup'; i: number }
  | { kind: 'swap'; i: number; j: number }
  | { kind: 'cut'; at: number }
  | { kind: 'field'; i: number; word: number; value: number }
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'lie'; i: number; value: number }
  | { kind: 'wild-gfn'; stride: number }
  | { kind: 'none' };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constantFrom('drop' as const, 'dup' as const), i: fc.nat() }),
  fc.record({ kind: fc.constant('swap' as const), i: fc.nat(), j: fc.nat() }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('field' as const), i: fc.nat(), word: fc.nat({ max: 7 }), value: fc.oneof(fc.constantFrom(...EDGE_U32), fc.nat()) }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('lie' as const), i: fc.nat(), value: fc.oneof(fc.constantFrom(...EDGE_U32), fc.nat()) }),
  fc.record({ kind: fc.constant('wild-gfn' as const), stride: fc.integer({ min: 1, max: 1 << 20 }) }),
  fc.constant({ kind: 'none' as const }),
);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The stream bytes after `m`. */
export function mutateStream(spec: StreamSpec, m: Mutation): Uint8Array {
  let recs = encodeRecords(spec, m.kind === 'wild-gfn' ? (g) => g * m.stride : undefined);
  const n = recs.length;
  switch (m.kind) {
    case 'drop':
      recs = recs.filter((_, k) => k !== m.i % n);
      break;
    case 'dup':
      recs.splice(m.i % n, 0, recs[m.i % n]!);
      break;
    case 'swap': {
      const a = m.i % n, b = m.j % n;
      [recs[a], recs[b]] = [recs[b]!, recs[a]!];
      break;
    }
    case 'field': {
      const k = m.i % n;
      const rec = recs[k]!;
      const type = u32(rec, 0);
      const body = rec.slice(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + u32(rec, 4));
      const words = body.length >>> 2;
      if (words > 0) {
        new DataView(body.buffer).setUint32(4 * (m.word % Math.min(words, 8)), m.value >>> 0, true);
        // A plain record's checksum recomputed; a batch's too when only its count/round changed (no payload hash involved).
        recs[k] = type === REC_PAGE_BATCH ? patchBatchHead(rec, body) : encodeRecord(type, body);
      }
      break;
    }
    case 'lie': {
      const k = m.i % n;
      const rec = recs[k]!.slice();
      new DataView(rec.buffer).setUint32(4, m.value >>> 0, true);
      recs[k] = rec;
      break;
    }
    default:
      break;
  }
  let bytes = concat([encodePreamble(), ...recs]);
  if (m.kind === 'cut') bytes = bytes.subarray(0, m.at % (bytes.length + 1));
  if (m.kind === 'flip') bytes[m.at % bytes.length]! ^= 1 << m.bit;
  return bytes;
}

/** A batch record with its first two body words (count, round) replaced; its checksum is left for the decoder to judge. */
function patchBatchHead(rec: Uint8Array, body: Uint8Array): Uint8Array {
  const out = rec.slice();
  out.set(body.subarray(0, 8), RECORD_HEADER_BYTES);
  return out;
}

export interface DecodeOutcome {
  readonly accepted: boolean;
  readonly code?: string;
  readonly batches: number;
}

/** Decodes in chunks of `chunk` bytes, checking every batch handed on; throws on a broken invariant. */
export function decodeChecked(bytes: Uint8Array, chunk: number): DecodeOutcome {
  let pageCount = -1;
  let batches = 0;
  const h = new Uint32Array(2);
  const d = new StreamDecoder({
    onHeader(hd) {
      pageCount = hd.pageCount;
    },
    onBatch(b) {
      batches++;
      if (pageCount < 0) throw new Error('INVARIANT: a batch before the header');
      for (let i = 0; i < b.count; i++) {
        const gfn = b.gfn[i]!;
        if (!(gfn >= 0 && gfn < pageCount)) throw new Error(`INVARIANT: gfn ${gfn} outside a ${pageCount}-page guest was handed on`);
        const off = b.payloadOffset[i]!;
        if (off < 0) continue;
        hashPage(b.pageBytes[i]!, off, h, 0);
        if (h[0] !== b.hashLo[i] || h[1] !== b.hashHi[i]) throw new Error(`INVARIANT: page ${gfn} handed on with bytes that do not match its hash`);
      }
    },
    onVcpuState() {},
    onEnd() {},
  });
  try {
    for (let i = 0; i < bytes.length; i += chunk) d.push(bytes.subarray(i, i + chunk));
    d.finish();
    return { accepted: true, batches };
  } catch (e) {
    if (e instanceof StreamError && typeof e.code === 'string' && e.code.length > 0) return { accepted: false, code: e.code, batches };
    throw e;
  }
}

export function streamProperty(): fc.IAsyncPropertyWithHooks<[StreamSpec, Mutation, number]> {
  const chunkArb = fc.oneof({ weight: 1, arbitrary: fc.integer({ min: 1, max: 16 }) }, { weight: 4, arbitrary: fc.integer({ min: 17, max: 9000 }) });
  return fc.asyncProperty(specArb, mutationArb, chunkArb, async (spec, m, chunk) => {
    const bytes = mutateStream(spec, m);
    const out = decodeChecked(bytes, chunk);
    if (m.kind === 'none' && !out.accepted) throw new Error(`a valid stream was refused: ${out.code}`);
  });
}

// ---------------------------------------------------------------- lackey

type LackeyLine =
  | { t: 'rec'; kind: 'I' | 'L' | 'S' | 'M'; addr: number; size: number; crlf: boolean }
  | { t: 'valgrind'; text: string }
  | { t: 'blank'; crlf: boolean };

const validLineArb: fc.Arbitrary<LackeyLine> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant('rec' as const), kind: fc.constantFrom('I' as const, 'L' as const, 'S' as const, 'M' as const), addr: fc.nat({ max: 2 ** 40 }), size: fc.integer({ min: 1, max: 255 }), crlf: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('valgrind' as const), text: fc.string({ maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, ' ')) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('blank' as const), crlf: fc.boolean() }) },
);

function renderLine(l: LackeyLine): string {
  switch (l.t) {
    case 'rec': {
      const lead = l.kind === 'I' ? 'I  ' : ` ${l.kind} `;
      return `${lead}${l.addr.toString(16).padStart(8, '0')},${l.size}${l.crlf ? '\r\n' : '\n'}`;
    }
    case 'valgrind': return `==4242== ${l.text}\n`;
    case 'blank': return l.crlf ? '\r\n' : '\n';
  }
}

const KIND_CODE = { I: 0, L: 1, S: 2, M: 3 } as const;

/** Reads all of `bytes` with the reader, in chunks of `chunkBytes`; returns records or the error. */
export async function readLackey(bytes: Uint8Array, chunkBytes: number): Promise<{ records: [number, number, number][]; error?: Error }> {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunkBytes) parts.push(Buffer.from(bytes.subarray(i, i + chunkBytes)));
  const r = new LackeyReader('fuzz', { input: Readable.from(parts), displayName: 'fuzz.trace' });
  const b = new AccessBatch(64);
  const records: [number, number, number][] = [];
  try {
    while (await r.fill(b)) for (let i = 0; i < b.length; i++) records.push([b.kind[i]!, b.addr[i]!, b.size[i]!]);
    return { records };
  } catch (e) {
    return { records, error: e as Error };
  } finally {
    r.close();
  }
}

/** The reader either ends or says what is wrong with a named error. */
function namedOrNone(error: Error | undefined): void {
  if (error === undefined) return;
  if (!(error instanceof TraceParseError || error instanceof TraceReadError)) throw error;
  if (/\n\s+at /.test(error.message)) throw new Error(`a stack trace in the message: ${error.message}`);
}

/** Noise for the robustness property: lines that are nearly valid, or not at all. */
const noiseArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 10, arbitrary: fc.string({ maxLength: 80 }) },
  { weight: 10, arbitrary: fc.constantFrom(' L 0,0\n', ' S ffffffffffffffffff,4\n', ' L 1000,256\n', ' L 1000,99999999999\n', ' X 1000,4\n', ' L 1000\n', ' L ,4\n', '\0\0\0\n', ' L 10\u00000,4\n', '\r\r\n', '=\n', '==\n') },
  // Lines around the reader's 1 MiB line limit (lackey-reader.ts MAX_LINE_BYTES).
  { weight: 1, arbitrary: fc.constantFrom((1 << 20) - 2, (1 << 20) + 2).map((n) => ' L '.padEnd(n, '0')) },
);

export function lackeyValidProperty(): fc.IAsyncPropertyWithHooks<[LackeyLine[], number]> {
  return fc.asyncProperty(fc.array(validLineArb, { maxLength: 200 }), fc.integer({ min: 1, max: 300 }), async (lines, chunk) => {
    const text = lines.map(renderLine).join('');
    const { records, error } = await readLackey(Buffer.from(text, 'latin1'), chunk);
    if (error) throw new Error(`valid trace refused: ${error.message}`);
    const want = lines.filter((l): l is Extract<LackeyLine, { t: 'rec' }> => l.t === 'rec').map((l) => [KIND_CODE[l.kind], l.addr, l.size]);
    if (JSON.stringify(records) !== JSON.stringify(want)) throw new Error(`records differ: got ${JSON.stringify(records.slice(0, 5))}…, want ${JSON.stringify(want.slice(0, 5))}…`);
  });
}

export function lackeyNoiseProperty(): fc.IAsyncPropertyWithHooks<[(LackeyLine | string)[], Uint8Array | null, number]> {
  return fc.asyncProperty(
    fc.array(fc.oneof(validLineArb, noiseArb), { maxLength: 40 }),
    fc.option(fc.uint8Array({ maxLength: 2048 }), { nil: null }),
    fc.integer({ min: 1, max: 5000 }),
    async (parts, raw, chunk) => {
      const bytes = raw ?? Buffer.from(parts.map((p) => (typeof p === 'string' ? p : renderLine(p))).join(''), 'latin1');
      namedOrNone((await readLackey(bytes, chunk)).error);
    },
  );
}
