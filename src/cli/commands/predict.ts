/**
 * `memvisor predict <migrate's flags>`: measures the guest's dirty rate for a
 * short window (dirty-rate.ts: bitmap by default), turns the distinct pages
 * into a write rate over the working set, and predicts the saver's rounds,
 * bytes, downtime and total time (core/migration/predict.ts) without migrating.
 */
import { DIRTY_RATE_METHODS } from '../../core/migration/dirty-rate.ts';
import { createPolicy, POLICY_NAMES } from '../../core/migration/policy/registry.ts';
import { predictMigration } from '../../core/migration/predict.ts';
import { QEMU_DEFAULT_MAX_BANDWIDTH } from '../../core/migration/qemu-thread.ts';
import { PAGE_SIZE } from '../../core/units.ts';
import { UsageError } from '../errors.ts';
import { choiceFlag, numberFlag, sizeFlag } from '../options.ts';
import { renderKeyValue } from '../output.ts';
import { runDirtyRate, type DirtyRateFlags } from './dirty-rate.ts';

export interface PredictFlags extends DirtyRateFlags {
  policy?: string;
  bandwidth?: string;
  link?: string;
  latency?: string;
  downtimeLimit?: string;
  measureSeconds?: string;
  autoConverge?: boolean;
  json?: boolean;
}

export async function predictCommand(f: PredictFlags): Promise<void> {
  const policyName = choiceFlag('--policy', f.policy, POLICY_NAMES, 'xen');
  if (f.autoConverge) throw new UsageError('predict does not model --auto-converge (the throttle changes the dirty rate as it goes)');
  const capMiBps = f.bandwidth === undefined ? (policyName === 'qemu' ? QEMU_DEFAULT_MAX_BANDWIDTH / 1048576 : Infinity) : numberFlag('--bandwidth', f.bandwidth, 0, 0.001);
  const linkMiBps = numberFlag('--link', f.link, 1250, 0.001);
  const latencyMs = numberFlag('--latency', f.latency, 0.1, 0);
  const downtimeLimitMs = numberFlag('--downtime-limit', f.downtimeLimit, 300, 0);
  const window = numberFlag('--measure-seconds', f.measureSeconds, 1, 0.001);
  const method = choiceFlag('--method', f.method, DIRTY_RATE_METHODS, 'bitmap');
  const run = await runDirtyRate(f, method, window);
  const M = run.memBytes / PAGE_SIZE;
  const W = f.trace !== undefined ? M : sizeFlag('--wss', f.wss, run.memBytes) / PAGE_SIZE;
  // The measured distinct pages d in w seconds ⇒ the write rate D: d = W(1 − e^(−Dw/W)).
  const d = Math.min(run.result.dirty_rate_pages_s * window, W - 0.5);
  const D = (-W / window) * Math.log(1 - d / W);
  const pred = predictMigration({
    policy: createPolicy(policyName, { downtimeLimitMs }),
    pageCount: M,
    workingSetPages: W,
    zeroOutsideWs: (f.fill ?? 'random') === 'random' ? W < M : true,
    writeRatePagesPerSec: D,
    linkBytesPerSec: linkMiBps * 1048576,
    capBytesPerSec: capMiBps * 1048576,
    latencyNs: latencyMs * 1e6,
  });
  const out = {
    policy: pred.policy, rounds: pred.rounds, bytes: pred.bytes, downtime_ms: pred.downtime_ms, total_ms: pred.total_ms, method,
    measure_seconds: window, measured_dirty_rate_pages_s: run.result.dirty_rate_pages_s, write_rate_pages_s: D, final_pages: pred.final_pages,
  };
  if (f.json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  process.stdout.write(
    `${renderKeyValue([
      ['policy', out.policy],
      ['measured', `${Math.round(out.measured_dirty_rate_pages_s)} distinct pages/s over ${window} s (${method}) ⇒ ${Math.round(D)} writes/s`],
      ['rounds', out.rounds],
      ['MiB', (out.bytes / 1048576).toFixed(1)],
      ['downtime (ms)', out.downtime_ms.toFixed(1)],
      ['total (ms)', out.total_ms.toFixed(1)],
    ])}\n`,
  );
}
