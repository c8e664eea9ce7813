/**
 * Clocks are injected: the engine never reads the wall clock itself.
 * VirtualClock advances only when told to (cycles charged by the cost model,
 * link time in the migration model); adapters supply a wall clock when the
 * user asks for `--clock real`.
 */
export interface Clock {
  /** Current time in nanoseconds. */
  nowNs(): number;
}

export class VirtualClock implements Clock {
  private ns = 0;
  nowNs(): number {
    return this.ns;
  }
  advanceNs(ns: number): void {
    this.ns += ns;
  }
}
