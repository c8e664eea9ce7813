/**
 * The modelled link of `--clock virtual`: a pipe of fixed bandwidth and
 * one-way latency. Sending `b` bytes takes b / bandwidth; a round ends when
 * its last byte lands, `latency` after it left: duration = bytes/bw + latency.
 * The guest runs for exactly that long, so a seed reproduces a run.
 * Units: bytes per second, nanoseconds.
 */
export interface LinkModel {
  readonly bandwidthBytesPerSec: number;
  readonly latencyNs: number;
}

const MiB = 1024 * 1024;

export function linkModel(bandwidthMiBps: number, latencyMs = 0): LinkModel {
  if (!(bandwidthMiBps > 0)) throw new RangeError(`bandwidth must be > 0 MiB/s, got ${bandwidthMiBps}`);
  if (!(latencyMs >= 0)) throw new RangeError(`latency must be ≥ 0 ms, got ${latencyMs}`);
  return { bandwidthBytesPerSec: bandwidthMiBps * MiB, latencyNs: latencyMs * 1e6 };
}

/** Nanoseconds to push `bytes` through at `rateBytesPerSec`. */
export function transferNs(bytes: number, rateBytesPerSec: number): number {
  return rateBytesPerSec === Infinity ? 0 : (bytes / rateBytesPerSec) * 1e9;
}
