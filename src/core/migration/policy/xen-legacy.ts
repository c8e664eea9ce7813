/**
 * Xen's legacy saver (xc_domain_save.c, removed in b15bc43): at most
 * DEF_MAX_ITERS = 29 live iterations (30 rounds with the last), never more than
 * DEF_MAX_FACTOR = 3 × the guest's pages sent, and a last iteration once a
 * pass sent (+ skipped) fewer than 50 pages. Those tests used the pages the
 * pass just sent, not a dirty count, so they fire at the post-pass decision.
 * The ADAPTIVE_SAVE rate limiter was compiled out and is not modelled.
 */
import type { PrecopyStats, StopPolicy } from './stop-policy.ts';
import { XEN_LEGACY_SAVER } from '../saver.ts';

export const DEF_MAX_ITERS = 29;
export const DEF_MAX_FACTOR = 3;
export const LEGACY_MIN_SENT = 50;

export function xenLegacyPolicy(p: { maxIters?: number; maxFactor?: number; minSent?: number } = {}): StopPolicy {
  const maxIters = p.maxIters ?? DEF_MAX_ITERS;
  const maxFactor = p.maxFactor ?? DEF_MAX_FACTOR;
  const minSent = p.minSent ?? LEGACY_MIN_SENT;
  return {
    name: 'xen-legacy',
    saver: XEN_LEGACY_SAVER,
    params: { max_iters: maxIters, max_factor: maxFactor, min_sent: minSent },
    decide(s: PrecopyStats) {
      if (s.iteration >= maxIters) return 'stop';
      if (s.totalPagesSent > maxFactor * s.pageCount) return 'stop';
      // The first decision comes before any pass (lastPassPagesSent = −1).
      if (s.lastPassPagesSent >= 0 && s.lastPassPagesSent + s.lastPassSkipped < minSent) return 'stop';
      return 'continue';
    },
  };
}
