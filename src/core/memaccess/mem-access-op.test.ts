/**
 * XENMEM_access_op and its HVMOP alias: errors as data (EINVAL without HAP
 * or past max gpfn, ENODEV without a ring, ESRCH on an unmapped gfn),
 * default_access via pfn ~0, 4K rewrite keeping the type, preemption every
 * 64 gfns as a continuation carrying progress, set_multi.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Domain } from '../domain/domain.ts';
import type { PagingMode } from '../domain/paging-mode.ts';
import { P2mLookup } from '../p2m/p2m.ts';
import { Access, P2mType } from '../p2m/p2m-type.ts';
import { ORDER_2M, PAGE_SIZE } from '../units.ts';
import { EINVAL, ENODEV, ESRCH } from './errno.ts';
import { MemAccessLayer } from './mem-access-layer.ts';
import {
  ACCESS_PFN_DEFAULT, HVMOP_SET_MEM_ACCESS, MEMOP_CMD_MASK, XENMEM_ACCESS_OP, XENMEM_ACCESS_OP_GET_ACCESS,
  XENMEM_ACCESS_OP_SET_ACCESS, XENMEM_ACCESS_OP_SET_ACCESS_MULTI, accessOp, getMemAccess, hvmopGetMemAccess,
  hvmopSetMemAccess, memAccessMemop, setMemAccess,
} from './mem-access-op.ts';
import { monitorEnable } from './monitor-domctl.ts';

function setup(pages = 1024, opts: { ring?: boolean; populateOrder?: number } = {}) {
  const dom = new Domain({ format: 'ept', memBytes: pages * PAGE_SIZE, vcpus: 1, populate: 'up-front', populateOrder: opts.populateOrder ?? 0 });
  const layer = MemAccessLayer.install(dom);
  if (opts.ring !== false) assert.ok(monitorEnable(layer).ok);
  return { dom, layer };
}

const look = (dom: Domain, gfn: number): P2mLookup => {
  const r = new P2mLookup();
  assert.ok(dom.p2m.lookup(gfn, r));
  return r;
};

test('refusals are data: ENODEV without a ring, EINVAL past max gpfn, ESRCH for get on an unmapped gfn', () => {
  const { layer } = setup(64, { ring: false });
  const r0 = setMemAccess(layer, Access.RX, 0, 1);
  assert.ok(!r0.ok && r0.errno === ENODEV, JSON.stringify(r0));
  assert.ok(monitorEnable(layer).ok);
  const r1 = setMemAccess(layer, Access.RX, 60, 5);
  assert.ok(!r1.ok && r1.errno === EINVAL && /maximum gpfn 63/.test(r1.message));
  assert.ok(setMemAccess(layer, Access.RX, 60, 4).ok, 'pfn + nr − 1 = max gpfn is accepted');
  const r2 = getMemAccess(layer, 100);
  assert.ok(!r2.ok && r2.errno === ESRCH);
  const r3 = setMemAccess(layer, 12 as Access, 0, 1);
  assert.ok(!r3.ok && r3.errno === EINVAL);
});

test('pfn ~0 sets and gets default_access only; existing entries untouched; new frames take it', () => {
  const dom = new Domain({ format: 'ept', memBytes: 64 * PAGE_SIZE, vcpus: 1 });
  const layer = MemAccessLayer.install(dom);
  assert.ok(monitorEnable(layer).ok);
  dom.memory.populate(3);
  assert.ok(setMemAccess(layer, Access.R, ACCESS_PFN_DEFAULT, 0).ok);
  const d = getMemAccess(layer, ACCESS_PFN_DEFAULT);
  assert.ok(d.ok && d.done && d.access === Access.R);
  assert.equal(look(dom, 3).access, Access.RWX);
  dom.memory.populate(4);
  assert.equal(look(dom, 4).access, Access.R);
  // XENMEM_access_default (11) resolves to the default.
  assert.ok(setMemAccess(layer, Access.Default, 3, 1).ok);
  assert.equal(look(dom, 3).access, Access.R);
});

test('set rewrites each gfn at 4K keeping its type (a superpage splits)', () => {
  const { dom, layer } = setup(1024, { populateOrder: ORDER_2M });
  assert.equal(look(dom, 5).order, 9);
  dom.p2m.changeTypeOne(7, P2mType.RamRw, P2mType.RamRo);
  assert.ok(setMemAccess(layer, Access.RX, 5, 3).ok);
  assert.equal(look(dom, 5).order, 0);
  assert.equal(look(dom, 5).access, Access.RX);
  assert.equal(look(dom, 7).type, P2mType.RamRo, 'type kept');
  assert.equal(look(dom, 7).access, Access.RX);
  assert.equal(look(dom, 8).access, Access.RWX, 'outside the range');
});

test('preemption every 64 gfns: a continuation whose cmd carries the progress; accessOp re-issues to completion', () => {
  const { dom, layer } = setup(1024);
  const mao = { op: XENMEM_ACCESS_OP_SET_ACCESS, access: Access.RX, domid: dom.id, nr: 200, pfn: 100 };
  const r1 = memAccessMemop(layer, XENMEM_ACCESS_OP, mao);
  assert.ok(r1.ok && !r1.done);
  assert.equal(r1.cmd, XENMEM_ACCESS_OP | 64);
  assert.equal(r1.cmd & MEMOP_CMD_MASK, XENMEM_ACCESS_OP);
  assert.equal(look(dom, 163).access, Access.RX);
  assert.equal(look(dom, 164).access, Access.RWX, 'stopped after 64 gfns');
  const r2 = memAccessMemop(layer, r1.cmd, mao);
  assert.ok(r2.ok && !r2.done && r2.cmd === (XENMEM_ACCESS_OP | 128));
  // No preemption when the check says no.
  const r3 = memAccessMemop(layer, r2.cmd, mao, { preempt: () => false });
  assert.ok(r3.ok && r3.done);
  assert.equal(look(dom, 299).access, Access.RX);
  assert.equal(look(dom, 300).access, Access.RWX);
  // nr smaller than the progress in cmd ⇒ EINVAL.
  const bad = memAccessMemop(layer, XENMEM_ACCESS_OP | 256, { ...mao, nr: 100 });
  assert.ok(!bad.ok && bad.errno === EINVAL);
  // Run to completion, counting continuations: 200 gfns ⇒ preempted at 64, 128, 192.
  const stats = { hypercalls: 0, continuations: 0, gfnsSet: 0 };
  assert.ok(accessOp(layer, { ...mao, access: Access.N }, { stats }).ok);
  assert.deepEqual(stats, { hypercalls: 4, continuations: 3, gfnsSet: 200 });
  // Exactly 64: the boundary is also the last iteration, no continuation.
  const s64 = { hypercalls: 0, continuations: 0, gfnsSet: 0 };
  assert.ok(accessOp(layer, { ...mao, nr: 64 }, { stats: s64 }).ok);
  assert.equal(s64.continuations, 0);
});

test('set_multi: each pfn its own access; a bad access stops with EINVAL', () => {
  const { dom, layer } = setup(256);
  const r = accessOp(layer, { op: XENMEM_ACCESS_OP_SET_ACCESS_MULTI, access: 0, domid: dom.id, nr: 3, pfn: 0, pfnList: [9, 3, 200], accessList: [Access.R, Access.X, Access.N2RWX] });
  assert.ok(r.ok);
  assert.equal(look(dom, 9).access, Access.R);
  assert.equal(look(dom, 3).access, Access.X);
  assert.equal(look(dom, 200).access, Access.N2RWX);
  const bad = accessOp(layer, { op: XENMEM_ACCESS_OP_SET_ACCESS_MULTI, access: 0, domid: dom.id, nr: 2, pfn: 0, pfnList: [1, 2], accessList: [Access.R, 99] });
  assert.ok(!bad.ok && bad.errno === EINVAL);
  assert.equal(look(dom, 1).access, Access.R, 'entries before the bad one are set');
  const many = Array.from({ length: 130 }, (_, i) => i);
  const stats = { hypercalls: 0, continuations: 0, gfnsSet: 0 };
  assert.ok(accessOp(layer, { op: XENMEM_ACCESS_OP_SET_ACCESS_MULTI, access: 0, domid: dom.id, nr: 130, pfn: 0, pfnList: many, accessList: many.map(() => Access.W) }, { stats }).ok);
  assert.equal(stats.continuations, 2);
  assert.equal(look(dom, 129).access, Access.W);
});

test('HVMOP_set_mem_access / get_mem_access are aliases of XENMEM_access_op: same results, same errors', () => {
  const a = setup(256);
  const b = setup(256);
  const stats = { hypercalls: 0, continuations: 0, gfnsSet: 0 };
  assert.equal(HVMOP_SET_MEM_ACCESS, 12);
  assert.ok(hvmopSetMemAccess(a.layer, { domid: a.dom.id, hvmmemAccess: Access.RX, firstPfn: 10, nr: 100 }, { stats }).ok);
  assert.ok(accessOp(b.layer, { op: XENMEM_ACCESS_OP_SET_ACCESS, access: Access.RX, domid: b.dom.id, nr: 100, pfn: 10 }).ok);
  assert.equal(stats.continuations, 1, 'the alias is preempted like the generic op');
  for (const g of [9, 10, 109, 110]) assert.equal(look(a.dom, g).access, look(b.dom, g).access, `gfn ${g}`);
  const ga = hvmopGetMemAccess(a.layer, { domid: a.dom.id, firstPfn: 50 });
  const gb = accessOp(b.layer, { op: XENMEM_ACCESS_OP_GET_ACCESS, access: 0, domid: b.dom.id, nr: 0, pfn: 50 });
  assert.deepEqual(ga, gb);
  const ea = hvmopSetMemAccess(a.layer, { domid: a.dom.id, hvmmemAccess: Access.RX, firstPfn: 250, nr: 10 });
  const eb = setMemAccess(b.layer, Access.RX, 250, 10);
  assert.deepEqual(ea, eb);
  assert.ok(!ea.ok && ea.errno === EINVAL);
});
