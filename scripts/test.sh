#!/usr/bin/env bash
# Runs every unit test (next to its code) and every e2e test (test/e2e) with node:test.
# Node 20 does not expand globs for --test, so find lists the files.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find src test -name '*.test.ts' | sort)
exec node --import tsx --test --test-concurrency=2 --test-timeout=240000 "${files[@]}"
