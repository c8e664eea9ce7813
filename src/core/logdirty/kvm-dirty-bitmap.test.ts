import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvmDirtyBitmap } from './kvm-dirty-bitmap.ts';
import type { KvmWriteProtector } from './kvm-write-protect.ts';

/** Tracks which pages are write-protected, as an MMU would. */
class FakeProtector implements KvmWriteProtector {
  readonly protectedPages = new Set<number>();
  readonly calls: string[] = [];
  constructor(private readonly npages: number) {}
  protectMasked(slot: number, offset: number, maskLo: number, maskHi: number): void {
    this.calls.push(`mask ${slot} ${offset} ${maskLo.toString(16)} ${maskHi.toString(16)}`);
    for (let i = 0; i < 64; i++) {
      const set = i < 32 ? (maskLo >>> i) & 1 : (maskHi >>> (i - 32)) & 1;
      if (set) this.protectedPages.add(offset + i);
    }
  }
  protectSlot(slot: number): void {
    this.calls.push(`slot ${slot}`);
    for (let i = 0; i < this.npages; i++) this.protectedPages.add(i);
  }
  flushTlbs(slot?: number): void {
    this.calls.push(`flush ${slot}`);
  }
  /** A guest write: faults (and opens the page) only if protected. */
  write(bm: KvmDirtyBitmap, page: number): void {
    if (this.protectedPages.has(page)) {
      this.protectedPages.delete(page);
      bm.markDirty(page);
    }
  }
}

const bitOf = (w: Uint32Array, p: number): number => ((w[p >>> 5] as number) >>> (p & 31)) & 1;

test('classic GET is read-and-reset and re-protects each dirty 64-page word', () => {
  const npages = 200;
  const prot = new FakeProtector(npages);
  const bm = new KvmDirtyBitmap({ slot: 1, baseGfn: 0x1000, npages, manualProtect: false }, prot);
  bm.enableLogging();
  assert.deepEqual(prot.calls, ['slot 1']);
  assert.equal(bm.bitmapBytes, 32); // 200 pages → 4 × 64 bits
  for (const p of [0, 5, 70, 199]) prot.write(bm, p);
  prot.write(bm, 5); // already open: no fault, no mark
  prot.calls.length = 0;
  const out = new Uint32Array(8);
  const r = bm.getDirtyLog(out);
  assert.deepEqual(r, { ok: true, pages: 4 });
  for (const p of [0, 5, 70, 199]) assert.equal(bitOf(out, p), 1);
  assert.deepEqual(prot.calls, ['mask 1 0 21 0', 'mask 1 64 40 0', 'mask 1 192 80 0', 'flush 1']);
  assert.equal(prot.protectedPages.size, npages, 'all re-protected');
  const again = new Uint32Array(8);
  assert.deepEqual(bm.getDirtyLog(again), { ok: true, pages: 0 });
  assert.ok(again.every((w) => w === 0));
});

test('manual-protect GET neither clears nor re-protects; CLEAR does, in 64-page chunks', () => {
  const npages = 256;
  const prot = new FakeProtector(npages);
  const bm = new KvmDirtyBitmap({ slot: 2, baseGfn: 0, npages, manualProtect: true }, prot);
  bm.enableLogging();
  for (const p of [1, 63, 64, 130]) prot.write(bm, p);
  prot.calls.length = 0;
  const out = new Uint8Array(32);
  assert.deepEqual(bm.getDirtyLog(out), { ok: true, pages: 4 });
  assert.deepEqual(bm.getDirtyLog(out), { ok: true, pages: 4 });
  assert.deepEqual(prot.calls, []);

  // Clear pages [64, 192) using the GET result as the mask: clears 64 and 130 only.
  const mask = new Uint32Array(out.buffer, 8, 4);
  const r = bm.clearDirtyLog(64, 128, mask);
  assert.deepEqual(r, { ok: true, pages: 2 });
  assert.deepEqual(prot.calls, ['mask 2 64 1 0', 'mask 2 128 4 0', 'flush 2']);
  assert.equal(bm.isDirty(1), true);
  assert.equal(bm.isDirty(64), false);
  assert.equal(bm.isDirty(130), false);
  // A mask bit over a clean page clears nothing and protects nothing.
  prot.calls.length = 0;
  assert.deepEqual(bm.clearDirtyLog(0, 64, new Uint32Array([1 << 2, 0])), { ok: true, pages: 0 });
  assert.deepEqual(prot.calls, []);
});

test('CLEAR argument checks: 64-aligned first_page, multiple-of-64 length unless it reaches the end', () => {
  const prot = new FakeProtector(100);
  const bm = new KvmDirtyBitmap({ slot: 0, baseGfn: 0, npages: 100, manualProtect: true }, prot);
  const m = new Uint32Array(4);
  assert.equal((bm.clearDirtyLog(0, 64, m) as { errno: string }).errno, 'ENOENT');
  bm.enableLogging();
  assert.equal((bm.clearDirtyLog(32, 32, m) as { errno: string }).errno, 'EINVAL');
  assert.equal((bm.clearDirtyLog(0, 40, m) as { errno: string }).errno, 'EINVAL');
  assert.equal((bm.clearDirtyLog(64, 64, m) as { errno: string }).errno, 'EINVAL');
  assert.equal(bm.clearDirtyLog(64, 36, m).ok, true); // reaches the end of the slot
  assert.equal((bm.clearDirtyLog(0, 100, new Uint32Array(2)) as { errno: string }).errno, 'EFAULT');
  assert.equal((bm.getDirtyLog(new Uint32Array(2)) as { errno: string }).errno, 'EFAULT');
});

test('INITIALLY_SET: all bits set, nothing protected until CLEAR, then lazily per chunk', () => {
  const npages = 130;
  const prot = new FakeProtector(npages);
  const bm = new KvmDirtyBitmap({ slot: 3, baseGfn: 0, npages, manualProtect: true, initiallySet: true }, prot);
  bm.enableLogging();
  assert.equal(prot.protectedPages.size, 0);
  const out = new Uint32Array(bm.bitmapBytes / 4);
  assert.deepEqual(bm.getDirtyLog(out), { ok: true, pages: npages });
  assert.equal(bitOf(out, 129), 1);
  assert.equal(bitOf(out, 130), 0, 'no bits beyond npages');
  // Clear the first chunk only: those 64 pages become protected.
  bm.clearDirtyLog(0, 64, out);
  assert.equal(prot.protectedPages.size, 64);
  prot.write(bm, 3); // faults → dirty again
  prot.write(bm, 100); // not protected yet: no fault, bit still set from the start
  assert.equal(bm.isDirty(3), true);
  assert.equal(bm.isDirty(100), true);
  assert.equal(bm.isDirty(4), false);
  assert.throws(() => new KvmDirtyBitmap({ slot: 4, baseGfn: 0, npages: 8, manualProtect: false, initiallySet: true }, prot), /MANUAL_PROTECT/);
});

test('pages at and above 2^20: marked, returned and re-protected at their own offsets (classic GET and CLEAR)', () => {
  const npages = 2 ** 22 + 100;
  const pages = [3, 2 ** 20, 2 ** 20 + 3, 2 ** 21 + 64 + 5, 2 ** 22 + 99];
  for (const manualProtect of [false, true]) {
    const prot = new FakeProtector(npages);
    const bm = new KvmDirtyBitmap({ slot: 1, baseGfn: 0, npages, manualProtect }, prot);
    bm.enableLogging();
    for (const p of pages) prot.write(bm, p);
    prot.calls.length = 0;
    const out = new Uint32Array(bm.bitmapBytes / 4);
    assert.deepEqual(bm.getDirtyLog(out), { ok: true, pages: pages.length });
    const set: number[] = [];
    for (let w = 0; w < out.length; w++) for (let b = 0; b < 32; b++) if (((out[w]! >>> b) & 1) === 1) set.push(w * 32 + b);
    assert.deepEqual(set, pages, `manualProtect=${manualProtect}: GET returns exactly the written pages`);
    if (manualProtect) {
      // CLEAR from first_page 2^20 to the end: everything but page 3.
      const first = 2 ** 20;
      const mask = out.subarray(first / 32);
      assert.deepEqual(bm.clearDirtyLog(first, npages - first, mask), { ok: true, pages: pages.length - 1 });
      assert.equal(bm.isDirty(3), true);
      for (const p of pages.slice(1)) assert.equal(bm.isDirty(p), false, `page ${p} cleared`);
    }
    const masks = prot.calls.filter((c) => c.startsWith('mask'));
    const want = manualProtect ? pages.slice(1) : pages;
    assert.deepEqual(masks, [...new Set(want.map((p) => p - (p % 64)))].map((o) => {
      const bits = want.filter((p) => p - (p % 64) === o).map((p) => p - o);
      const lo = bits.filter((b) => b < 32).reduce((m, b) => (m | (1 << b)) >>> 0, 0);
      const hi = bits.filter((b) => b >= 32).reduce((m, b) => (m | (1 << (b - 32))) >>> 0, 0);
      return `mask 1 ${o} ${lo.toString(16)} ${hi.toString(16)}`;
    }));
    for (const p of want) assert.ok(prot.protectedPages.has(p), `page ${p} re-protected`);
  }
});
