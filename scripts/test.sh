#!/usr/bin/env bash
# Runs every unit test (next to its code), every e2e test (test/e2e) and the
# examples' tests with node:test, on the TypeScript sources (tsx). The
# memvisor-source condition resolves `import 'memvisor'` (the examples) to
# src/ as well, so no test reads a dist/ that may be older than the sources;
# test/e2e/package.test.ts builds and packs dist/ itself. The timeout bounds each file
# (its tests carry their own bounds): the contract suite and the pack test take
# minutes on a loaded 2-core machine.
# Node 20 does not expand globs for --test, so find lists the files.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find src test examples \( -name '*.test.ts' -o -name '*.test.js' \) | sort)
exec node --conditions=memvisor-source --import tsx --test --test-concurrency=2 --test-timeout=900000 "${files[@]}"
