/** Round trips of the stream codec under random contents and random chunking (fast-check). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BatchBuilder, encodeEnd, encodeHeader, encodePreamble, encodeVcpuState } from './encoder.ts';
import { StreamDecoder, type DecodedBatch } from './decoder.ts';
import { hashPage, isZeroPage } from './checksum.ts';
import { MAX_BATCH_PAGES, type StreamEnd, type StreamHeader } from './format.ts';

interface PageSpec { gfn: number; fill: number[] | null } // null ⇒ zero page
interface Spec { pageCount: number; vcpus: number; batches: PageSpec[][]; vcpu: number[]; digest: [number, number] }

function makePage(fill: number[]): Uint8Array {
  const page = new Uint8Array(4096);
  fill.forEach((v, i) => { page[(i * 97) % 4096] = v; });
  return page;
}

export function encodeSpec(spec: Spec): Uint8Array {
  const chunks: Uint8Array[] = [encodePreamble(), encodeHeader({ pageCount: spec.pageCount, vcpuCount: spec.vcpus, policyId: 1, flags: 0 })];
  const b = new BatchBuilder();
  const h = new Uint32Array(2);
  let records = 0;
  spec.batches.forEach((batch, round) => {
    for (const p of batch) {
      records++;
      if (p.fill === null) { b.addZero(p.gfn); continue; }
      const off = b.nextPayloadOffset;
      b.payload.set(makePage(p.fill), off);
      hashPage(b.payload, off, h, 0);
      b.commitPage(p.gfn, h[0]!, h[1]!);
    }
    chunks.push(...b.seal(round));
  });
  chunks.push(encodeVcpuState(spec.vcpus, Uint8Array.from(spec.vcpu)), encodeEnd(spec.digest[0], spec.digest[1], records));
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.length; }
  return out;
}

interface Decoded { header?: StreamHeader; pages: Map<number, Uint8Array | null>[]; vcpu?: Uint8Array; end?: StreamEnd }

export function decodeAll(bytes: Uint8Array, cuts: number[]): Decoded {
  const out: Decoded = { pages: [] };
  const dec = new StreamDecoder({
    onHeader: (h) => { out.header = h; },
    onBatch: (b: DecodedBatch) => {
      const m = new Map<number, Uint8Array | null>();
      for (let i = 0; i < b.count; i++) {
        const off = b.payloadOffset[i]!;
        m.set(b.gfn[i]!, off < 0 ? null : b.pageBytes[i]!.slice(off, off + 4096));
      }
      out.pages.push(m);
    },
    onVcpuState: (_n, s) => { out.vcpu = s.slice(); },
    onEnd: (e) => { out.end = e; },
  });
  let prev = 0;
  for (const c of [...cuts.filter((c) => c > 0 && c < bytes.length)].sort((a, b) => a - b).concat(bytes.length)) {
    dec.push(bytes.subarray(prev, c));
    prev = c;
  }
  dec.finish();
  return out;
}

const pageArb = (pageCount: number) =>
  fc.record({ gfn: fc.nat(pageCount - 1), fill: fc.option(fc.array(fc.integer({ min: 1, max: 255 }), { minLength: 1, maxLength: 8 }), { nil: null }) });

const specArb = fc.integer({ min: 1, max: 5000 }).chain((pageCount) =>
  fc.record({
    pageCount: fc.constant(pageCount),
    vcpus: fc.integer({ min: 1, max: 8 }),
    batches: fc.array(fc.array(pageArb(pageCount), { minLength: 1, maxLength: 40 }), { maxLength: 5 }),
    vcpu: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 300 }),
    digest: fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => [a >>> 0, b >>> 0] as [number, number]),
  }),
);

test('codec round trip under random chunking', () => {
  fc.assert(
    fc.property(specArb, fc.array(fc.nat(2_000_000), { maxLength: 30 }), (spec, rawCuts) => {
      const bytes = encodeSpec(spec);
      assert.equal(bytes.length % 8, 0, 'every record padded to 8');
      const cuts = rawCuts.map((c) => c % (bytes.length + 1));
      const d = decodeAll(bytes, cuts);
      assert.equal(d.header!.pageCount, spec.pageCount);
      assert.equal(d.header!.vcpuCount, spec.vcpus);
      assert.equal(d.pages.length, spec.batches.length);
      spec.batches.forEach((batch, i) => {
        const got = d.pages[i]!;
        // Last copy wins within a batch too.
        const want = new Map<number, PageSpec>();
        for (const p of batch) want.set(p.gfn, p);
        for (const [gfn, p] of want) {
          const page = got.get(gfn);
          if (p.fill === null) assert.equal(page, null);
          else {
            assert.ok(page instanceof Uint8Array);
            assert.ok(!isZeroPage(page, 0));
            assert.deepEqual(page, makePage(p.fill));
          }
        }
      });
      assert.deepEqual([...d.vcpu!], spec.vcpu);
      assert.deepEqual([d.end!.digestLo, d.end!.digestHi], spec.digest);
      assert.equal(d.end!.pageRecords, spec.batches.reduce((n, b) => n + b.length, 0));
    }),
    { numRuns: 150 },
  );
});

test('a full batch of 1024 pages round-trips one byte at a time', () => {
  const batch: PageSpec[] = [];
  for (let i = 0; i < MAX_BATCH_PAGES; i++) batch.push({ gfn: i, fill: i % 3 === 0 ? null : [i & 255 || 1] });
  const bytes = encodeSpec({ pageCount: 2048, vcpus: 1, batches: [batch], vcpu: [1, 2, 3], digest: [1, 2] });
  const cuts: number[] = [];
  for (let i = 1; i < 20_000; i++) cuts.push(i);
  const d = decodeAll(bytes, cuts);
  assert.equal(d.pages[0]!.size, MAX_BATCH_PAGES);
});
