/**
 * Xen migration v2 `simple_precopy_policy` (tools/libs/guest/xg_sr_save.c):
 * STOP_AND_COPY iff (dirty_count ≥ 0 && dirty_count < SPP_TARGET_DIRTY_COUNT)
 * || iteration ≥ SPP_MAX_ITERATIONS, else CONTINUE. With send_memory_live's
 * loop this gives ≤ 5 live passes (1 full + ≤ 4 dirty), and a "< 50" decision
 * still sends that pass live before stopping.
 */
import { knownBelow, type PrecopyStats, type StopPolicy } from './stop-policy.ts';
import { XEN_SAVER } from '../saver.ts';

export const SPP_MAX_ITERATIONS = 5;
export const SPP_TARGET_DIRTY_COUNT = 50;

export function xenPolicy(p: { maxIterations?: number; targetDirtyCount?: number } = {}): StopPolicy {
  const maxIterations = p.maxIterations ?? SPP_MAX_ITERATIONS;
  const targetDirtyCount = p.targetDirtyCount ?? SPP_TARGET_DIRTY_COUNT;
  return {
    name: 'xen',
    saver: XEN_SAVER,
    params: { max_iterations: maxIterations, target_dirty_count: targetDirtyCount },
    decide(s: PrecopyStats) {
      return knownBelow(s.dirtyCount, targetDirtyCount) || s.iteration >= maxIterations ? 'stop' : 'continue';
    },
  };
}
