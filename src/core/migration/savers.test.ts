/**
 * Each saver sends what its real counterpart sends (saver.ts), under the
 * virtual clock, against an in-process receiver. Expectations come from the
 * sources' rules written out here (page counts, byte sizes, the uniform law),
 * never from the sender's own arithmetic.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { migrate, type MigrationResult } from './sender.ts';
import { FakeGuest } from './testing/fake-guest.ts';
import { LoopbackTransport } from './testing/loopback-transport.ts';
import { linkModel } from './link-model.ts';
import { createPolicy } from './policy/registry.ts';
import { BUFFER_DELAY_MS } from './qemu-thread.ts';

const PAGE = 4096;
const MiB = 1024 * 1024;
/** Wire bytes of a batch record: 16-byte record header + 8-byte prefix, 8 bytes per descriptor, 4096 per page with data. */
const batchBytes = (descriptors: number, withData: number): number => 16 + 8 + 8 * descriptors + PAGE * withData;

/** A guest that writes the listed pages (new content) the first time it runs after the k-th flush of the link. */
class WritesAfterBatch extends FakeGuest {
  private runs = 0;
  constructor(pageCount: number, private readonly plan: ReadonlyMap<number, readonly number[]>) {
    super({ pageCount, seed: 9 });
  }
  override runGuestFor(ns: number): void {
    if (this.paused || ns <= 0) return;
    this.runs++;
    for (const gfn of this.plan.get(this.runs) ?? []) this.write(gfn, 7, (0x5150 + this.runs) | 1);
  }
}

test('xen: every round sends exactly the pages the CLEAN returned, each with its data (no zero or unchanged skip); the final CLEAN is FINAL', async () => {
  // Half the guest never written (zero), a uniform writer over the other half.
  const M = 8192;
  const guest = new FakeGuest({ pageCount: M, fill: 'zero', dirtyRatePagesPerSec: 30_000, workingSetPages: M / 2, seed: 3 });
  for (let g = 0; g < M / 2; g++) guest.write(g, 0, g + 1);
  const r = await migrate(guest, new LoopbackTransport(), { policy: createPolicy('xen'), link: linkModel(100, 1) });
  assert.equal(r.verified, true);
  assert.deepEqual(r.rounds.map((x) => x.round), r.rounds.map((_, i) => i), 'rounds numbered contiguously');
  for (const x of r.rounds) {
    assert.equal(x.pages_sent, x.dirty, `round ${x.round}: pages sent = dirty`);
    assert.equal(x.zero, 0, `round ${x.round}: no ZERO flags`);
    assert.equal(x.skipped, 0);
    const batches = Math.ceil(x.pages_sent / 1024);
    assert.equal(x.bytes, batches * batchBytes(0, 0) + x.pages_sent * (8 + PAGE), `round ${x.round}: every page with its 4 KiB`);
  }
  assert.equal(r.rounds[0]!.pages_sent, M, 'round 0 sends the never-written half too, with data');
  assert.equal(r.peeks, 0);
  assert.equal(guest.counters.finalCleans, 1, 'suspend_and_send_dirty CLEANs with XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL');
  assert.equal(r.bitmap_syncs, guest.counters.cleans);
  assert.equal(r.rounds.reduce((n, x) => n + x.bitmap_syncs, 0), r.bitmap_syncs, 'each CLEAN counted in one round');
});

test('xen-legacy: PEEK before each 1024-page batch, pages dirtied again since the pass began are skipped and counted; the last pass skips nothing', async () => {
  const M = 4096; // four batches in round 0
  // After batch 1 leaves: pages 100 (already sent), 2000 and 3000 (not yet) are written.
  // After batch 2 leaves: page 3500 (not yet sent) is written.
  const guest = new WritesAfterBatch(M, new Map([[1, [100, 2000, 3000]], [2, [3500]]]));
  const r = await migrate(guest, new LoopbackTransport(), { policy: createPolicy('xen-legacy'), link: linkModel(100) });
  assert.equal(r.verified, true);
  const r0 = r.rounds[0]!;
  assert.equal(r0.skipped_redirtied, 3, 'round 0 skips 2000, 3000, 3500');
  assert.equal(r0.pages_sent, M - 3);
  assert.equal(r0.skipped, 3);
  const r1 = r.rounds[1]!;
  assert.equal(r1.dirty, 4, 'the CLEAN after round 0 returns the four written pages');
  assert.equal(r1.pages_sent, 4);
  assert.equal(r1.skipped_redirtied, 0);
  // legacy's rule: sent + skipped < 50 ⇒ last iteration (paused), which sends every CLEANed page.
  const last = r.rounds[r.rounds.length - 1]!;
  assert.equal(last.stop_and_copy, true);
  assert.equal(last.skipped, 0);
  assert.ok(r.peeks >= 4, `a PEEK per batch: ${r.peeks}`);
  assert.equal(guest.counters.finalCleans, 0, 'the legacy saver predates LOGDIRTY_FINAL');
  assert.equal(r.skipped_redirtied, 3);
});

test('xen-legacy on a busy uniform guest: each pass sends or skips every CLEANed page, max_factor counts pages actually sent', async () => {
  const M = 8192;
  const guest = new FakeGuest({ pageCount: M, dirtyRatePagesPerSec: 60_000, seed: 17 });
  const r = await migrate(guest, new LoopbackTransport(), { policy: createPolicy('xen-legacy'), link: linkModel(64, 1) });
  assert.equal(r.verified, true);
  for (const x of r.rounds) assert.equal(x.pages_sent + x.skipped_redirtied, x.pending, `round ${x.round}: sent + skipped = considered`);
  assert.ok(r.skipped_redirtied > 0, 'a busy guest re-dirties pages mid-pass');
  // DEF_MAX_FACTOR: live passes stop once more than 3 × M pages were *sent* (skips do not count).
  const live = r.rounds.filter((x) => !x.stop_and_copy);
  const sentBeforeLast = live.slice(0, -1).reduce((n, x) => n + x.pages_sent, 0);
  assert.ok(sentBeforeLast <= 3 * M, `sent ${sentBeforeLast} before the last live pass`);
});

/** Carried pages at each QEMU sync: pending then − pages sent since = what the previous round left. */
function carried(r: MigrationResult): number[] {
  const out: number[] = [];
  for (let i = 1; i < r.rounds.length; i++) out.push(r.rounds[i - 1]!.pending - r.rounds[i - 1]!.pages_sent);
  return out;
}

test('qemu: the bitmap syncs when pending falls under bandwidth × downtime-limit mid-pass, and switches over when it stays under', async () => {
  // A guest that never writes: one pass, a sync once pending < threshold, then the switchover.
  const M = 8192; // 32 MiB
  const capMiB = 10; // 1 MiB per 100 ms window ⇒ threshold ≈ 10 MiB/s × 0.3 s = 3 MiB = 768 pages
  const guest = new FakeGuest({ pageCount: M, seed: 2 });
  const r = await migrate(guest, new LoopbackTransport(), { policy: createPolicy('qemu'), link: linkModel(1000), capBytesPerSec: capMiB * MiB });
  assert.equal(r.verified, true);
  assert.equal(r.rounds.length, 2);
  const left = carried(r)[0]!;
  const thresholdPages = (capMiB * MiB * 0.3) / PAGE;
  const windowPages = (capMiB * MiB) / 10 / PAGE;
  assert.ok(left > 0, 'the sync came before the pass ran out (mid-pass)');
  assert.ok(left < thresholdPages * 1.02, `left ${left} < threshold ${thresholdPages}`);
  assert.ok(left > thresholdPages - 2 * windowPages, `left ${left}: synced as soon as it fell under`);
  const stop = r.rounds[1]!;
  assert.equal(stop.stop_and_copy, true);
  assert.equal(stop.pending, left, 'the stop-and-copy sends what was left');
  assert.equal(stop.bitmap_syncs, 2, 'the sync that decided, and ram_save_complete\'s');
  assert.equal(r.bitmap_syncs, 3, 'setup sync + 2');
  assert.equal(r.switchover, 'converged');
});

test('qemu: rounds run sync to sync, each sync only when pending < threshold; the uniform law holds within 5% (start-to-start of syncs)', async () => {
  const M = 32768, ws = 16384, D = 20_000;
  const guest = new FakeGuest({ pageCount: M, dirtyRatePagesPerSec: D, workingSetPages: ws, seed: 11 });
  const capMiB = 40;
  const r = await migrate(guest, new LoopbackTransport(), { policy: createPolicy('qemu'), link: linkModel(1250), capBytesPerSec: capMiB * MiB });
  assert.equal(r.verified, true);
  assert.ok(r.rounds.length >= 4, `${r.rounds.length} rounds`);
  const thresholdPages = (capMiB * MiB * 0.3) / PAGE;
  const c = carried(r);
  for (let i = 0; i < c.length; i++) assert.ok(c[i]! < thresholdPages * 1.02, `sync ${i + 1}: pending ${c[i]} was under the threshold`);
  assert.ok(c.slice(1).some((n) => n > 0), 'later syncs come mid-pass, with pages still pending');
  for (let i = 0; i + 1 < r.rounds.length; i++) {
    const T = r.rounds[i]!.duration_ms / 1000;
    const want = ws * (1 - Math.exp((-D * T) / ws));
    const got = r.rounds[i + 1]!.dirty;
    if (want < 300) continue; // too few writes for a 5% check
    assert.ok(Math.abs(got - want) / want < 0.05, `round ${i + 1}: dirty ${got}, law ${want.toFixed(0)} over ${T.toFixed(3)} s`);
  }
  // Live rounds are whole rate-limit windows long (the thread syncs at a window's start).
  for (const x of r.rounds.slice(1, -1)) {
    const windows = x.duration_ms / BUFFER_DELAY_MS;
    assert.ok(Math.abs(windows - Math.round(windows)) < 0.02, `round ${x.round}: ${x.duration_ms} ms`);
  }
});

test('qemu: the switchover lifts the cap — the stop-and-copy crosses at the link speed; xen with a cap stays capped', async () => {
  const M = 16384;
  const q = await migrate(new FakeGuest({ pageCount: M, dirtyRatePagesPerSec: 5000, seed: 4 }), new LoopbackTransport(), {
    policy: createPolicy('qemu'), link: linkModel(1000, 0), capBytesPerSec: 20 * MiB,
  });
  const qs = q.rounds[q.rounds.length - 1]!;
  assert.ok(qs.stop_and_copy && qs.bytes > MiB, `stop round ${qs.bytes} bytes`);
  const qRate = qs.bytes / MiB / (qs.duration_ms / 1000);
  assert.ok(Math.abs(qRate - 1000) / 1000 < 0.01, `qemu stop-and-copy at ${qRate.toFixed(0)} MiB/s (link 1000)`);
  for (const x of q.rounds.slice(0, -1)) {
    const rate = x.bytes / MiB / (x.duration_ms / 1000);
    assert.ok(rate < 20 * 1.05, `live round ${x.round} at ${rate.toFixed(1)} MiB/s (cap 20)`);
  }
  const x = await migrate(new FakeGuest({ pageCount: M, dirtyRatePagesPerSec: 5000, seed: 4 }), new LoopbackTransport(), {
    policy: createPolicy('xen'), link: linkModel(1000, 0), capBytesPerSec: 20 * MiB,
  });
  const xs = x.rounds[x.rounds.length - 1]!;
  const xRate = xs.bytes / MiB / (xs.duration_ms / 1000);
  assert.ok(Math.abs(xRate - 20) / 20 < 0.01, `xen stop-and-copy at ${xRate.toFixed(1)} MiB/s (cap 20)`);
});

test('qemu: re-dirtied pages are resent (no content skip) and zero pages go as flags; --skip-unchanged turns the hash skip on', async () => {
  const mk = () => new FakeGuest({ pageCount: 4096, fill: 'zero', dirtyRatePagesPerSec: 20_000, workingSetPages: 1024, sameValueFraction: 1, seed: 8 });
  const g = mk();
  for (let p = 0; p < 1024; p++) g.write(p, 1, p + 1); // the working set holds data, the rest is zero
  const r = await migrate(g, new LoopbackTransport(), { policy: createPolicy('qemu'), link: linkModel(1000), capBytesPerSec: 4 * MiB });
  assert.equal(r.verified, true);
  assert.equal(r.rounds[0]!.zero, 3072, 'the never-written pages go as ZERO flags');
  assert.equal(r.skipped, 0);
  assert.ok(r.rounds.slice(1).some((x) => x.pages_sent > 0), 'rewritten (same-content) pages are sent again');
  const g2 = mk();
  for (let p = 0; p < 1024; p++) g2.write(p, 1, p + 1);
  const s = await migrate(g2, new LoopbackTransport(), { policy: createPolicy('qemu'), link: linkModel(1000), capBytesPerSec: 4 * MiB, skipUnchanged: true });
  assert.equal(s.verified, true);
  assert.ok(s.skipped_unchanged > 0);
  assert.equal(s.skipped_redirtied, 0);
});
