/** Opens the access source a command names: a lackey trace (file or '-') or a seeded synthetic workload. */
import { Xoshiro128 } from '../core/rng.ts';
import type { AccessSource } from '../core/workload/access-batch.ts';
import { createSyntheticWorkload } from '../core/workload/synthetic.ts';
import { LackeyReader } from '../adapters/lackey-reader.ts';
import { UsageError } from './errors.ts';
import { workloadFlag } from './options.ts';

export interface SourceSpec {
  readonly trace?: string | undefined;
  readonly workload?: string | undefined;
  /** Guest pages the synthetic workload ranges over. */
  readonly pageCount: number;
  /** Accesses a synthetic workload makes. */
  readonly count: number;
  readonly seed: number;
}

export function openSource(spec: SourceSpec): AccessSource & { close?: () => void } {
  if (spec.trace !== undefined && spec.workload !== undefined) throw new UsageError('give --trace or --workload, not both');
  if (spec.trace !== undefined) return new LackeyReader(spec.trace);
  if (spec.workload === undefined) throw new UsageError('give --trace FILE or --workload NAME');
  const name = workloadFlag(spec.workload);
  return createSyntheticWorkload(name, { pageCount: spec.pageCount, rng: new Xoshiro128(spec.seed), count: spec.count });
}

/** A trace that gave no I/L/S/M record (an empty file, or only comments) is refused rather than reported as a clean run. */
export function requireRecords(trace: string | undefined, records: number): void {
  if (trace !== undefined && records === 0) throw new UsageError(`${trace === '-' ? '<stdin>' : trace}: no I, L, S or M records (an empty trace?)`);
}
