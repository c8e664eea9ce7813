/**
 * Background pre-faulting of a standalone receiver's memory: every slab is
 * allocated and touched by the helper, and pages the stream wrote — before
 * the helper reached them or while it ran — keep their bytes (the helper's
 * touch must not overwrite them). Oracle: a Map of the pages written.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { backgroundPrefaulted } from './background-prefault.ts';

const PAGE = 4096;

/** The helper is unref'd (it never holds a receiver open): keep this test's event loop alive while waiting for it. */
async function settled(done: Promise<void>): Promise<void> {
  const keep = setInterval(() => {}, 1000);
  await done;
  clearInterval(keep);
}

function pageOf(gfn: number): Uint8Array {
  const p = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) p[i] = (gfn * 31 + i * 7 + 1) & 0xff || 1;
  return p;
}

describe('backgroundPrefaulted', { timeout: 240_000 }, () => {
  it('allocates every slab, and pages written before and while the helper runs keep their bytes', async () => {
    const pages = 40_000; // three slabs (16,384 pages each), the last partial
    const { memory, done } = backgroundPrefaulted(pages, Number.MAX_SAFE_INTEGER, true);
    const written = new Map<number, Uint8Array>();
    // Written at once, before the helper thread has started: it must leave them as they are.
    for (let gfn = 0; gfn < pages; gfn += 97) {
      const p = pageOf(gfn);
      memory.writePage(gfn, p, 0);
      written.set(gfn, p);
    }
    await settled(done);
    assert.equal(memory.allocatedBytes, pages * PAGE);
    const out = new Uint8Array(PAGE);
    for (let gfn = 0; gfn < pages; gfn++) {
      memory.readPage(gfn, out, 0);
      const want = written.get(gfn) ?? new Uint8Array(PAGE);
      assert.ok(Buffer.from(out).equals(Buffer.from(want)), `page ${gfn}`);
    }
  });

  it('a guest larger than half the free memory stays lazy (slabs on first write); one within it is built', async () => {
    const MiB = 1 << 20;
    const lazy = backgroundPrefaulted(16_384, 100 * MiB, true); // 64 MiB guest, 50 MiB allowed
    await settled(lazy.done);
    assert.equal(lazy.memory.allocatedBytes, 0);
    lazy.memory.writePage(5, pageOf(5), 0);
    assert.equal(lazy.memory.allocatedBytes, 16_384 * PAGE);
    const built = backgroundPrefaulted(16_384, 130 * MiB, true); // 65 MiB allowed
    await settled(built.done);
    assert.equal(built.memory.allocatedBytes, 16_384 * PAGE);
    // No free core: lazy whatever the size.
    const busy = backgroundPrefaulted(16_384, 1 << 40, false);
    await settled(busy.done);
    assert.equal(busy.memory.allocatedBytes, 0);
  });
});
