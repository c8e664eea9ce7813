/**
 * `memvisor predict` against the real run: for the xen and qemu savers on
 * converging workloads, the prediction (a 1 s dirty-rate measurement, then
 * the saver's loop on the pre-copy law) is within 15% of what `migrate`
 * (its receiver a separate process) then measures, for total time and downtime.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';

import { CLI, ROOT } from './cli-entry.ts';

function json(args: string[]): Promise<Record<string, unknown>> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [...CLI, ...args, '--json'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) return fail(new Error(`${args.join(' ')} exited ${code}: ${err}`));
      ok(JSON.parse(out) as Record<string, unknown>);
    });
  });
}

const within = (got: number, real: number, what: string): void =>
  assert.ok(Math.abs(got - real) / real < 0.15, `${what}: predicted ${got.toFixed(2)}, real ${real.toFixed(2)}`);

const CASES: [string, string[]][] = [
  ['xen', ['--workload', 'uniform', '--mem', '256M', '--dirty-rate', '20000', '--bandwidth', '100', '--policy', 'xen']],
  ['qemu', ['--workload', 'uniform', '--mem', '256M', '--dirty-rate', '20000', '--bandwidth', '100', '--policy', 'qemu']],
  ['qemu', ['--workload', 'uniform', '--mem', '256M', '--wss', '64M', '--dirty-rate', '5000', '--bandwidth', '200', '--policy', 'qemu']],
];

describe('memvisor predict', { timeout: 400_000 }, () => {
  for (const [policy, flags] of CASES) {
    it(`${policy} ${flags.join(' ')}: total and downtime within 15% of the real run`, async () => {
      const [pred, real] = await Promise.all([json(['predict', ...flags]), json(['migrate', ...flags])]);
      assert.equal(pred['policy'], policy);
      assert.equal(pred['method'], 'bitmap');
      for (const k of ['rounds', 'bytes', 'downtime_ms', 'total_ms']) assert.equal(typeof pred[k], 'number', k);
      assert.equal(real['verified'], true);
      within(pred['total_ms'] as number, real['total_ms'] as number, 'total_ms');
      within(pred['downtime_ms'] as number, real['downtime_ms'] as number, 'downtime_ms');
      within(pred['bytes'] as number, real['bytes_sent'] as number, 'bytes');
    });
  }
});
