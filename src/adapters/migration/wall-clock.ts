/** The wall clock and timers the core takes as dependencies under `--clock real`. */
import type { Clock } from '../../core/clock.ts';

export const wallClock: Clock = { nowNs: () => performance.now() * 1e6 };

export function sleepNs(ns: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ns / 1e6)));
}
