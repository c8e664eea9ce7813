/**
 * `memvisor dirty-rate`: QEMU's calc-dirty-rate on a running guest — a
 * synthetic workload or a lackey trace runs for `--seconds` of virtual time
 * while one method (sample, ring, bitmap; core/migration/dirty-rate.ts)
 * measures how fast it dirties memory.
 */
import { DIRTY_RATE_METHODS, measureDirtyRate, type DirtyRateResult } from '../../core/migration/dirty-rate.ts';
import { Xoshiro128 } from '../../core/rng.ts';
import { createGuest } from '../../core/runner/guest.ts';
import { fillGuestRandom, MigratableDomain } from '../../core/runner/migratable-domain.ts';
import { GiB, PAGE_SIZE } from '../../core/units.ts';
import { createSyntheticWorkload } from '../../core/workload/synthetic.ts';
import { LackeyReader } from '../../adapters/lackey-reader.ts';
import { UsageError } from '../errors.ts';
import { choiceFlag, intFlag, memFlag, modeFlag, numberFlag, sizeFlag, workloadFlag } from '../options.ts';
import { formatSize, renderKeyValue } from '../output.ts';
import { modeOptionsFrom, type TraceFlags } from './trace.ts';

export interface DirtyRateFlags extends TraceFlags {
  trace?: string;
  workload?: string;
  seconds?: string;
  method?: string;
  dirtyRate?: string;
  wss?: string;
  fill?: string;
}

export interface DirtyRateRun {
  readonly result: DirtyRateResult;
  readonly mode: string;
  readonly workload: string;
  readonly memBytes: number;
  readonly dirtyRate: number;
}

/** Builds the guest migrate would build and measures it; shared with `predict`. */
export async function runDirtyRate(f: DirtyRateFlags, method: DirtyRateResult['method'], seconds: number): Promise<DirtyRateRun> {
  if (f.trace !== undefined && f.workload !== undefined) throw new UsageError('give --trace or --workload, not both');
  const traced = f.trace !== undefined;
  const workloadName = traced ? `trace ${f.trace}` : workloadFlag(f.workload ?? 'hotspot');
  const memBytes = memFlag(f.mem, traced ? 64 * 1048576 : GiB, { synthetic: !traced });
  const vcpus = intFlag('--vcpus', f.vcpus, 1, 1, 256);
  const mode = modeFlag(f.mode, method === 'ring' ? 'kvm-ring' : 'ept-pml');
  if (method === 'ring' && mode !== 'kvm-ring') throw new UsageError(`--method ring counts KVM dirty-ring entries: it needs --mode kvm-ring (got --mode ${mode})`);
  const dirtyRate = intFlag('--dirty-rate', f.dirtyRate, traced ? 1_000_000 : 20_000, 0, 0xffffffff);
  const fill = choiceFlag('--fill', f.fill, ['random', 'zero'] as const, 'random');
  if (traced && f.wss !== undefined) throw new UsageError('--wss applies to synthetic workloads (--workload), not to a trace');
  const wssBytes = sizeFlag('--wss', f.wss, memBytes);
  if (wssBytes <= 0 || wssBytes > memBytes) throw new UsageError(`--wss: ${f.wss} must be more than 0 and at most --mem (${formatSize(memBytes)})`);
  const seed = intFlag('--seed', f.seed, 1, 0);
  const guest = createGuest({
    memBytes, vcpus, mode, addressing: traced ? 'paged' : 'identity', pageSize: choiceFlag('--page-size', f.pageSize, ['4k', '2m'] as const, '4k'),
    modeOptions: modeOptionsFrom(f), populate: fill === 'random' ? 'up-front' : 'on-demand',
  });
  const rng = new Xoshiro128(seed);
  const wssPages = wssBytes / PAGE_SIZE;
  if (fill === 'random') fillGuestRandom(guest.domain, rng, wssPages);
  const workload = traced ? new LackeyReader(f.trace!) : createSyntheticWorkload(workloadName, { pageCount: wssPages, rng: new Xoshiro128(seed + 1) });
  const source = new MigratableDomain({ domain: guest.domain, mode: guest.mode!, workload, accessesPerSecond: dirtyRate });
  try {
    // The sample's pages come from their own stream (seed + 2), apart from the fill's and the workload's.
    const result = await measureDirtyRate(source, method, seconds, new Xoshiro128(seed + 2));
    return { result, mode, workload: workloadName, memBytes, dirtyRate };
  } finally {
    if (workload instanceof LackeyReader) workload.close();
  }
}

export async function dirtyRateCommand(f: DirtyRateFlags & { json?: boolean }): Promise<void> {
  if (f.seconds === undefined) throw new UsageError('dirty-rate needs --seconds S (how long the guest runs while measured)');
  const seconds = numberFlag('--seconds', f.seconds, 1, 0.001);
  const method = choiceFlag('--method', f.method, DIRTY_RATE_METHODS, 'sample');
  const run = await runDirtyRate(f, method, seconds);
  const out = { ...run.result, mode: run.mode, workload: run.workload, mem_bytes: run.memBytes, workload_rate: run.dirtyRate };
  if (f.json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  process.stdout.write(
    `${renderKeyValue([
      ['method', `${out.method} (${run.mode})`],
      ['guest', `${formatSize(run.memBytes)}, ${run.workload} at ${run.dirtyRate}/s`],
      ['seconds', out.seconds],
      ['dirty rate (pages/s)', Math.round(out.dirty_rate_pages_s)],
      ['dirty rate (MiB/s)', out.dirty_rate_mib_s.toFixed(1)],
      ...(out.sample_pages !== undefined ? [['sampled / changed', `${out.sample_pages} / ${out.sample_dirty}`] as [string, string]] : []),
      ...(out.dirty_pages !== undefined ? [[out.method === 'ring' ? 'ring entries' : 'dirty pages', out.dirty_pages] as [string, number]] : []),
    ])}\n`,
  );
}
