import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  KVM_DIRTY_GFN_F_DIRTY,
  KVM_DIRTY_GFN_F_RESET,
  KVM_DIRTY_RING_RSVD_ENTRIES,
  KVM_PML_DIRTY_LOG_SIZE,
  KvmDirtyRing,
  RingPush,
  resetDirtyRings,
} from './kvm-dirty-ring.ts';
import type { KvmWriteProtector } from './kvm-write-protect.ts';
import { ExitReason, EXIT_REASON_NAMES } from '../vm-exit.ts';

class RecordingProtector implements KvmWriteProtector {
  readonly calls: [number, number, number, number][] = [];
  flushes = 0;
  protectMasked(slot: number, offset: number, maskLo: number, maskHi: number): void {
    this.calls.push([slot, offset, maskLo, maskHi]);
  }
  protectSlot(): void {
    throw new Error('rings never protect a whole slot');
  }
  flushTlbs(): void {
    this.flushes++;
  }
  /** Pages named by the calls, as "slot:page". */
  pages(): string[] {
    const out: string[] = [];
    for (const [slot, off, lo, hi] of this.calls) {
      for (let i = 0; i < 64; i++) {
        if ((i < 32 ? (lo >>> i) & 1 : (hi >>> (i - 32)) & 1) === 1) out.push(`${slot}:${off + i}`);
      }
    }
    return out.sort();
  }
}

test('soft-full at size − reserved entries ⇒ the vCPU exits with dirty_ring_full', () => {
  const prot = new RecordingProtector();
  const ring = new KvmDirtyRing({ sizeEntries: 256 }, prot);
  assert.equal(ring.reservedEntries, KVM_DIRTY_RING_RSVD_ENTRIES);
  assert.equal(ring.softLimit, 256 - 64);
  for (let i = 0; i < ring.softLimit - 1; i++) assert.equal(ring.push(0, i), RingPush.Ok);
  assert.equal(ring.checkRequest(), false);
  assert.equal(ring.push(0, 9999), RingPush.SoftFull);
  assert.equal(ring.checkRequest(), true, `exit ${EXIT_REASON_NAMES[ExitReason.DirtyRingFull]}`);
  assert.equal(ring.checkRequest(), true, 'stays pending until reset');
  // Pushes still land in the reserve (e.g. a PML flush on the way out)...
  for (let i = 0; i < 64; i++) assert.equal(ring.push(0, 20000 + i), RingPush.SoftFull);
  // ...but never beyond the ring.
  assert.equal(ring.push(0, 1), RingPush.Full);
  assert.equal(ring.droppedPushes, 1);
  assert.equal(ring.harvest(() => {}), 256);
  assert.equal(ring.reset(), 256);
  assert.equal(ring.used, 0);
  assert.equal(ring.checkRequest(), false, 'request cleared on next entry');
});

test('reserved entries include the PML buffer with PML; size limits are checked', () => {
  const prot = new RecordingProtector();
  const ring = new KvmDirtyRing({ sizeEntries: 1024, cpuDirtyLogSize: KVM_PML_DIRTY_LOG_SIZE }, prot);
  assert.equal(ring.softLimit, 1024 - 64 - 512);
  assert.throws(() => new KvmDirtyRing({ sizeEntries: 300 }, prot), /power of two/);
  assert.throws(() => new KvmDirtyRing({ sizeEntries: 128 }, prot), /must be in/);
  assert.throws(() => new KvmDirtyRing({ sizeEntries: 512, cpuDirtyLogSize: 512 }, prot), /576 are reserved/);
  assert.throws(() => new KvmDirtyRing({ sizeEntries: 131072 }, prot), /must be in/);
});

test('harvest collects DIRTY entries once and marks them RESET; reset re-protects and frees them', () => {
  const prot = new RecordingProtector();
  const ring = new KvmDirtyRing({ sizeEntries: 256 }, prot);
  const big = 2 ** 40 + 7;
  ring.push(1, 10);
  ring.push(1, 12);
  ring.push(2, big);
  const got: string[] = [];
  assert.equal(ring.harvest((s, o) => got.push(`${s}:${o}`)), 3);
  assert.deepEqual(got, ['1:10', '1:12', `2:${big}`]);
  assert.equal(ring.entries[0], KVM_DIRTY_GFN_F_RESET);
  assert.equal(ring.harvest(() => assert.fail('harvested twice')), 0);
  // A push after the harvest is DIRTY, not RESET: the next reset must leave it.
  ring.push(1, 11);
  assert.equal(ring.entries[3 * 4], KVM_DIRTY_GFN_F_DIRTY);
  assert.equal(resetDirtyRings([ring], prot), 3);
  assert.equal(prot.flushes, 1);
  assert.deepEqual(prot.pages(), ['1:10', '1:12', `2:${big}`].sort());
  assert.equal(ring.used, 1);
  assert.equal(resetDirtyRings([ring], prot), 0, 'the unharvested entry stays');
  assert.equal(prot.flushes, 1, 'no flush when nothing was reset');
});

test('reset coalesces same-slot entries within 64 pages, forwards and backwards', () => {
  const prot = new RecordingProtector();
  const ring = new KvmDirtyRing({ sizeEntries: 256 }, prot);
  const offsets = [100, 101, 163, 90, 40, 39, 200, 1000];
  for (const o of offsets) ring.push(5, o);
  ring.push(6, 101);
  ring.harvest(() => {});
  ring.reset();
  assert.deepEqual(prot.pages(), [...offsets.map((o) => `5:${o}`), '6:101'].sort());
  // 100,101,163 → one mask at 100; 90 is 10 back but 163 − 90 ≥ 64 → new batch at 90;
  // 40 (50 back) and 39 (1 back) fold into it → batch at 39; 200, 1000 and slot 6 stand alone.
  assert.deepEqual(
    prot.calls.map(([s, o]) => `${s}:${o}`),
    ['5:100', '5:39', '5:200', '5:1000', '6:101'],
  );
  // Wrapping free-running indices keep working.
  const ring2 = new KvmDirtyRing({ sizeEntries: 256 }, prot);
  ring2.dirtyIndex = ring2.resetIndex = ring2.fetchIndex = 0xffffff00;
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 150; i++) ring2.push(0, i);
    assert.equal(ring2.harvest(() => {}), 150);
    assert.equal(ring2.reset(), 150);
    assert.equal(ring2.used, 0);
  }
});

test('reset: delta = 64 starts a new mask (bit 63 is the last a mask holds), forwards and backwards', () => {
  for (const base of [1000, 2 ** 20 + 3, 2 ** 32 + 100]) {
    const prot = new RecordingProtector();
    const ring = new KvmDirtyRing({ sizeEntries: 256 }, prot);
    // base, +63 (delta 63: bit 63 of base's mask), +64 (delta 64 from base: a new mask).
    for (const o of [base, base + 63, base + 64]) ring.push(7, o);
    // Backwards: +200, then +136 (delta −64: bit 0 would move to bit 64, so a new mask).
    for (const o of [base + 200, base + 136]) ring.push(7, o);
    // Backwards within reach: +362, then +300 (delta −62: the mask shifts up, 362 becomes bit 62): one mask at +300.
    for (const o of [base + 362, base + 300]) ring.push(7, o);
    ring.harvest(() => {});
    assert.equal(ring.reset(), 7);
    assert.deepEqual(prot.calls, [
      [7, base, 1, 2 ** 31],
      [7, base + 64, 1, 0],
      [7, base + 200, 1, 0],
      [7, base + 136, 1, 0],
      [7, base + 300, 1, 2 ** 30],
    ], `base ${base}`);
    assert.deepEqual(prot.pages(), [0, 63, 64, 200, 136, 362, 300].map((d) => `7:${base + d}`).sort());
  }
});

test('gfns at and above 2^20 and 2^32: pushed, harvested and re-protected at their own offsets', () => {
  const prot = new RecordingProtector();
  const ring = new KvmDirtyRing({ sizeEntries: 256 }, prot);
  const offsets = [5, 2 ** 20, 2 ** 20 + 5, 2 ** 21 + 64, 2 ** 31 + 1, 2 ** 32 + 5, 2 ** 33 + 7];
  for (const o of offsets) ring.push(3, o);
  const got: number[] = [];
  ring.harvest((_s, o) => got.push(o));
  assert.deepEqual(got, offsets);
  ring.reset();
  // 2^20 and 2^20 + 5 share a mask; every other offset is alone (more than 64 pages apart).
  assert.deepEqual(prot.calls.map(([, o, lo, hi]) => [o, lo, hi]), [
    [5, 1, 0], [2 ** 20, 1 | (1 << 5), 0], [2 ** 21 + 64, 1, 0], [2 ** 31 + 1, 1, 0], [2 ** 32 + 5, 1, 0], [2 ** 33 + 7, 1, 0],
  ]);
  assert.deepEqual(prot.pages(), offsets.map((o) => `3:${o}`).sort());
});
