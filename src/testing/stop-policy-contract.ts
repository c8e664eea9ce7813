/**
 * The contract every stop policy meets, as a function a test file calls:
 * memvisor's own policies run it (src/core/migration/policy/contract.test.ts)
 * and so does a policy a user writes (`import { stopPolicyContract } from
 * 'memvisor/testing'`). The loop driver is the sender's (Xen's
 * send_memory_live, sender.ts) with a closed-form workload instead of a
 * guest: M pages, a uniform writer of D pages/s, a link of B bytes/s; it
 * calls decide() at the points the sender does (before each pass, after it
 * with dirtyCount = −1, after CLEAN). Registers node:test tests:
 *  - the first pass always runs live; every decision is 'continue' or 'stop';
 *  - it terminates on a workload that never converges (D ≫ B), within 31 passes;
 *  - it stops within 2 passes on a guest that stops writing;
 *  - on a converging workload the final dirty set is under a tenth of memory;
 *  - fresh instances decide identically (deterministic), and carry the entry's name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PolicyOptions } from '../core/migration/policy/registry.ts';
import type { PrecopyStats, StopPolicy } from '../core/migration/policy/stop-policy.ts';

const PAGE = 4096;

/** A policy under test: what registerPolicy takes (a PolicyEntry fits). */
export interface StopPolicySubject {
  readonly name: string;
  readonly create: (opts: PolicyOptions) => StopPolicy;
}

/** What drivePrecopy returns: each pass's page count, the dirty set left at the stop, pages sent in all. */
export interface PrecopyRun {
  readonly passes: number[];
  readonly final: number;
  readonly sent: number;
}

/** Runs the Xen loop: M pages, uniform writer D pages/s, link B bytes/s. Returns live passes' dirty counts. */
export function drivePrecopy(policy: StopPolicy, M: number, D: number, B: number): PrecopyRun {
  let iteration = 0, dirty = -1, totalWritten = 0, totalPagesSent = 0, totalBytes = 0;
  let last: { sent: number; ns: number } | undefined;
  let interval = 0;
  const stats = (): PrecopyStats => ({
    iteration, dirtyCount: dirty, totalWritten, totalPagesSent, totalBytes, pageCount: M, pageSizeBytes: PAGE,
    lastPassPagesSent: last ? last.sent : -1, lastPassSkipped: last ? 0 : -1, lastPassBytes: last ? last.sent * PAGE : 0,
    lastPassNs: last?.ns ?? 0, bandwidthBytesPerSec: last ? B : 0, dirtyIntervalNs: interval, elapsedNs: 0,
  });
  const passes: number[] = [];
  let decision = policy.decide(stats());
  assert.equal(decision, 'continue', `${policy.name}: the first pass always runs live`);
  let x = 0;
  for (;;) {
    x++;
    const n = x === 1 ? M : dirty;
    if (x === 1 || dirty > 0) {
      const rate = Math.min(B, policy.rateFor?.(stats(), false) ?? Infinity);
      const ns = ((n * PAGE) / rate) * 1e9;
      passes.push(n);
      totalPagesSent += n; totalBytes += n * PAGE;
      last = { sent: n, ns };
      interval = ns;
    }
    if (decision !== 'continue') break;
    iteration = x; totalWritten += n; dirty = -1;
    decision = policy.decide(stats());
    if (decision !== 'continue') break;
    dirty = Math.round(M * (1 - Math.exp((-D * interval) / 1e9 / M)));
    decision = policy.decide(stats());
    assert.ok(decision === 'continue' || decision === 'stop');
    assert.ok(x < 100, `${policy.name} does not terminate`);
  }
  return { passes, final: dirty < 0 ? 0 : dirty, sent: totalPagesSent };
}

/** Registers the contract's tests for each policy. */
export function stopPolicyContract(policies: StopPolicySubject | readonly StopPolicySubject[]): void {
  const list: readonly StopPolicySubject[] = Array.isArray(policies) ? policies : [policies as StopPolicySubject];
  for (const p of list) {
    const name = p.name;
    const fresh = (): StopPolicy => p.create({});
    test(`contract[${name}]: terminates on a workload that never converges (D ≫ B)`, () => {
      const r = drivePrecopy(fresh(), 1 << 16, 1e7, 100 * 1024 * 1024);
      assert.ok(r.passes.length <= 31, `${r.passes.length} passes`);
    });
    test(`contract[${name}]: stops on a guest that stops writing`, () => {
      const r = drivePrecopy(fresh(), 1 << 14, 0, 100 * 1024 * 1024);
      assert.ok(r.passes.length <= 2, `${r.passes.length} passes`);
    });
    test(`contract[${name}]: on a converging workload, the final dirty set is small`, () => {
      const M = 1 << 16;
      const r = drivePrecopy(fresh(), M, 2000, 1024 * 1024 * 1024);
      assert.ok(r.final < M / 10, `final ${r.final}`);
    });
    test(`contract[${name}]: fresh instances decide identically (deterministic)`, () => {
      const a = drivePrecopy(fresh(), 50_000, 60_000, 50 * 1024 * 1024);
      const b = drivePrecopy(fresh(), 50_000, 60_000, 50 * 1024 * 1024);
      assert.deepEqual(a, b);
      assert.equal(fresh().name, name);
    });
  }
}
