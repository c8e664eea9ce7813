/**
 * Seeded synthetic workloads, by name — what `memvisor migrate --workload
 * <name>` runs. Each generator is an AccessSource in its own file:
 *
 *   uniform      stores to uniformly random pages of the whole range
 *   hotspot      hotWeight (0.9) of the stores to a hot hotFraction (10%) region
 *   zipf         stores with Zipf(s = 1.0) page popularity, ranks scattered
 *   sequential   a sweep over the range, stride pages at a time
 *   read-mostly  uniform pages, loads except writeFraction (5%) stores
 *
 * All randomness comes from the injected Rng; no clock is read. Pace them in
 * virtual time with AccessRate (accesses per window) and `fill(batch, n)`.
 */
import { HotspotWorkload, type HotspotOptions } from './hotspot.ts';
import { ReadMostlyWorkload, type ReadMostlyOptions } from './read-mostly.ts';
import { SequentialWorkload, type SequentialOptions } from './sequential.ts';
import type { SyntheticWorkload } from './synthetic-base.ts';
import { UniformWorkload } from './uniform.ts';
import { ZipfWorkload, type ZipfOptions } from './zipf.ts';

export const SYNTHETIC_WORKLOADS = ['uniform', 'hotspot', 'zipf', 'sequential', 'read-mostly'] as const;
export type SyntheticWorkloadName = (typeof SYNTHETIC_WORKLOADS)[number];

/** Options accepted by every generator; each reads the fields it knows. */
export type AnySyntheticOptions = HotspotOptions & ZipfOptions & SequentialOptions & ReadMostlyOptions;

export class UnknownWorkloadError extends Error {
  override readonly name = 'UnknownWorkloadError';
  readonly userFacing = true;
  constructor(readonly workload: string) {
    super(`unknown workload '${workload}' (expected one of: ${SYNTHETIC_WORKLOADS.join(', ')})`);
  }
}

export function isSyntheticWorkloadName(name: string): name is SyntheticWorkloadName {
  return (SYNTHETIC_WORKLOADS as readonly string[]).includes(name);
}

/** Makes the named generator; throws UnknownWorkloadError for a name it does not know. */
export function createSyntheticWorkload(name: string, opts: AnySyntheticOptions): SyntheticWorkload {
  switch (name) {
    case 'uniform':
      return new UniformWorkload(opts);
    case 'hotspot':
      return new HotspotWorkload(opts);
    case 'zipf':
      return new ZipfWorkload(opts);
    case 'sequential':
      return new SequentialWorkload(opts);
    case 'read-mostly':
      return new ReadMostlyWorkload(opts);
    default:
      throw new UnknownWorkloadError(name);
  }
}
