/**
 * One contract, every stop policy (src/testing/stop-policy-contract.ts, also
 * exported as `memvisor/testing` for users' own policies, run against each
 * built-in by name), plus each policy's own rule, on the same loop driver.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPolicy, POLICY_NAMES, UnknownPolicyError } from './registry.ts';
import type { PrecopyStats, StopPolicy } from './stop-policy.ts';
import { drivePrecopy, stopPolicyContract } from '../../../testing/stop-policy-contract.ts';
import { xenPolicy } from './xen.ts';
import { xenLegacyPolicy } from './xen-legacy.ts';
import { qemuPolicy } from './qemu.ts';
import { clarkPolicy } from './clark.ts';
import { adaptivePolicy } from './adaptive.ts';

const PAGE = 4096;

for (const name of POLICY_NAMES) stopPolicyContract({ name, create: (opts) => createPolicy(name, opts) });

const drive = drivePrecopy;

test('unknown policy name is a typed error', () => {
  assert.throws(() => createPolicy('fastest'), UnknownPolicyError);
});

/** Scripted counts through the same loop (xen-semantics.md §9.17). */
function scripted(policy: StopPolicy, M: number, counts: number[]): number[] {
  let iteration = 0, dirty = -1, totalWritten = 0, k = 0;
  const st = (): PrecopyStats => ({ iteration, dirtyCount: dirty, totalWritten, totalPagesSent: 0, totalBytes: 0, pageCount: M, pageSizeBytes: PAGE,
    lastPassPagesSent: -1, lastPassSkipped: -1, lastPassBytes: 0, lastPassNs: 0, bandwidthBytesPerSec: 0, dirtyIntervalNs: 0, elapsedNs: 0 });
  const sent: number[] = [];
  let d = policy.decide(st());
  for (let x = 1; ; x++) {
    if (x === 1) sent.push(M); else if (dirty > 0) sent.push(dirty);
    if (d !== 'continue') break;
    iteration = x; totalWritten += x === 1 ? M : dirty; dirty = -1;
    d = policy.decide(st());
    if (d !== 'continue') break;
    dirty = counts[k++] ?? 0;
    d = policy.decide(st());
  }
  return sent;
}

test('xen: [N,1000,800,700,600,…] ⇒ 5 live passes; [N,30] ⇒ pass 2 sends 30 then stop', () => {
  assert.deepEqual(scripted(xenPolicy(), 9999, [1000, 800, 700, 600, 500, 400]), [9999, 1000, 800, 700, 600]);
  assert.deepEqual(scripted(xenPolicy(), 9999, [30]), [9999, 30]);
});

test('xen-legacy: 30 rounds at most, 3× memory at most, stops once a pass sent < 50', () => {
  const M = 1 << 16;
  const flat = drive(xenLegacyPolicy(), M, 5e5, 1e9); // dirty stays high: capped by 3×M
  assert.ok(flat.sent <= 3 * M + M, `sent ${flat.sent}`);
  assert.ok(flat.passes.length <= 29);
  const p = xenLegacyPolicy();
  const base = { iteration: 3, dirtyCount: -1, totalWritten: 0, totalPagesSent: 100, totalBytes: 0, pageCount: M, pageSizeBytes: PAGE,
    lastPassBytes: 0, lastPassNs: 1, bandwidthBytesPerSec: 1, dirtyIntervalNs: 1, elapsedNs: 1 };
  assert.equal(p.decide({ ...base, lastPassPagesSent: 49, lastPassSkipped: 0 }), 'stop');
  assert.equal(p.decide({ ...base, lastPassPagesSent: 50, lastPassSkipped: 0 }), 'continue');
  assert.equal(p.decide({ ...base, lastPassPagesSent: 500, lastPassSkipped: 0, iteration: 29 }), 'stop');
  assert.equal(p.decide({ ...base, lastPassPagesSent: 500, lastPassSkipped: 0, totalPagesSent: 3 * M + 1 }), 'stop');
});

test('qemu: stop when pending bytes < bandwidth × downtime limit (300 ms default)', () => {
  const p = qemuPolicy();
  assert.equal(p.params.downtime_limit_ms, 300);
  const base = { iteration: 2, totalWritten: 0, totalPagesSent: 0, totalBytes: 0, pageCount: 1e6, pageSizeBytes: PAGE, lastPassPagesSent: 10,
    lastPassSkipped: 0, lastPassBytes: 0, lastPassNs: 1, dirtyIntervalNs: 1, elapsedNs: 1, bandwidthBytesPerSec: 100 * 1024 * 1024 };
  // threshold = 100 MiB/s × 0.3 s = 30 MiB = 7680 pages
  assert.equal(p.decide({ ...base, dirtyCount: 7679 }), 'stop');
  assert.equal(p.decide({ ...base, dirtyCount: 7680 }), 'continue');
  assert.equal(p.decide({ ...base, dirtyCount: -1 }), 'continue');
});

test('clark: starts at the minimum rate, then last dirty rate + increment, stops at the maximum', () => {
  const p = clarkPolicy();
  const MB = 1e6 / 8;
  const base = { iteration: 0, dirtyCount: -1, totalWritten: 0, totalPagesSent: 0, totalBytes: 0, pageCount: 1e6, pageSizeBytes: PAGE,
    lastPassPagesSent: -1, lastPassSkipped: -1, lastPassBytes: 0, lastPassNs: 0, bandwidthBytesPerSec: 0, dirtyIntervalNs: 0, elapsedNs: 0 };
  assert.equal(p.rateFor!(base, false), 100 * MB);
  // 1 s interval, 100 Mbit/s of dirtying ⇒ next pass at 150 Mbit/s.
  const dirtyPages = (100 * MB) / PAGE;
  assert.equal(p.decide({ ...base, iteration: 1, dirtyCount: dirtyPages, dirtyIntervalNs: 1e9 }), 'continue');
  assert.ok(Math.abs(p.rateFor!(base, false)! - 150 * MB) < 1);
  // dirtying at 460 Mbit/s ⇒ 510 > 500 ⇒ stop, final pass at the maximum.
  assert.equal(p.decide({ ...base, iteration: 2, dirtyCount: (460 * MB) / PAGE, dirtyIntervalNs: 1e9 }), 'stop');
  assert.equal(p.rateFor!(base, true), 500 * MB);
  // little remains (< 256 KB) ⇒ stop
  assert.equal(clarkPolicy().decide({ ...base, iteration: 1, dirtyCount: 63, dirtyIntervalNs: 1e9 }), 'stop');
});

test('adaptive: stops early when another pass cannot shrink the remainder; sends less than xen-legacy there', () => {
  const M = 1 << 16, B = 100 * 1024 * 1024;
  const hot = drive(adaptivePolicy(), M, 2e5, B); // D·pageSize ≈ 8× B: never converges
  const legacy = drive(xenLegacyPolicy(), M, 2e5, B);
  assert.ok(hot.passes.length <= 3, `adaptive passes ${hot.passes.length}`);
  assert.ok(hot.sent <= 0.7 * legacy.sent, `adaptive ${hot.sent} vs legacy ${legacy.sent}`);
  const calm = drive(adaptivePolicy(), M, 2000, B); // converges: keeps going until downtime is fine
  assert.ok(calm.passes.length >= 2);
  assert.ok((calm.final * PAGE) / B <= 0.3);
});
