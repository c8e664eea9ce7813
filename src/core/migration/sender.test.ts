/** The sender under the virtual clock, against an in-process receiver. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { migrate, type MigrationResult } from './sender.ts';
import { FakeGuest } from './testing/fake-guest.ts';
import { LoopbackTransport } from './testing/loopback-transport.ts';
import { linkModel } from './link-model.ts';
import { createPolicy, POLICY_NAMES } from './policy/registry.ts';
import { xenPolicy } from './policy/xen.ts';
import type { MigratableGuest } from './migratable-guest.ts';
import type { StreamTransport, Verdict } from './transport.ts';
import { MigrationFailedError, ReceiverRejectedError, LinkLostError } from './errors.ts';

function samePages(src: MigratableGuest, t: LoopbackTransport): boolean {
  const mem = t.session.memory!;
  const a = new Uint8Array(4096), b = new Uint8Array(4096);
  for (let g = 0; g < src.pageCount; g++) {
    src.readPage(g, a, 0);
    mem.readPage(g, b, 0);
    for (let i = 0; i < 4096; i++) if (a[i] !== b[i]) return false;
  }
  return true;
}

test('model: after migration the destination memory equals the source memory', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 0, max: 50_000 }), fc.nat(), fc.constantFrom(...POLICY_NAMES),
      fc.constantFrom<'random' | 'zero'>('random', 'zero'), fc.double({ min: 0, max: 1, noNaN: true }),
      async (pageCount, rate, seed, policy, fill, same) => {
        const guest = new FakeGuest({ pageCount, fill, dirtyRatePagesPerSec: rate, seed, sameValueFraction: same, workingSetPages: Math.max(1, pageCount >> 1) });
        const t = new LoopbackTransport();
        const r = await migrate(guest, t, { policy: createPolicy(policy), link: linkModel(64, 1) });
        assert.equal(r.verified, true);
        assert.equal(r.source_digest, r.dest_digest);
        assert.ok(guest.paused, 'a migrated guest stays paused at the source');
        assert.equal(guest.logDirtyEnabled, false);
        assert.ok(samePages(guest, t));
        assert.deepEqual(t.session.vcpuState, guest.vcpuState());
      },
    ),
    { numRuns: 40 },
  );
});

test('law: round i+1 dirty ≈ M(1 − e^(−D·Tᵢ/M)) under a uniform writer (within 5%, first three rounds)', async () => {
  const M = 16384, D = 20_000;
  const guest = new FakeGuest({ pageCount: M, dirtyRatePagesPerSec: D, seed: 7 });
  const r = await migrate(guest, new LoopbackTransport(), { policy: xenPolicy(), link: linkModel(128, 1) });
  for (let i = 0; i < 3; i++) {
    const T = r.rounds[i]!.duration_ms / 1000;
    const want = M * (1 - Math.exp((-D * T) / M));
    const got = r.rounds[i + 1]!.dirty;
    assert.ok(Math.abs(got - want) / want < 0.05, `round ${i + 1}: dirty ${got}, law ${want.toFixed(0)}`);
  }
  assert.equal(r.verified, true);
});

test('round duration = bytes/bandwidth + latency under the virtual clock', async () => {
  const guest = new FakeGuest({ pageCount: 1000, seed: 1 });
  const r = await migrate(guest, new LoopbackTransport(), { policy: xenPolicy(), link: linkModel(100, 5) });
  const r0 = r.rounds[0]!;
  assert.equal(r0.pages_sent, 1000);
  assert.ok(Math.abs(r0.duration_ms - (r0.bytes / (100 * 1024 * 1024)) * 1000 - 5) < 1e-6);
});

/** A guest whose CLEANs return scripted counts (each dirtying that many pages with new content). */
class ScriptedGuest extends FakeGuest {
  private i = 0;
  constructor(pageCount: number, private readonly counts: number[]) {
    super({ pageCount, seed: 3 });
  }
  override clean(bitmap: Uint32Array): { dirtyCount: number } {
    const n = this.counts[this.i++] ?? 0;
    for (let g = 0; g < n; g++) this.write(g, 0, (this.i * 1000 + g) | 1);
    return super.clean(bitmap);
  }
}

test('xen policy: dirty counts [N,1000,800,700,600,…] ⇒ 5 live passes then stop-and-copy', async () => {
  const N = 4096;
  const guest = new ScriptedGuest(N, [1000, 800, 700, 600, 500, 400, 300]);
  const r = await migrate(guest, new LoopbackTransport(), { policy: xenPolicy(), link: linkModel(1000) });
  const live = r.rounds.filter((x) => !x.stop_and_copy);
  assert.deepEqual(live.map((x) => x.dirty), [N, 1000, 800, 700, 600]);
  assert.deepEqual(live.map((x) => x.pages_sent), [N, 1000, 800, 700, 600]);
  assert.equal(r.rounds.length, 6);
  assert.equal(r.rounds[5]!.stop_and_copy, true);
  assert.equal(r.rounds[5]!.dirty, 500);
  assert.equal(r.verified, true);
});

test('xen policy: [N,30] ⇒ pass 2 sends 30 live, then stop-and-copy', async () => {
  const guest = new ScriptedGuest(4096, [30, 7]);
  const r = await migrate(guest, new LoopbackTransport(), { policy: xenPolicy(), link: linkModel(1000) });
  assert.deepEqual(r.rounds.map((x) => [x.dirty, x.pages_sent, x.stop_and_copy]), [[4096, 4096, false], [30, 30, false], [7, 7, true]]);
  assert.equal(r.verified, true);
});

test('--skip-unchanged: pages dirtied with unchanged content are skipped by hash, and counted — off by default for xen', async () => {
  const run = (skipUnchanged?: boolean) =>
    migrate(new FakeGuest({ pageCount: 4096, dirtyRatePagesPerSec: 20_000, sameValueFraction: 1, seed: 5 }), new LoopbackTransport(), {
      policy: xenPolicy(), link: linkModel(64), ...(skipUnchanged !== undefined ? { skipUnchanged } : {}),
    });
  const on = await run(true);
  const later = on.rounds.slice(1);
  assert.ok(later.some((x) => x.dirty > 0));
  for (const x of later) {
    assert.equal(x.pages_sent, 0);
    assert.equal(x.skipped_unchanged, x.dirty);
    assert.equal(x.skipped_redirtied, 0);
    assert.equal(x.skipped, x.dirty);
  }
  assert.equal(on.verified, true);
  const off = await run();
  for (const x of off.rounds) {
    assert.equal(x.pages_sent, x.dirty, `round ${x.round}: xen resends every dirty page`);
    assert.equal(x.skipped, 0);
  }
  assert.equal(off.verified, true);
});

test('a freshly booted (zero) guest: ZERO flags under qemu (a few bytes per page), 4 KiB of data per page under xen', async () => {
  const q = await migrate(new FakeGuest({ pageCount: 8192, fill: 'zero', seed: 1 }), new LoopbackTransport(), { policy: createPolicy('qemu'), link: linkModel(64) });
  assert.equal(q.rounds[0]!.zero, 8192);
  assert.ok(q.bytes_sent < 8192 * 9, `bytes ${q.bytes_sent}`);
  assert.equal(q.verified, true);
  const x = await migrate(new FakeGuest({ pageCount: 8192, fill: 'zero', seed: 1 }), new LoopbackTransport(), { policy: xenPolicy(), link: linkModel(64) });
  assert.equal(x.rounds[0]!.zero, 0);
  assert.equal(x.rounds[0]!.pages_sent, 8192);
  assert.ok(x.bytes_sent > 8192 * 4096, `bytes ${x.bytes_sent}`);
  assert.equal(x.verified, true);
});

test('virtual clock: the same seed gives the same result', async () => {
  const run = async (): Promise<MigrationResult> =>
    migrate(new FakeGuest({ pageCount: 4096, dirtyRatePagesPerSec: 30_000, seed: 99 }), new LoopbackTransport(), {
      policy: createPolicy('adaptive'), link: linkModel(32, 2),
    });
  const a = await run(), b = await run();
  assert.deepEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)));
});

test('a lost link: log-dirty off, the guest running and untouched, a typed error; a retry verifies', async () => {
  for (const cut of [0, 5, 100, 70_000, 4_300_000, 9_000_000]) {
    const guest = new FakeGuest({ pageCount: 4096, dirtyRatePagesPerSec: 0, seed: 11 });
    const before = guest.memory.slice();
    await assert.rejects(
      migrate(guest, new LoopbackTransport({}, { cutAfterBytes: cut }), { policy: xenPolicy(), link: linkModel(64) }),
      (e: unknown) => e instanceof MigrationFailedError && e.cause instanceof LinkLostError,
    );
    assert.equal(guest.logDirtyEnabled, false);
    assert.equal(guest.paused, false);
    assert.deepEqual(guest.memory, before);
    const t = new LoopbackTransport();
    const r = await migrate(guest, t, { policy: xenPolicy(), link: linkModel(64) });
    assert.equal(r.verified, true);
  }
});

test('a flipped byte: the receiver refuses the record, the sender reports it; a retry verifies', async () => {
  const guest = new FakeGuest({ pageCount: 2048, dirtyRatePagesPerSec: 1000, seed: 12 });
  const err = await migrate(guest, new LoopbackTransport({}, { flipByteAt: 50_000 }), { policy: xenPolicy(), link: linkModel(64) }).catch((e: unknown) => e);
  assert.ok(err instanceof MigrationFailedError);
  assert.ok(err.cause instanceof ReceiverRejectedError);
  assert.match(err.message, /checksum mismatch/);
  assert.match(err.message, /round 0/);
  assert.equal(guest.paused, false);
  const r = await migrate(guest, new LoopbackTransport(), { policy: xenPolicy(), link: linkModel(64) });
  assert.equal(r.verified, true);
});

test('the receiver digest recomputed from destination memory agrees with the tracked one', async () => {
  for (const digestFromMemory of [true, false]) {
    const guest = new FakeGuest({ pageCount: 3000, dirtyRatePagesPerSec: 10_000, seed: 4, fill: 'zero' });
    for (let g = 0; g < 3000; g += 3) guest.write(g, g & 1023, g + 1);
    const r = await migrate(guest, new LoopbackTransport({ digestFromMemory }), { policy: xenPolicy(), link: linkModel(16) });
    assert.equal(r.verified, true);
  }
});

/** A link that takes bytes off the sender's buffers only at drain/flush/verdict (a slow kernel). */
class LazyTransport implements StreamTransport {
  held: { chunks: Uint8Array[]; onReleased: (() => void) | undefined }[] = [];
  constructor(readonly inner: LoopbackTransport) {}
  write(chunks: readonly Uint8Array[], onReleased?: () => void): boolean {
    this.held.push({ chunks: [...chunks], onReleased });
    return this.held.length < 4;
  }
  private deliver(): void {
    for (const h of this.held) {
      this.inner.write(h.chunks);
      h.onReleased?.();
    }
    this.held = [];
  }
  async drain(): Promise<void> {
    this.deliver();
    return this.inner.drain();
  }
  async flush(): Promise<void> {
    this.deliver();
    return this.inner.flush();
  }
  async verdict(): Promise<Verdict> {
    this.deliver();
    return this.inner.verdict();
  }
  get failure(): Error | undefined {
    return this.inner.failure;
  }
  close(): void {
    this.inner.close();
  }
}

test('zero-copy: a busy guest never runs while the link still holds its pages, and the copy verifies', async () => {
  for (const zeroCopy of [true, false]) {
    const guest = new FakeGuest({ pageCount: 8192, fill: 'random', dirtyRatePagesPerSec: 400_000, seed: 5 });
    const link = new LazyTransport(new LoopbackTransport());
    let runsWhileHeld = 0;
    let runs = 0;
    const run = guest.runGuestFor.bind(guest);
    guest.runGuestFor = (ns: number) => {
      runs++;
      if (link.held.length > 0 && !guest.paused) runsWhileHeld++;
      return run(ns);
    };
    const r = await migrate(guest, link, { policy: xenPolicy(), link: linkModel(256, 1), zeroCopy });
    assert.equal(r.verified, true, `zeroCopy ${zeroCopy}: verified`);
    assert.ok(samePages(guest, link.inner), `zeroCopy ${zeroCopy}: same pages`);
    assert.ok(runs > 10, 'the guest ran during the migration');
    if (zeroCopy) assert.equal(runsWhileHeld, 0, 'zero-copy: no guest run while pages are in flight');
    else assert.ok(runsWhileHeld > 0, 'copies: the guest may run while batches are in flight');
  }
});
