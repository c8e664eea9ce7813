/**
 * `npm run fuzz -- --minutes N`: runs the fuzz properties (test/fuzz/properties.ts)
 * for N minutes, each in turn with fresh seeds. A failure is shrunk, printed,
 * and kept as a regression case (test/fuzz/regressions/<property>-<seed>.json:
 * seed and shrink path, which `npm test` replays).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { lackeyNoiseProperty, lackeyValidProperty, streamProperty } from '../test/fuzz/properties.ts';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '1' } } });
const minutes = Number(values.minutes);
if (!(minutes > 0)) {
  process.stderr.write(`fuzz: --minutes expects a number > 0, got '${values.minutes}'\n`);
  process.exit(1);
}
const PROPS = { stream: streamProperty, 'lackey-valid': lackeyValidProperty, 'lackey-noise': lackeyNoiseProperty } as const;
const REG_DIR = join(import.meta.dirname, '../test/fuzz/regressions');
const end = Date.now() + minutes * 60_000;
const runs: Record<string, number> = { stream: 0, 'lackey-valid': 0, 'lackey-noise': 0 };
let findings = 0;
while (Date.now() < end) {
  for (const name of Object.keys(PROPS) as (keyof typeof PROPS)[]) {
    const seed = (Math.random() * 2 ** 31) | 0;
    const numRuns = name === 'stream' ? 200 : 100;
    const r = await fc.check(PROPS[name](), { seed, numRuns });
    runs[name]! += r.numRuns;
    if (r.failed) {
      findings++;
      const file = join(REG_DIR, `${name}-${seed}.json`);
      writeFileSync(file, `${JSON.stringify({ property: name, seed, path: r.counterexamplePath, error: String(r.errorInstance).split('\n')[0] }, null, 2)}\n`);
      process.stderr.write(`FINDING ${name} seed ${seed}: ${String(r.errorInstance).split('\n')[0]}\n  counterexample: ${fc.stringify(r.counterexample).slice(0, 400)}\n  kept as ${file}\n`);
    }
    if (Date.now() >= end) break;
  }
}
process.stdout.write(`fuzzed ${minutes} min: ${Object.entries(runs).map(([k, v]) => `${k} ${v} cases`).join(', ')}; ${findings} findings\n`);
process.exitCode = findings > 0 ? 1 : 0;
