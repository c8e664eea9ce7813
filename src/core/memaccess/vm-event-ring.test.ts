/**
 * The vm_event ring as bytes: header and entry offsets as Xen lays them out
 * (public/io/ring.h, public/vm_event.h v7), 8 slots of 400 bytes, the codec
 * round trip, index wrap-around, and the two ends seeing each other's writes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ENTRY_DATA, ENTRY_MA_FLAGS, ENTRY_MA_GFN, ENTRY_MA_GLA, ENTRY_MA_OFFSET, MEM_ACCESS_GLA_VALID, MEM_ACCESS_R,
  MEM_ACCESS_W, RING_SIZE, SRING_HEADER_BYTES, VM_EVENT_ENTRY_BYTES, VM_EVENT_FLAG_VCPU_PAUSED,
  VM_EVENT_INTERFACE_VERSION, VM_EVENT_REASON_MEM_ACCESS, type VmEvent, accessString, slotOffset,
} from './vm-event-abi.ts';
import { BackRing, FrontRing, SharedRingPage } from './vm-event-ring.ts';

function req(gfn: number, vcpuId = 0): VmEvent {
  return {
    version: VM_EVENT_INTERFACE_VERSION, flags: VM_EVENT_FLAG_VCPU_PAUSED, reason: VM_EVENT_REASON_MEM_ACCESS, vcpuId, altp2mIdx: 0,
    memAccess: { gfn, offset: 0xabc, gla: 0x7fff_0000_1abc, flags: MEM_ACCESS_R | MEM_ACCESS_W | MEM_ACCESS_GLA_VALID },
  };
}

test('layout: 64-byte header, 400-byte entries, 8 slots in one 4 KiB page', () => {
  assert.equal(SRING_HEADER_BYTES, 64);
  assert.equal(VM_EVENT_ENTRY_BYTES, 400);
  assert.equal(RING_SIZE, 8);
  assert.equal(slotOffset(0), 64);
  assert.equal(slotOffset(1), 464);
  assert.equal(slotOffset(7), 64 + 7 * 400);
  assert.equal(slotOffset(8), 64, 'index 8 wraps to slot 0');
  assert.ok(slotOffset(7) + 400 <= 4096);
  assert.equal(ENTRY_MA_GFN, 24);
  assert.equal(ENTRY_MA_OFFSET, 32);
  assert.equal(ENTRY_MA_GLA, 40);
  assert.equal(ENTRY_MA_FLAGS, 48);
  assert.equal(ENTRY_DATA, 56);
});

test('byte offsets: a request lands where a C listener would read it', () => {
  const page = new SharedRingPage();
  page.init();
  const front = new FrontRing(page);
  front.produce(req(0x123456789, 3));
  front.produce(req(0x42, 1));
  front.pushRequests();
  const v = page.view;
  assert.equal(v.getUint32(0, true), 2, 'req_prod');
  assert.equal(v.getUint32(4, true), 1, 'req_event');
  assert.equal(v.getUint32(8, true), 0, 'rsp_prod');
  assert.equal(v.getUint32(12, true), 1, 'rsp_event');
  const e = 64 + 400; // slot 1
  assert.equal(v.getUint32(64 + 0, true), VM_EVENT_INTERFACE_VERSION);
  assert.equal(v.getUint32(64 + 4, true), VM_EVENT_FLAG_VCPU_PAUSED);
  assert.equal(v.getUint32(64 + 8, true), VM_EVENT_REASON_MEM_ACCESS);
  assert.equal(v.getUint32(64 + 12, true), 3);
  assert.equal(v.getUint32(64 + 24, true), 0x23456789, 'gfn low word');
  assert.equal(v.getUint32(64 + 28, true), 0x1, 'gfn high word');
  assert.equal(v.getUint32(64 + 32, true), 0xabc);
  assert.equal(v.getUint32(64 + 40, true), 0x00001abc, 'gla low');
  assert.equal(v.getUint32(64 + 44, true), 0x7fff, 'gla high');
  assert.equal(v.getUint32(64 + 48, true), MEM_ACCESS_R | MEM_ACCESS_W | MEM_ACCESS_GLA_VALID);
  assert.equal(v.getUint32(e + 24, true), 0x42);
  assert.equal(v.getUint32(e + 12, true), 1);
  for (let k = 56; k < 400; k++) assert.equal(page.bytes[64 + k], 0, 'register data zero');
});

test('codec round trip (fast-check)', () => {
  fc.assert(fc.property(
    fc.record({
      flags: fc.nat(0x7ff), reason: fc.integer({ min: 1, max: 16 }), vcpuId: fc.nat(255), altp2mIdx: fc.nat(0xffff),
      gfn: fc.nat(2 ** 36 - 1), offset: fc.nat(0xfff), gla: fc.nat(2 ** 48 - 1), maFlags: fc.nat(0x3f), slot: fc.nat(1000),
    }),
    (x) => {
      const page = new SharedRingPage();
      const e: VmEvent = {
        version: VM_EVENT_INTERFACE_VERSION, flags: x.flags, reason: VM_EVENT_REASON_MEM_ACCESS, vcpuId: x.vcpuId, altp2mIdx: x.altp2mIdx,
        memAccess: { gfn: x.gfn, offset: x.offset, gla: (x.maFlags & MEM_ACCESS_GLA_VALID) !== 0 ? x.gla : -1, flags: x.maFlags },
      };
      page.write(x.slot, e);
      assert.deepEqual(page.read(x.slot), e);
    },
  ), { numRuns: 200 });
});

test('front and back ends over the same bytes; indices wrap past 2^32', () => {
  const page = new SharedRingPage();
  page.init();
  const front = new FrontRing(page);
  const back = new BackRing(page);
  // Start both ends just below the u32 wrap, as after a very long run.
  const start = 2 ** 32 - 3;
  front.reqProdPvt = start;
  front.rspCons = start;
  back.reqCons = start;
  back.rspProdPvt = start;
  page.reqProd = start;
  page.rspProd = start;
  assert.equal(front.freeRequests(), RING_SIZE);
  for (let k = 0; k < RING_SIZE; k++) front.produce(req(k));
  front.pushRequests();
  assert.equal(front.freeRequests(), 0);
  assert.equal(back.unconsumedRequests(), RING_SIZE);
  for (let k = 0; k < RING_SIZE; k++) {
    const r = back.consumeRequest();
    assert.equal(r.memAccess.gfn, k, 'FIFO across the wrap');
    back.produceResponse({ ...r, flags: r.flags & VM_EVENT_FLAG_VCPU_PAUSED });
  }
  assert.equal(front.freeRequests(), 0, 'slots stay held until Xen consumes the responses');
  assert.equal(front.unconsumedResponses(), RING_SIZE);
  for (let k = 0; k < RING_SIZE; k++) assert.equal(front.consumeResponse().memAccess.gfn, k);
  assert.equal(front.freeRequests(), RING_SIZE);
  assert.equal(page.rspEvent, (start + RING_SIZE + 1) >>> 0);
  assert.equal(page.reqEvent, (start + RING_SIZE + 1) >>> 0);
});

test('accessString is xen-access\'s %c%c%c', () => {
  assert.equal(accessString(MEM_ACCESS_R | MEM_ACCESS_W), 'rw-');
  assert.equal(accessString(4), '--x');
  assert.equal(accessString(0), '---');
});
