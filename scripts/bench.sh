#!/usr/bin/env bash
# Runs every benchmark under bench/ in turn (figures go in BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
for b in walker logdirty rearm lackey migration; do
  echo "== bench/$b.bench.ts"
  node --import tsx "bench/$b.bench.ts"
  echo
done
