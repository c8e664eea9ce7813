/**
 * memvisor's adaptive policy: predict the next pass from measurements and
 * stop as soon as another pass would not pay.
 *
 * After CLEAN, R = dirty pages, B = measured bandwidth (pages/s), M = guest pages.
 * The dirty rate D is recovered from the saturating law a uniform writer
 * obeys over an interval T (R = M·(1 − e^(−D·T/M)) ⇒ D = −(M/T)·ln(1 − R/M)),
 * so a hot working set that saturates is not mistaken for a slow writer.
 * The next pass takes T' = R/B and would leave R' = M·(1 − e^(−D·T'/M)).
 *   stop if R < minDirty                          (nothing left to gain)
 *   stop if R·pageSize/B ≤ downtime target        (downtime already fine)
 *   stop if R' > shrink · R                       (another pass cannot shrink it)
 *   stop after maxIterations passes               (safety)
 */
import type { PrecopyStats, StopPolicy } from './stop-policy.ts';
import { ADAPTIVE_SAVER } from '../saver.ts';

export function adaptivePolicy(
  p: { downtimeLimitMs?: number; shrink?: number; minDirty?: number; maxIterations?: number } = {},
): StopPolicy {
  const downtimeLimitMs = p.downtimeLimitMs ?? 300;
  const shrink = p.shrink ?? 0.8;
  const minDirty = p.minDirty ?? 50;
  const maxIterations = p.maxIterations ?? 30;
  return {
    name: 'adaptive',
    saver: ADAPTIVE_SAVER,
    params: { downtime_limit_ms: downtimeLimitMs, shrink, min_dirty: minDirty, max_iterations: maxIterations },
    decide(s: PrecopyStats) {
      if (s.iteration >= maxIterations) return 'stop';
      if (s.dirtyCount < 0) return 'continue';
      const r = s.dirtyCount;
      if (r < minDirty) return 'stop';
      if (s.bandwidthBytesPerSec <= 0 || s.dirtyIntervalNs <= 0) return 'continue';
      const bPages = s.bandwidthBytesPerSec / s.pageSizeBytes;
      if ((r / bPages) * 1000 <= downtimeLimitMs) return 'stop';
      const m = s.pageCount;
      const t = s.dirtyIntervalNs / 1e9;
      const d = r >= m ? Infinity : (-m / t) * Math.log(1 - r / m);
      const next = m * (1 - Math.exp((-d * (r / bPages)) / m));
      return next > shrink * r ? 'stop' : 'continue';
    },
  };
}
