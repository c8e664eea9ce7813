/**
 * vm_event reservations, the wait queue, throttling and wake order
 * (xen/common/vm_event.c), on a domain with several vCPUs whose faults go
 * through the MemAccessLayer; plus the monitor domctls' refusals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Domain } from '../domain/domain.ts';
import { ACCESS_DONE, ACCESS_PAUSED } from '../domain/vcpu.ts';
import { Access } from '../p2m/p2m-type.ts';
import { PAGE_SIZE } from '../units.ts';
import { EBUSY, ENODEV, EOPNOTSUPP } from './errno.ts';
import { MemAccessLayer } from './mem-access-layer.ts';
import { setMemAccess } from './mem-access-op.ts';
import { monitorDisable, monitorEnable, monitorResume } from './monitor-domctl.ts';
import { RING_SIZE, VM_EVENT_FLAG_FOREIGN, VM_EVENT_FLAG_VCPU_PAUSED, VM_EVENT_INTERFACE_VERSION } from './vm-event-abi.ts';
import { TRAP_WAITING } from './vm-event-domain.ts';
import { BackRing } from './vm-event-ring.ts';

function setup(vcpus: number) {
  const dom = new Domain({ format: 'ept', memBytes: 64 * PAGE_SIZE, vcpus, populate: 'up-front' });
  const layer = MemAccessLayer.install(dom);
  const en = monitorEnable(layer);
  assert.ok(en.ok);
  en.page.init();
  return { dom, layer, back: new BackRing(en.page), ved: layer.monitor! };
}

/** Answers the next `n` requests as xen-access does (flags & VCPU_PAUSED). */
function answer(back: BackRing, n: number): number[] {
  const vcpus: number[] = [];
  for (let k = 0; k < n; k++) {
    const r = back.consumeRequest();
    vcpus.push(r.vcpuId);
    back.produceResponse({ ...r, version: VM_EVENT_INTERFACE_VERSION, flags: r.flags & VM_EVENT_FLAG_VCPU_PAUSED });
  }
  return vcpus;
}

test('wait queue: a guest vCPU that finds no free slot sleeps (paused) and posts its request when a slot frees, FIFO', () => {
  const { dom, layer, back, ved } = setup(10);
  assert.ok(setMemAccess(layer, Access.RX, 0, 10).ok);
  // Eight sync events fill the ring (sync: never throttled).
  for (let k = 0; k < RING_SIZE; k++) assert.equal(dom.vcpus[k]!.store(k * PAGE_SIZE, 4, 1), ACCESS_PAUSED);
  assert.equal(ved.available(), 0);
  assert.equal(ved.blocked, 0);
  // vCPUs 8 and 9 cannot claim a slot: they wait, paused, with no vm_event pause yet.
  assert.equal(dom.vcpus[8]!.store(8 * PAGE_SIZE, 4, 1), ACCESS_PAUSED);
  assert.equal(dom.vcpus[9]!.store(9 * PAGE_SIZE, 4, 1), ACCESS_PAUSED);
  assert.equal(ved.waitQueue.length, 2);
  assert.equal(ved.stats.waits, 2);
  assert.equal(layer.vcpuState.pauseCount[8], 0);
  assert.equal(dom.vcpus[8]!.pauseCount, 1);
  // Disabling is refused while vCPUs wait.
  const d = monitorDisable(layer);
  assert.ok(!d.ok && d.errno === EBUSY);
  // One answer frees one slot: the first waiter (v8) posts; v9 keeps waiting.
  assert.deepEqual(answer(back, 1), [0]);
  assert.ok(monitorResume(layer).ok);
  assert.equal(dom.vcpus[0]!.pauseCount, 0);
  assert.equal(ved.waitQueue.length, 1);
  assert.equal(layer.vcpuState.pauseCount[8], 1, 'v8 now holds a sync vm_event pause');
  assert.equal(dom.vcpus[8]!.pauseCount, 1, 'wait pause released, event pause taken');
  // Two more answers: v9 posts next; order on the ring is 1..7, 8, 9.
  answer(back, 2);
  assert.ok(monitorResume(layer).ok);
  assert.equal(ved.waitQueue.length, 0);
  const order = answer(back, back.unconsumedRequests());
  assert.deepEqual(order, [3, 4, 5, 6, 7, 8, 9]);
  assert.ok(monitorResume(layer).ok);
  for (const v of dom.vcpus) assert.equal(v.pauseCount, 0, `v${v.id}`);
  assert.equal(ved.stats.requests, 10);
  // The trap result a caller sees when it has to wait.
  assert.equal(TRAP_WAITING, 1);
});

test('throttling and wake order: a slot release wakes blocked vCPUs round-robin from last_vcpu_wake_up + 1, at most avail', () => {
  const { dom, layer, back, ved } = setup(8);
  const log: number[] = [];
  for (const v of dom.vcpus) {
    const orig = v.unpause.bind(v);
    v.unpause = () => {
      log.push(v.id);
      orig();
    };
  }
  assert.ok(setMemAccess(layer, Access.N2RWX, 0, 8).ok);
  // Every async put leaves avail < 8 = max_vcpus, so each vCPU is throttled after its event;
  // the next put's slot release (wake before the throttle check) wakes the previous one while avail > 0.
  for (let k = 0; k < 8; k++) assert.equal(dom.vcpus[k]!.load(k * PAGE_SIZE, 4), ACCESS_PAUSED);
  assert.deepEqual(log, [0, 1, 2, 3, 4, 5]);
  assert.equal(ved.stats.throttles, 8);
  // v7's release found avail 0: v6 and v7 stay blocked.
  assert.equal(ved.blocked, 2);
  assert.equal(ved.available(), 0);
  assert.equal(ved.lastVcpuWakeUp, 5);
  assert.deepEqual([...layer.vcpuState.throttled], [0, 0, 0, 0, 0, 0, 1, 1]);
  // Pretend the last wake was v6: the scan starts at v7, so v7 goes before v6.
  ved.lastVcpuWakeUp = 6;
  log.length = 0;
  answer(back, 1);
  assert.ok(monitorResume(layer).ok);
  assert.deepEqual(log, [7], 'one consumed response, one free slot: one vCPU');
  answer(back, 7);
  assert.ok(monitorResume(layer).ok);
  assert.deepEqual(log, [7, 6]);
  assert.equal(ved.blocked, 0);
  assert.equal(ved.stats.throttleWakes, 8);
  for (let k = 0; k < 8; k++) assert.equal(dom.vcpus[k]!.load(k * PAGE_SIZE, 4), ACCESS_DONE);
});

test('disable unpauses throttled vCPUs only: a sync-paused vCPU stays paused', () => {
  const { dom, layer, ved } = setup(4);
  assert.ok(setMemAccess(layer, Access.N2RWX, 0, 5).ok);
  assert.ok(setMemAccess(layer, Access.RX, 10, 1).ok);
  const [v0, v1] = [dom.vcpus[0]!, dom.vcpus[1]!];
  assert.equal(v1.store(10 * PAGE_SIZE, 4, 1), ACCESS_PAUSED);
  for (let k = 0; k < 4; k++) v0.load(k * PAGE_SIZE, 4);
  assert.equal(ved.blocked, 1);
  assert.equal(v0.pauseCount, 1);
  assert.ok(monitorDisable(layer).ok);
  assert.equal(layer.monitor, null);
  assert.equal(v0.pauseCount, 0, 'throttled vCPU released');
  assert.equal(v1.pauseCount, 1, 'sync-paused vCPU stays paused, as Xen reads');
  assert.equal(dom.pauseCount, 0);
});

test('foreign producers: a reservation from another domain is counted apart, refused with -EBUSY when full, flagged FOREIGN', () => {
  const { back, ved } = setup(1);
  for (let k = 0; k < RING_SIZE; k++) {
    assert.equal(ved.grabSlot(true), 0);
    assert.equal(ved.foreignProducers, 1);
    ved.put({ version: 0, flags: VM_EVENT_FLAG_VCPU_PAUSED, reason: 1, vcpuId: 0, altp2mIdx: 0, memAccess: { gfn: k, offset: 0, gla: -1, flags: 0 } }, null);
    assert.equal(ved.foreignProducers, 0);
  }
  assert.equal(ved.grabSlot(true), EBUSY);
  const r = back.consumeRequest();
  assert.ok((r.flags & VM_EVENT_FLAG_FOREIGN) !== 0);
  assert.equal(r.version, VM_EVENT_INTERFACE_VERSION);
  // A held reservation lowers avail for everyone.
  back.produceResponse({ ...r });
  ved.resume();
  assert.equal(ved.available(), 1);
  assert.equal(ved.grabSlot(false), 0);
  assert.equal(ved.available(), 0);
  ved.cancelSlot(false);
  assert.equal(ved.available(), 1);
});

test('monitor domctls: enable twice ⇒ -EBUSY; no ring pfn ⇒ -EOPNOTSUPP; resume without a ring ⇒ -ENODEV', () => {
  const dom = new Domain({ format: 'ept', memBytes: 16 * PAGE_SIZE, vcpus: 1, populate: 'up-front' });
  const layer = MemAccessLayer.install(dom);
  const r0 = monitorResume(layer);
  assert.ok(!r0.ok && r0.errno === ENODEV);
  layer.monitorRingPfn = 0;
  const e0 = monitorEnable(layer);
  assert.ok(!e0.ok && e0.errno === EOPNOTSUPP);
  layer.monitorRingPfn = 16;
  assert.ok(monitorEnable(layer).ok);
  const e2 = monitorEnable(layer);
  assert.ok(!e2.ok && e2.errno === EBUSY);
  assert.ok(monitorDisable(layer).ok);
  assert.ok(monitorEnable(layer).ok, 'a new listener may attach after disable');
});
