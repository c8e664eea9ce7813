/**
 * Clark et al., "Live Migration of Virtual Machines", NSDI'05 §5.1 dynamic
 * rate limiting: the first pass runs at an administrator minimum; each later
 * pass at the previous pass's dirtying rate plus a constant increment; when
 * that reaches the administrator maximum, or little remains, stop and copy
 * (the final pass at the maximum rate). Constants as the paper's experiments
 * ([R] in migration-anchors.md §4): 100 Mbit/s min, +50 Mbit/s, 500 Mbit/s
 * max, stop under 256 KB.
 */
import type { PrecopyStats, StopPolicy } from './stop-policy.ts';
import { CLARK_SAVER } from '../saver.ts';

const MBIT = 1e6 / 8; // bytes per second in one Mbit/s

export function clarkPolicy(
  p: { minMbit?: number; incrementMbit?: number; maxMbit?: number; stopBytes?: number; maxIterations?: number } = {},
): StopPolicy {
  const minRate = (p.minMbit ?? 100) * MBIT;
  const increment = (p.incrementMbit ?? 50) * MBIT;
  const maxRate = (p.maxMbit ?? 500) * MBIT;
  const stopBytes = p.stopBytes ?? 256 * 1024;
  const maxIterations = p.maxIterations ?? 30;
  let nextRate = minRate;
  return {
    name: 'clark',
    saver: CLARK_SAVER,
    params: {
      min_mbit: minRate / MBIT,
      increment_mbit: increment / MBIT,
      max_mbit: maxRate / MBIT,
      stop_bytes: stopBytes,
      max_iterations: maxIterations,
    },
    decide(s: PrecopyStats) {
      if (s.iteration >= maxIterations) return 'stop';
      if (s.dirtyCount < 0) return 'continue';
      const remaining = s.dirtyCount * s.pageSizeBytes;
      if (remaining < stopBytes) return 'stop';
      if (s.iteration === 0) return 'continue'; // before the first pass: run it at the minimum
      const dirtyRate = s.dirtyIntervalNs > 0 ? remaining / (s.dirtyIntervalNs / 1e9) : maxRate;
      nextRate = Math.min(maxRate, Math.max(minRate, dirtyRate + increment));
      return nextRate >= maxRate ? 'stop' : 'continue';
    },
    rateFor(_s: PrecopyStats, final: boolean) {
      return final ? maxRate : nextRate;
    },
  };
}
