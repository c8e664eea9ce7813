/**
 * mem_access in shadow mode (BRIEF item 5: "works in HAP and in shadow
 * mode"): the shadow fault path consults the same check, the shadows carry
 * the access rights, and narrowing a gfn's rights removes its stale shadows;
 * the guest walk's page-table reads and A/D writes are checked as the
 * hardware walker's are under HAP.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ACCESS_CRASHED, ACCESS_DONE, ACCESS_PAUSED } from '../domain/vcpu.ts';
import { P2mLookup } from '../p2m/p2m.ts';
import { Access } from '../p2m/p2m-type.ts';
import { Xoshiro128 } from '../rng.ts';
import { createGuest } from '../runner/guest.ts';
import { PAGE_SIZE } from '../units.ts';
import { createSyntheticWorkload } from '../workload/synthetic.ts';
import { runAccessSession } from './access-session.ts';
import { MemAccessLayer } from './mem-access-layer.ts';
import { setMemAccess } from './mem-access-op.ts';
import { monitorEnable, monitorResume, setAccessRequired } from './monitor-domctl.ts';
import { MEM_ACCESS_FAULT_IN_GPT, MEM_ACCESS_FAULT_WITH_GLA, MEM_ACCESS_GLA_VALID, MEM_ACCESS_W, MEM_ACCESS_X, VM_EVENT_FLAG_VCPU_PAUSED } from './vm-event-abi.ts';
import { gvaIndex, pteGfn, pteHi, pteLo, PTE_P, PTE_RW, PTE_US } from '../formats/x86-pte.ts';
import { AccessBatch, AccessKind } from '../workload/access-batch.ts';
import { BackRing } from './vm-event-ring.ts';
import { XenAccess } from './xen-access.ts';

const G = 9;
const GPA = G * PAGE_SIZE + 0x2c8;

/** A shadow-mode guest with guest paging off (gva = gpa), memory populated, mem_access installed, a ring. */
function shadowGuest(pool: 'xen' | 'prealloc', ring = true) {
  const guest = createGuest({ memBytes: 64 * PAGE_SIZE, vcpus: 1, mode: 'shadow', addressing: 'identity', pageSize: '4k', populate: 'up-front', modeOptions: { shadowPool: pool } });
  const layer = MemAccessLayer.install(guest.domain);
  let back: BackRing | null = null;
  if (ring) {
    const en = monitorEnable(layer);
    assert.ok(en.ok);
    en.page.init();
    back = new BackRing(en.page);
  }
  return { dom: guest.domain, layer, back, v: guest.domain.vcpus[0]! };
}

/** The next request on the ring, or null if none was sent. */
function next(back: BackRing): ReturnType<BackRing['consumeRequest']> | null {
  return back.unconsumedRequests() > 0 ? back.consumeRequest() : null;
}

function accessOf(layer: MemAccessLayer, gfn: number): Access {
  const r = new P2mLookup();
  assert.ok(layer.domain.p2m.lookup(gfn, r));
  return r.access;
}

for (const pool of ['xen', 'prealloc'] as const) {
  test(`shadow (${pool} pool): narrowing a mapped page's rights removes its shadow, so the next write raises an event`, () => {
    const { layer, back, v } = shadowGuest(pool);
    assert.equal(v.store(GPA, 4, 1), ACCESS_DONE, 'rwx: the write goes through and a writable shadow exists');
    assert.equal(v.store(GPA, 4, 2), ACCESS_DONE);
    assert.ok(setMemAccess(layer, Access.R, G, 1).ok);
    assert.equal(v.store(GPA, 4, 3), ACCESS_PAUSED, 'the stale writable shadow is gone');
    const req = next(back!)!;
    assert.equal(req.memAccess.gfn, G);
    assert.equal(req.memAccess.offset, 0x2c8);
    assert.equal(req.memAccess.gla, GPA, 'shadow faults know the linear address');
    assert.equal(req.memAccess.flags, MEM_ACCESS_W | MEM_ACCESS_GLA_VALID | MEM_ACCESS_FAULT_WITH_GLA);
    assert.equal(req.flags & VM_EVENT_FLAG_VCPU_PAUSED, VM_EVENT_FLAG_VCPU_PAUSED);
    // The vCPU stays paused until the listener opens the page and answers.
    assert.equal(v.pauseCount, 1);
    assert.ok(setMemAccess(layer, Access.RWX, G, 1).ok);
    back!.produceResponse({ version: req.version, flags: req.flags & VM_EVENT_FLAG_VCPU_PAUSED, reason: req.reason, vcpuId: 0, altp2mIdx: 0, memAccess: { ...req.memAccess } });
    assert.ok(monitorResume(layer).ok);
    assert.equal(v.pauseCount, 0);
    assert.equal(v.store(GPA, 4, 3), ACCESS_DONE);
    assert.equal(next(back!), null, 'no second event');
  });
}

test('shadow: n2rwx sends the event without pausing and opens the page; rx2rw promotes silently', () => {
  const { layer, back, v } = shadowGuest('xen');
  assert.ok(setMemAccess(layer, Access.N2RWX, G, 1).ok);
  assert.equal(v.load(GPA, 4), ACCESS_DONE, 'n2rwx: the access completes');
  assert.equal(accessOf(layer, G), Access.RWX);
  const req = next(back!)!;
  assert.equal(req.flags & VM_EVENT_FLAG_VCPU_PAUSED, 0, 'async');
  assert.equal(v.pauseCount, 0);
  assert.ok(setMemAccess(layer, Access.RX2RW, G + 1, 1).ok);
  assert.equal(v.store((G + 1) * PAGE_SIZE, 4, 7), ACCESS_DONE);
  assert.equal(accessOf(layer, G + 1), Access.RW);
  assert.equal(next(back!), null, 'rx2rw: no event');
});

test('shadow: a violation with access_required and no listener crashes the domain', () => {
  const { dom, layer, v } = shadowGuest('xen', false);
  setAccessRequired(layer, true);
  dom.p2m.setAccess(G, Access.R);
  assert.equal(v.store(GPA, 4, 1), ACCESS_CRASHED);
  assert.ok(dom.crashed);
});

/** The gfn of the guest L1 table that maps gva (guest tables read through the software view). */
function l1TableGfn(mem: { readU32(gpa: number): number }, cr3Gfn: number, gva: number): number {
  let table = cr3Gfn;
  for (let level = 4; level >= 2; level--) {
    const e = table * PAGE_SIZE + gvaIndex(gva, level) * 8;
    table = pteGfn(mem.readU32(e), mem.readU32(e + 4));
  }
  return table;
}

for (const mode of ['shadow', null] as const) {
  test(`${mode ?? 'HAP'}: after rx2rw turns rw on a write, a fetch through another mapping of the page is a violation`, () => {
    const g = createGuest({ memBytes: 4 * 1048576, vcpus: 1, mode, format: 'ept', addressing: 'paged', pageSize: '4k', populate: 'up-front' });
    const v = g.domain.vcpus[0]!;
    const layer = MemAccessLayer.install(g.domain);
    const en = monitorEnable(layer);
    assert.ok(en.ok);
    en.page.init();
    const back = new BackRing(en.page);
    const A = 0x40000000;
    const B = A + PAGE_SIZE;
    assert.equal(v.load(A, 4), ACCESS_DONE);
    const gfn = g.os!.translate(A) / PAGE_SIZE;
    // B aliases A's frame (an entry the shadows have not seen yet, so written directly).
    const e = l1TableGfn(g.domain.memory, g.os!.cr3Gfn, B) * PAGE_SIZE + gvaIndex(B, 1) * 8;
    g.domain.memory.writeU32(e + 4, pteHi(gfn, false));
    g.domain.memory.writeU32(e, pteLo(gfn, PTE_P | PTE_RW | PTE_US));
    assert.ok(setMemAccess(layer, Access.RX2RW, gfn, 1).ok);
    const fetch = (gva: number): number => {
      const b = new AccessBatch(1);
      b.push(AccessKind.Fetch, gva, 1, 1);
      return v.run(b, 0, 1);
    };
    assert.equal(fetch(A), 1);
    assert.equal(fetch(B), 1, 'rx: both mappings may fetch');
    assert.equal(v.store(A, 4, 1), ACCESS_DONE, 'rx2rw: the write promotes silently');
    assert.equal(accessOf(layer, gfn), Access.RW);
    assert.equal(next(back), null);
    fetch(B);
    const req = next(back);
    assert.ok(req !== null && (req.memAccess.flags & MEM_ACCESS_X) !== 0, 'rw forbids the fetch, through any mapping');
  });
}

for (const [label, mode, format] of [['shadow', 'shadow', 'ept'], ['HAP on NPT', null, 'npt'], ['HAP on EPT', null, 'ept']] as const) {
  test(`${label}: access x on a page — a fetch completes where the hardware can map execute-only, else it is a violation`, () => {
    const g = createGuest({ memBytes: 64 * PAGE_SIZE, vcpus: 1, mode, format, addressing: 'identity', pageSize: '4k', populate: 'up-front' });
    const layer = MemAccessLayer.install(g.domain);
    const en = monitorEnable(layer);
    assert.ok(en.ok);
    en.page.init();
    const back = new BackRing(en.page);
    assert.ok(setMemAccess(layer, Access.X, G, 1).ok);
    const b = new AccessBatch(1);
    b.push(AccessKind.Fetch, G * PAGE_SIZE, 1, 1);
    const done = g.domain.vcpus[0]!.run(b, 0, 1);
    assert.equal(g.domain.crashed, false, g.domain.crashReason ?? '');
    if (format === 'ept' && mode === null) assert.equal(done, 1, 'EPT maps execute-only');
    else {
      // x86 PTEs (NPT, shadow) cannot: the page is not present, so the fetch raises an event.
      const req = next(back);
      assert.ok(req !== null && req.memAccess.gfn === G && (req.memAccess.flags & MEM_ACCESS_X) !== 0);
    }
  });
}

test('shadow vs HAP: xen-access "write" raises one event per written data page, and the same pages', async () => {
  const run = async (mode: 'shadow' | null) => {
    const guest = createGuest({ memBytes: 16 * 1024 * 1024, vcpus: 1, mode, format: 'ept', addressing: 'paged', pageSize: '4k', populate: 'up-front' });
    const layer = MemAccessLayer.install(guest.domain);
    const listener = new XenAccess(layer, 'write');
    listener.start();
    const source = createSyntheticWorkload('uniform', { pageCount: 4096, rng: new Xoshiro128(3), count: 4000 });
    await runAccessSession(guest.domain, layer, listener, source);
    return listener.events;
  };
  const shadow = await run('shadow');
  const hap = await run(null);
  const pages = (evs: typeof hap, flag: number) => evs.filter((e) => (e.flags & flag) !== 0).map((e) => e.gfn).sort((a, b) => a - b);
  assert.ok(shadow.length > 1000);
  assert.equal(new Set(shadow.map((e) => e.gfn)).size, shadow.length, 'one event per page');
  for (const e of shadow) {
    assert.equal(e.access, '-w-');
    if ((e.flags & MEM_ACCESS_FAULT_WITH_GLA) !== 0) assert.equal(e.gla & 0xfff, e.offset);
    assert.ok(e.paused);
  }
  assert.deepEqual(pages(shadow, MEM_ACCESS_FAULT_WITH_GLA), pages(hap, MEM_ACCESS_FAULT_WITH_GLA), 'data pages');
  // The walker's A/D writes into guest page tables: hardware under HAP, the shadow code's guest walk here.
  assert.ok(pages(hap, MEM_ACCESS_FAULT_IN_GPT).length > 0);
  assert.deepEqual(pages(shadow, MEM_ACCESS_FAULT_IN_GPT), pages(hap, MEM_ACCESS_FAULT_IN_GPT), 'page-table pages');
});
