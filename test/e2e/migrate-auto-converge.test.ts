/**
 * Auto-converge through the CLI (the receiver a separate process): the
 * issue's non-converging run — 256 MiB, 100,000 pages/s uniform against a
 * 200 MiB/s cap, QEMU's saver — converges once the vCPUs are throttled, with
 * a downtime within the limit, and its rounds report the throttle.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';

import { CLI, ROOT } from './cli-entry.ts';

interface Round { round: number; dirty: number; duration_ms: number; stop_and_copy: boolean; throttle_pct?: number }
interface MigrateJson { rounds: Round[]; downtime_ms: number; verified: boolean; switchover?: string; guest_accesses: number; total_ms: number }

function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((ok) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      ok({ code, out, err });
    });
  });
}

const ISSUE_RUN = ['--workload', 'uniform', '--mem', '256M', '--dirty-rate', '100000', '--bandwidth', '200', '--clock', 'virtual', '--policy', 'qemu'];

describe('migrate --auto-converge', { timeout: 300_000 }, () => {
  it("the issue's non-converging qemu run converges under the throttle: downtime ≤ 300 ms + one round, throttle ≥ 20% reported", async () => {
    const { code, out, err } = await run(['migrate', '--json', ...ISSUE_RUN, '--auto-converge']);
    assert.equal(code, 0, err);
    const r = JSON.parse(out) as MigrateJson;
    assert.equal(r.verified, true);
    assert.equal(r.switchover, 'converged', 'pending fell under the threshold (not our sync cap)');
    const live = r.rounds.filter((x) => !x.stop_and_copy);
    const slack = Math.max(...live.map((x) => x.duration_ms));
    assert.ok(r.downtime_ms <= 300 + slack, `downtime ${r.downtime_ms} ms`);
    for (const x of r.rounds) assert.equal(typeof x.throttle_pct, 'number', `round ${x.round} reports throttle_pct`);
    assert.equal(r.rounds[0]!.throttle_pct, 0, 'no throttle before the first period is judged');
    const maxPct = Math.max(...r.rounds.map((x) => x.throttle_pct!));
    assert.ok(maxPct >= 20, `throttle reached ${maxPct}%`);
    // Never lowered while migrating (QEMU only raises it).
    for (let i = 1; i < r.rounds.length; i++) assert.ok(r.rounds[i]!.throttle_pct! >= r.rounds[i - 1]!.throttle_pct!);
    // The throttle is real: in a round at t%, the guest made (100 − t)% of its accesses — seen as the
    // distinct pages the next sync found, against the uniform law at the throttled rate (5%).
    const M = 65536;
    for (let i = 1; i + 1 < live.length; i++) {
      const t = live[i]!.throttle_pct!;
      const T = live[i]!.duration_ms / 1000;
      const expected = M * (1 - Math.exp((-100_000 * (1 - t / 100) * T) / M));
      const got = r.rounds[i + 1]!.dirty;
      assert.ok(Math.abs(got - expected) / expected < 0.05, `round ${i + 1}: dirty ${got}, law at ${t}% ${expected.toFixed(0)}`);
    }
  });

  it('--auto-converge with a Xen saver: one clear line, non-zero exit', async () => {
    const { code, err } = await run(['migrate', '--workload', 'uniform', '--mem', '16M', '--policy', 'xen', '--auto-converge']);
    assert.notEqual(code, 0);
    assert.match(err, /^memvisor: --auto-converge .*--policy qemu/);
    assert.equal(err.trim().split('\n').length, 1, err);
  });
});
