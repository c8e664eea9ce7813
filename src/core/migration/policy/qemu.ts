/**
 * QEMU's switchover test (migration/migration.c `migration_update_counters`,
 * defaults in migration/options.c): threshold = bandwidth × downtime_limit,
 * switch over when the pending bytes (dirty pages × page size) fall below it.
 * Bandwidth is what the last pass achieved. QEMU itself has no iteration cap
 * (it runs until cancelled, or throttles with auto-converge); we stop after
 * `maxIterations` passes so a non-converging run ends.
 */
import type { PrecopyStats, StopPolicy } from './stop-policy.ts';
import { QEMU_SAVER } from '../saver.ts';

/** QEMU default downtime-limit, ms. */
export const QEMU_DOWNTIME_LIMIT_MS = 300;

export function qemuPolicy(p: { downtimeLimitMs?: number; maxIterations?: number } = {}): StopPolicy {
  const downtimeLimitMs = p.downtimeLimitMs ?? QEMU_DOWNTIME_LIMIT_MS;
  const maxIterations = p.maxIterations ?? 30;
  return {
    name: 'qemu',
    saver: QEMU_SAVER,
    params: { downtime_limit_ms: downtimeLimitMs, max_iterations: maxIterations },
    decide(s: PrecopyStats) {
      if (s.iteration >= maxIterations) return 'stop';
      if (s.dirtyCount < 0 || s.bandwidthBytesPerSec <= 0) return 'continue';
      const pendingBytes = s.dirtyCount * s.pageSizeBytes;
      const thresholdBytes = s.bandwidthBytesPerSec * (downtimeLimitMs / 1000);
      return pendingBytes < thresholdBytes ? 'stop' : 'continue';
    },
  };
}
