/**
 * `memvisor dashboard`: a local web dashboard (127.0.0.1 only) where a guest
 * runs under a dirty-tracking mode in rounds — live charts of dirty pages,
 * exits by reason and cycles per round, a heatmap of guest memory, controls
 * for mode, workload and dirty rate, and a live migration to a loopback
 * receiver. The URL is the first stdout line (so `--port 0` can be scripted).
 */
import { GiB } from '../../core/units.ts';
import { defaultCleanEvery, MAX_DASHBOARD_MEM_BYTES } from '../../adapters/dashboard/run-request.ts';
import { startDashboard } from '../../adapters/dashboard/server.ts';
import { listenError, UsageError } from '../errors.ts';
import { choiceFlag, intFlag, modeFlag, sizeFlag, workloadFlag } from '../options.ts';
import type { ModeName } from '../../core/modes/dirty-mode.ts';
import type { SyntheticWorkloadName } from '../../core/workload/synthetic.ts';

export interface DashboardFlags {
  port?: string;
  mode?: string;
  workload?: string;
  mem?: string;
  vcpus?: string;
  dirtyRate?: string;
  cleanEvery?: string;
  seed?: string;
  addressing?: string;
  start?: boolean;
  json?: boolean;
}

export async function dashboardCommand(f: DashboardFlags): Promise<void> {
  const port = intFlag('--port', f.port, 7070, 0, 65535);
  const memBytes = sizeFlag('--mem', f.mem, GiB / 4);
  if (memBytes > MAX_DASHBOARD_MEM_BYTES) throw new UsageError(`--mem: the dashboard runs guests up to 4 GiB (one heatmap pixel per page), got ${f.mem}`);
  const dirtyRate = intFlag('--dirty-rate', f.dirtyRate, 20_000, 1, 0xffffffff);
  const defaults = {
    mode: modeFlag(f.mode, 'ept-pml') as ModeName,
    workload: workloadFlag(f.workload ?? 'hotspot') as SyntheticWorkloadName,
    memBytes,
    vcpus: intFlag('--vcpus', f.vcpus, 1, 1, 64),
    dirtyRate,
    cleanEvery: intFlag('--clean-every', f.cleanEvery, defaultCleanEvery(dirtyRate), 1, 1 << 30),
    seed: intFlag('--seed', f.seed, 1, 0, 0xffffffff),
    addressing: choiceFlag('--addressing', f.addressing, ['identity', 'paged'] as const, 'identity'),
  };
  let dash;
  try {
    dash = await startDashboard({ port, defaults, cleanEveryExplicit: f.cleanEvery !== undefined, autostart: f.start !== false });
  } catch (e) {
    throw listenError('--port', '127.0.0.1', port, e);
  }
  if (f.json) {
    // One JSON object: where the dashboard listens and what it runs (the server keeps running).
    process.stdout.write(`${JSON.stringify({ url: dash.url, mode: defaults.mode, workload: defaults.workload, dirty_rate: dirtyRate, mem_bytes: memBytes })}\n`);
  } else {
    process.stdout.write(`${dash.url}\n`);
    process.stdout.write(`memvisor dashboard: ${defaults.mode}, ${defaults.workload} at ${dirtyRate} pages/s on a ${memBytes / 1048576} MiB guest; Ctrl-C to quit\n`);
  }
  await new Promise<void>((resolve) => {
    const quit = (): void => {
      process.off('SIGINT', quit);
      process.off('SIGTERM', quit);
      dash.close().then(resolve, resolve);
    };
    process.on('SIGINT', quit);
    process.on('SIGTERM', quit);
  });
}
