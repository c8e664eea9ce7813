/**
 * The receiver in this process over loopback TCP, so its destination memory
 * can be compared with the source byte for byte: reads go into reused slabs,
 * and a slab recycled while a batch still pointed into it would apply other
 * bytes than the ones hashed (the digest, taken from the verified page
 * hashes, would not notice).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runReceiver } from './receiver.ts';
import { migrateTo } from './migrate-to.ts';
import { FakeGuest } from '../../core/migration/testing/fake-guest.ts';
import { createPolicy } from '../../core/migration/policy/registry.ts';
import { linkModel } from '../../core/migration/link-model.ts';

test('plain TCP into reused read slabs: destination memory equals the source, page for page', { timeout: 60_000 }, async () => {
  const pages = 8192; // 32 MiB: the read slabs are recycled many times
  const g = new FakeGuest({ pageCount: pages, dirtyRatePagesPerSec: 50_000, seed: 7 });
  let port = 0;
  let rx!: ReturnType<typeof runReceiver>;
  await new Promise<void>((r) => {
    rx = runReceiver({ host: '127.0.0.1', port: 0, once: true }, { onListening: (a) => { port = a.port; r(); } });
  });
  const res = await migrateTo(g, { host: '127.0.0.1', port, policy: createPolicy('xen'), clock: 'real', link: linkModel(Infinity) });
  const out = await rx;
  assert.equal(res.verified, true);
  assert.equal(out.verified, true);
  const a = new Uint8Array(4096), b = new Uint8Array(4096);
  let differ = 0;
  for (let gfn = 0; gfn < pages; gfn++) {
    g.readPage(gfn, a, 0);
    out.memory!.readPage(gfn, b, 0);
    if (Buffer.compare(a, b) !== 0) differ++;
  }
  assert.equal(differ, 0);
});
