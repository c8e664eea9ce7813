/**
 * mem_access on the real walker: acceptance behaviours 11-16 of the spec
 * (reference/xen-semantics.md §9), each driving guest accesses through the
 * vCPU's MMU, the MemAccessLayer and the vm_event ring bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Domain } from '../domain/domain.ts';
import { ACCESS_CRASHED, ACCESS_DONE, ACCESS_PAUSED } from '../domain/vcpu.ts';
import { MODES } from '../modes/registry.ts';
import type { P2mFormatName } from '../p2m/p2m-format.ts';
import { P2mLookup } from '../p2m/p2m.ts';
import { Access, P2mType } from '../p2m/p2m-type.ts';
import { PAGE_SIZE } from '../units.ts';
import { MemAccessLayer } from './mem-access-layer.ts';
import { ACCESS_PFN_DEFAULT, getMemAccess, setMemAccess } from './mem-access-op.ts';
import { monitorDisable, monitorEnable, monitorResume, setAccessRequired } from './monitor-domctl.ts';
import {
  MEM_ACCESS_GLA_VALID, MEM_ACCESS_R, MEM_ACCESS_W, MEM_ACCESS_X, VM_EVENT_FLAG_VCPU_PAUSED, VM_EVENT_INTERFACE_VERSION,
  VM_EVENT_REASON_MEM_ACCESS, type VmEvent,
} from './vm-event-abi.ts';
import { BackRing } from './vm-event-ring.ts';

const G = 5;
const GPA = G * PAGE_SIZE + 0x123;

function setup(opts: { vcpus?: number; format?: P2mFormatName; ring?: boolean } = {}) {
  const dom = new Domain({ format: opts.format ?? 'ept', memBytes: 64 * PAGE_SIZE, vcpus: opts.vcpus ?? 1, populate: 'up-front' });
  const layer = MemAccessLayer.install(dom);
  let back: BackRing | null = null;
  if (opts.ring !== false) {
    const en = monitorEnable(layer);
    assert.ok(en.ok);
    en.page.init();
    back = new BackRing(en.page);
  }
  return { dom, layer, back, v: dom.vcpus[0]! };
}

function accessOf(dom: Domain, gfn: number): Access {
  const r = new P2mLookup();
  assert.ok(dom.p2m.lookup(gfn, r));
  return r.access;
}

/** What xen-access answers: version, vcpu_id, reason, flags & VCPU_PAUSED, the mem_access body. */
function respond(back: BackRing, req: VmEvent, flags = req.flags & VM_EVENT_FLAG_VCPU_PAUSED, version = VM_EVENT_INTERFACE_VERSION): void {
  back.produceResponse({ version, flags, reason: req.reason, vcpuId: req.vcpuId, altp2mIdx: 0, memAccess: { ...req.memAccess } });
}

function set(layer: MemAccessLayer, a: Access, gfn: number, nr = 1): void {
  const r = setMemAccess(layer, a, gfn, nr);
  assert.ok(r.ok, JSON.stringify(r));
}

test('11: rx page, ring present, guest write ⇒ one sync request (R|W on VMX, offset), vCPU paused until a VCPU_PAUSED response is resumed', () => {
  const { dom, layer, back, v } = setup();
  set(layer, Access.RX, G);
  assert.equal(v.store(GPA, 4, 0xdeadbeef), ACCESS_PAUSED);
  assert.equal(v.pauseCount, 1);
  assert.equal(back!.unconsumedRequests(), 1);
  const req = back!.consumeRequest();
  assert.equal(req.version, VM_EVENT_INTERFACE_VERSION);
  assert.equal(req.reason, VM_EVENT_REASON_MEM_ACCESS);
  assert.ok((req.flags & VM_EVENT_FLAG_VCPU_PAUSED) !== 0);
  assert.equal(req.vcpuId, 0);
  assert.equal(req.memAccess.gfn, G);
  assert.equal(req.memAccess.offset, 0x123);
  assert.equal(req.memAccess.flags & (MEM_ACCESS_R | MEM_ACCESS_W | MEM_ACCESS_X), MEM_ACCESS_R | MEM_ACCESS_W);
  assert.ok((req.memAccess.flags & MEM_ACCESS_GLA_VALID) !== 0);
  assert.equal(req.memAccess.gla, GPA, '1-D: the linear address is the gpa');
  // Still paused with no response; the store did not happen.
  assert.equal(dom.memory.readU32(GPA), 0);
  assert.ok(monitorResume(layer).ok);
  assert.equal(v.pauseCount, 1, 'no response yet');
  // The listener opens the page and answers; resume unpauses; the write re-executes.
  set(layer, Access.RWX, G);
  respond(back!, req);
  assert.ok(monitorResume(layer).ok);
  assert.equal(v.pauseCount, 0);
  assert.equal(layer.vcpuState.pauseCount[0], 0);
  assert.equal(v.store(GPA, 4, 0xdeadbeef), ACCESS_DONE);
  assert.equal(dom.memory.readU32(GPA), 0xdeadbeef);
  assert.equal(back!.unconsumedRequests(), 0, 'exactly one request');
});

test('11 (NPT): a write is reported as a read and a write, without a gla', () => {
  const { layer, back, v } = setup({ format: 'npt' });
  set(layer, Access.RX, G);
  assert.equal(v.store(GPA, 4, 1), ACCESS_PAUSED);
  const req = back!.consumeRequest();
  assert.equal(req.memAccess.flags & 7, MEM_ACCESS_R | MEM_ACCESS_W);
  assert.equal(req.memAccess.flags & MEM_ACCESS_GLA_VALID, 0);
});

test('12: no ring, access_required=0 ⇒ no event, access becomes rwx, the write proceeds', () => {
  const { dom, layer, v } = setup();
  set(layer, Access.RX, G);
  assert.ok(monitorDisable(layer).ok);
  assert.equal(accessOf(dom, G), Access.RX, 'disabling the ring leaves access as set');
  assert.equal(v.store(GPA, 4, 7), ACCESS_DONE);
  assert.equal(v.pauseCount, 0);
  assert.equal(accessOf(dom, G), Access.RWX);
  assert.equal(dom.memory.readU32(GPA), 7);
  assert.equal(layer.stats.openedNoListener, 1);
  assert.equal(dom.crashed, false);
});

test('12: no ring, access_required=1 ⇒ the domain is crashed', () => {
  const { dom, layer, v } = setup();
  set(layer, Access.RX, G);
  assert.ok(setAccessRequired(layer, true).ok);
  assert.ok(monitorDisable(layer).ok);
  assert.equal(v.store(GPA, 4, 7), ACCESS_CRASHED);
  assert.equal(dom.crashed, true);
  assert.match(dom.crashReason, /access_required/);
  assert.equal(dom.memory.readU32(GPA), 0);
});

test('13: rx2rw + write ⇒ no event, access becomes rw', () => {
  const { dom, layer, back, v } = setup();
  set(layer, Access.RX2RW, G);
  assert.equal(v.store(GPA, 4, 9), ACCESS_DONE);
  assert.equal(back!.unconsumedRequests(), 0);
  assert.equal(accessOf(dom, G), Access.RW);
  assert.equal(v.pauseCount, 0);
  assert.equal(dom.memory.readU32(GPA), 9);
});

test('13: n2rwx + read ⇒ access rwx, an event without VCPU_PAUSED, the vCPU keeps running', () => {
  const { dom, layer, back, v } = setup();
  set(layer, Access.N2RWX, G);
  assert.equal(v.load(GPA, 4), ACCESS_DONE);
  assert.equal(v.pauseCount, 0);
  assert.equal(accessOf(dom, G), Access.RWX);
  assert.equal(back!.unconsumedRequests(), 1);
  const req = back!.consumeRequest();
  assert.equal(req.flags & VM_EVENT_FLAG_VCPU_PAUSED, 0);
  assert.equal(req.memAccess.flags & 7, MEM_ACCESS_R);
  // A second read does not fault.
  assert.equal(v.load(GPA, 4), ACCESS_DONE);
  assert.equal(back!.unconsumedRequests(), 0);
});

test('14: a response for a vCPU that is not vm_event-paused is ignored (no unpause); bad version / vcpu_id skipped', () => {
  const { layer, back, dom } = setup({ vcpus: 2 });
  const [v0, v1] = [dom.vcpus[0]!, dom.vcpus[1]!];
  set(layer, Access.RX, G);
  set(layer, Access.N2RWX, 10, 3);
  assert.equal(v0.store(GPA, 4, 1), ACCESS_PAUSED);
  for (let k = 0; k < 3; k++) assert.equal(v1.load((10 + k) * PAGE_SIZE, 4), ACCESS_DONE);
  v1.pause(); // paused for another reason (the toolstack)
  const reqs = [0, 1, 2, 3].map(() => back!.consumeRequest());
  const ved = layer.monitor!;
  // v0's request answered as if for v1: v1 has no vm_event pause ⇒ the whole response is ignored.
  respond(back!, { ...reqs[0]!, vcpuId: 1 });
  respond(back!, { ...reqs[1]!, vcpuId: 0 }, VM_EVENT_FLAG_VCPU_PAUSED, 6);
  respond(back!, { ...reqs[2]!, vcpuId: 9 }, VM_EVENT_FLAG_VCPU_PAUSED);
  respond(back!, reqs[3]!, VM_EVENT_FLAG_VCPU_PAUSED);
  assert.ok(monitorResume(layer).ok);
  assert.equal(ved.stats.responses, 4);
  assert.equal(ved.stats.ignored, 2, 'v1 twice: not vm_event-paused');
  assert.equal(ved.stats.badVersion, 1, 'checked first: v0 is paused but the version is wrong');
  assert.equal(ved.stats.badVcpu, 1);
  assert.equal(ved.stats.unpauses, 0);
  assert.equal(v1.pauseCount, 1);
  assert.equal(v0.pauseCount, 1, 'v0 still waits for its own response');
});

test('15: an async event leaving avail < max_vcpus throttles the vCPU until a response is consumed; a sync event never throttles', () => {
  const { dom, layer, back } = setup({ vcpus: 4 });
  const [v0, v1] = [dom.vcpus[0]!, dom.vcpus[1]!];
  const ved = layer.monitor!;
  set(layer, Access.N2RWX, 10, 5);
  set(layer, Access.RX, 20);
  // Four async events leave avail 7, 6, 5, 4: not below max_vcpus (4), no throttle.
  for (let k = 0; k < 4; k++) assert.equal(v0.load((10 + k) * PAGE_SIZE, 4), ACCESS_DONE);
  assert.equal(v0.pauseCount, 0);
  assert.equal(ved.available(), 4);
  // A sync event leaves avail 3 < 4, but its vCPU is vm_event-paused: never throttled.
  assert.equal(v1.store(20 * PAGE_SIZE, 4, 1), ACCESS_PAUSED);
  assert.equal(ved.available(), 3);
  assert.equal(layer.vcpuState.throttled[1], 0);
  assert.equal(layer.vcpuState.pauseCount[1], 1);
  assert.equal(ved.blocked, 0);
  // The next async event leaves avail 2: throttled; the access re-executes once woken.
  assert.equal(v0.load(14 * PAGE_SIZE, 4), ACCESS_PAUSED);
  assert.equal(v0.pauseCount, 1);
  assert.equal(layer.vcpuState.throttled[0], 1);
  assert.equal(ved.blocked, 1);
  assert.equal(ved.stats.throttles, 1);
  // No response yet: resume changes nothing.
  assert.ok(monitorResume(layer).ok);
  assert.equal(v0.pauseCount, 1);
  // The listener answers the first request (async: flags 0); consuming that response wakes v0.
  respond(back!, back!.consumeRequest());
  assert.ok(monitorResume(layer).ok);
  assert.equal(v0.pauseCount, 0);
  assert.equal(ved.blocked, 0);
  assert.equal(ved.stats.ignored, 1, 'the async response names no vm_event-paused vCPU');
  assert.equal(v0.load(14 * PAGE_SIZE, 4), ACCESS_DONE, 'n2rwx already opened the page');
  assert.equal(v1.pauseCount, 1, 'the sync event still waits for its own response');
});

test('16: explicit rwx, default_access rx, log-dirty on: the logdirty write fault resets access to rx, so the next write raises an event', () => {
  const dom = new Domain({ format: 'ept', memBytes: 64 * PAGE_SIZE, vcpus: 1, populate: 'up-front' });
  const mode = MODES['ept-wp']!.create(dom, {});
  const layer = MemAccessLayer.install(dom);
  assert.equal(dom.pagingMode, layer);
  const en = monitorEnable(layer);
  assert.ok(en.ok);
  en.page.init();
  const back = new BackRing(en.page);
  set(layer, Access.RWX, G);
  assert.ok(setMemAccess(layer, Access.RX, ACCESS_PFN_DEFAULT, 0).ok);
  const got = getMemAccess(layer, G);
  assert.ok(got.ok && got.done && got.access === Access.RWX, 'pfn ~0 leaves existing entries untouched');
  mode.enable();
  const v = dom.vcpus[0]!;
  assert.equal(v.store(GPA, 4, 3), ACCESS_PAUSED);
  // The first fault was log-dirty's: marked dirty, logdirty → rw with access reset to default (rx) …
  const bm = new Uint32Array(2);
  mode.peek(bm);
  assert.equal((bm[0]! >>> G) & 1, 1);
  const r = new P2mLookup();
  dom.p2m.lookup(G, r);
  assert.equal(r.type, P2mType.RamRw);
  assert.equal(r.access, Access.RX);
  // … so the retried write violated rx and raised a mem_access event.
  assert.equal(back.unconsumedRequests(), 1);
  const req = back.consumeRequest();
  assert.equal(req.memAccess.gfn, G);
  assert.ok((req.flags & VM_EVENT_FLAG_VCPU_PAUSED) !== 0);
  set(layer, Access.RWX, G);
  respond(back, req);
  assert.ok(monitorResume(layer).ok);
  assert.equal(v.store(GPA, 4, 3), ACCESS_DONE);
  assert.equal(dom.memory.readU32(GPA), 3);
});

test('sync event: no log-dirty processing this time; async (n2rwx) falls through to log-dirty in the same fault', () => {
  const dom = new Domain({ format: 'ept', memBytes: 64 * PAGE_SIZE, vcpus: 1, populate: 'up-front' });
  const mode = MODES['ept-wp']!.create(dom, {});
  const layer = MemAccessLayer.install(dom);
  const en = monitorEnable(layer);
  assert.ok(en.ok);
  en.page.init();
  mode.enable();
  // Resolve the lazy recalc so the access check sees settled entries.
  const v = dom.vcpus[0]!;
  set(layer, Access.RX, 7);
  set(layer, Access.N2RWX, 8);
  assert.equal(v.store(7 * PAGE_SIZE, 4, 1), ACCESS_PAUSED);
  const bm = new Uint32Array(2);
  mode.peek(bm);
  assert.equal((bm[0]! >>> 7) & 1, 0, 'sync: not marked dirty');
  assert.equal(v.pauseCount, 1);
  v.unpause();
  layer.vcpuState.pauseCount[0] = 0;
  assert.equal(v.store(8 * PAGE_SIZE, 4, 1), ACCESS_DONE);
  mode.peek(bm);
  assert.equal((bm[0]! >>> 8) & 1, 1, 'async: log-dirty marked in the same fault');
});
