/**
 * The xen-access listener driving a guest through runAccessSession: with the
 * write listener every first write to each page of 0..max_gpfn−1 raises
 * exactly one event, in the order the guest made them, none lost or
 * reordered, with 1 and 4 vCPUs (property test); the exec listener; shutdown.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Domain } from '../domain/domain.ts';
import { P2mLookup } from '../p2m/p2m.ts';
import { Access } from '../p2m/p2m-type.ts';
import { PAGE_SIZE } from '../units.ts';
import { AccessKind, type AccessBatch, type AccessSource } from '../workload/access-batch.ts';
import { runAccessSession } from './access-session.ts';
import { MemAccessLayer } from './mem-access-layer.ts';
import { XenAccess } from './xen-access.ts';

interface Rec { kind: AccessKind; gfn: number; off: number }

/** An in-memory source handing records out in batches of `chunk`. */
function arraySource(recs: readonly Rec[], chunk = 7): AccessSource {
  let i = 0;
  return {
    name: 'test',
    fill(batch: AccessBatch): boolean {
      batch.clear();
      while (i < recs.length && batch.length < chunk) {
        const r = recs[i]!;
        batch.push(r.kind, r.gfn * PAGE_SIZE + r.off, 4, i);
        i++;
      }
      return batch.length > 0;
    },
  };
}

const PAGES = 24;
const QUANTUM = 5;

function guest(vcpus: number) {
  const dom = new Domain({ format: 'ept', memBytes: PAGES * PAGE_SIZE, vcpus, populate: 'up-front', quantumRecords: QUANTUM });
  const layer = MemAccessLayer.install(dom);
  return { dom, layer };
}

for (const vcpus of [1, 4]) {
  test(`write listener, ${vcpus} vCPU(s): one event per first write to each page of the range, in guest order, none lost`, async () => {
    const rec = fc.record({ kind: fc.constantFrom(AccessKind.Store, AccessKind.Load, AccessKind.Modify, AccessKind.Store), gfn: fc.nat(PAGES - 1), off: fc.nat(0xffc) });
    await fc.assert(fc.asyncProperty(fc.array(rec, { minLength: 1, maxLength: 120 }), async (recs) => {
      const { dom, layer } = guest(vcpus);
      const xa = new XenAccess(layer, 'write');
      const res = await runAccessSession(dom, layer, xa, arraySource(recs));
      assert.equal(res.records, recs.length);
      assert.equal(xa.maxGpfn, PAGES - 1);
      // Expected: the first write (store or modify) to each gfn < max_gpfn, in stream order;
      // the stream is handed to the vCPUs in turns of QUANTUM records, whatever the pauses.
      const seen = new Set<number>();
      const want: { vcpu: number; gfn: number; offset: number }[] = [];
      recs.forEach((r, i) => {
        if (r.kind === AccessKind.Load || r.gfn >= xa.maxGpfn || seen.has(r.gfn)) return;
        seen.add(r.gfn);
        want.push({ vcpu: Math.floor(i / QUANTUM) % vcpus, gfn: r.gfn, offset: r.off });
      });
      assert.deepEqual(xa.events.map((e) => ({ vcpu: e.vcpu, gfn: e.gfn, offset: e.offset })), want);
      for (const e of xa.events) {
        assert.equal(e.access, 'rw-');
        assert.equal(e.paused, true);
      }
      assert.deepEqual(xa.events.map((e) => e.seq), want.map((_, i) => i), 'ring order = raise order');
      // Nothing is left paused, and the listener detached cleanly.
      for (const v of dom.vcpus) assert.equal(v.pauseCount, 0);
      assert.equal(layer.monitor, null, 'shutdown disabled the monitor');
      assert.equal(dom.crashed, false);
    }), { numRuns: 60 });
  });
}

test('exec listener: fetches raise --x events once per page; loads and stores never do', async () => {
  const { dom, layer } = guest(2);
  const xa = new XenAccess(layer, 'exec');
  const recs: Rec[] = [
    { kind: AccessKind.Store, gfn: 1, off: 0 }, { kind: AccessKind.Fetch, gfn: 2, off: 0x10 }, { kind: AccessKind.Load, gfn: 2, off: 0 },
    { kind: AccessKind.Fetch, gfn: 2, off: 0x20 }, { kind: AccessKind.Fetch, gfn: 3, off: 0x30 }, { kind: AccessKind.Fetch, gfn: PAGES - 1, off: 0 },
  ];
  await runAccessSession(dom, layer, xa, arraySource(recs));
  assert.deepEqual(xa.events.map((e) => [e.gfn, e.offset, e.access]), [[2, 0x10, '--x'], [3, 0x30, '--x']]);
});

test('start restricts 0..max_gpfn−1 (gfn max_gpfn itself is not), shutdown opens everything again', async () => {
  const { dom, layer } = guest(1);
  const xa = new XenAccess(layer, 'write');
  xa.start();
  const r = new P2mLookup();
  dom.p2m.lookup(0, r);
  assert.equal(r.access, Access.RX);
  dom.p2m.lookup(PAGES - 2, r);
  assert.equal(r.access, Access.RX);
  dom.p2m.lookup(PAGES - 1, r);
  assert.equal(r.access, Access.RWX, 'xen-access off-by-one: nr = max_gpfn');
  assert.equal(dom.p2m.defaultAccess, Access.RX);
  xa.shutdown();
  dom.p2m.lookup(0, r);
  assert.equal(r.access, Access.RWX);
  assert.equal(dom.p2m.defaultAccess, Access.RWX);
  assert.equal(layer.monitor, null);
});

test('listener required (-m): with no listener after shutdown, nothing is restricted any more, so nothing crashes', async () => {
  const { dom, layer } = guest(1);
  const xa = new XenAccess(layer, 'write', { required: true });
  await runAccessSession(dom, layer, xa, arraySource([{ kind: AccessKind.Store, gfn: 0, off: 0 }]));
  assert.equal(layer.accessRequired, true);
  assert.equal(xa.events.length, 1);
  assert.equal(dom.vcpus[0]!.store(3 * PAGE_SIZE, 4, 1), 0);
  assert.equal(dom.crashed, false);
});
