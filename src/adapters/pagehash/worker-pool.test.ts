/**
 * The page-hash worker: it hashes pages of shared guest memory exactly as
 * this thread does, and the sender's digest split across it is the digest
 * one thread computes — also when the worker is gone (the sender hashes its half).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allocHashable, hashPage } from '../../core/pagehash/page-hash.ts';
import { migrate } from '../../core/migration/sender.ts';
import { FakeGuest } from '../../core/migration/testing/fake-guest.ts';
import { LoopbackTransport } from '../../core/migration/testing/loopback-transport.ts';
import { linkModel } from '../../core/migration/link-model.ts';
import { xenPolicy } from '../../core/migration/policy/xen.ts';
import { WorkerPageHashPool } from './worker-pool.ts';

test('the worker hashes shared pages as this thread does; unpopulated pages get the zero-page hash', async () => {
  const pool = WorkerPageHashPool.start();
  assert.ok(pool, 'shared WebAssembly memory and workers are available on Node 20');
  try {
    const mem = allocHashable(64 * 4096, true);
    for (let i = 0; i < mem.length; i++) mem[i] = (i * 2654435761) >>> 24;
    assert.equal(pool.memoryId(new Uint8Array(4096)), -1, 'a plain buffer cannot be handed over');
    const id = pool.memoryId(mem);
    assert.ok(id >= 0);
    const locs = pool.sharedI32(2 * 65);
    for (let p = 0; p < 64; p++) {
      locs[2 * p] = id;
      locs[2 * p + 1] = p * 4096;
    }
    locs[128] = -1;
    const out = pool.sharedU32(2 + 2 * 65);
    await pool.hash(locs, 65, out, 2);
    const want = new Uint32Array(2);
    for (let p = 0; p < 64; p++) {
      hashPage(mem, p * 4096, want, 0);
      assert.deepEqual([out[2 + 2 * p], out[3 + 2 * p]], [...want], `page ${p}`);
    }
    hashPage(new Uint8Array(4096), 0, want, 0);
    assert.deepEqual([out[130], out[131]], [...want], 'unpopulated');
  } finally {
    await pool.close();
  }
});

test('a digest split with the worker equals the one-thread digest, and survives a dead worker', async () => {
  // A guest that boots zeroed and writes while it migrates: populated and unpopulated pages both.
  const make = () => new FakeGuest({ pageCount: 20_000, fill: 'zero', dirtyRatePagesPerSec: 300_000, seed: 9 });
  const opts = { policy: xenPolicy(), link: linkModel(1024, 1) };
  const alone = await migrate(make(), new LoopbackTransport(), opts);
  const pool = WorkerPageHashPool.start()!;
  const split = await migrate(make(), new LoopbackTransport(), opts, { pageHashPool: pool });
  assert.equal(pool.pagesHashed, 10_000, 'the worker hashed the upper half');
  await pool.close();
  const dead = await migrate(make(), new LoopbackTransport(), opts, { pageHashPool: pool });
  for (const r of [alone, split, dead]) assert.equal(r.verified, true);
  assert.equal(split.source_digest, alone.source_digest);
  assert.equal(dead.source_digest, alone.source_digest);
});
