/**
 * `npm run soak -- --runs N [--modes m1,m2] [--first-seed S] [--json]`: N
 * seeded randomized migrations per dirty-tracking mode (test/soak/scenario.ts),
 * each checked for lost pages (every harvest against a content snapshot),
 * digest verification and destination == source. Prints runs per mode,
 * failures with the seed to replay, and wall time; exits 1 on any failure.
 */
import { parseArgs } from 'node:util';
import { passed, runScenario, SOAK_MODES, type ScenarioResult } from '../test/soak/scenario.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '20' },
    modes: { type: 'string' },
    'first-seed': { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs);
const first = Number(values['first-seed']);
if (!Number.isInteger(runs) || runs < 1) {
  process.stderr.write(`soak: --runs expects a positive integer, got '${values.runs}'\n`);
  process.exit(1);
}
const modes = values.modes ? values.modes.split(',') : [...SOAK_MODES];
for (const m of modes) {
  if (!(SOAK_MODES as readonly string[]).includes(m)) {
    process.stderr.write(`soak: unknown mode '${m}' (expected one of: ${SOAK_MODES.join(', ')})\n`);
    process.exit(1);
  }
}

const t0 = performance.now();
const perMode: Record<string, { runs: number; failures: number; rounds: number; harvests: number; lost_pages: number }> = {};
const failures: ScenarioResult[] = [];
for (const mode of modes) {
  const row = (perMode[mode] = { runs: 0, failures: 0, rounds: 0, harvests: 0, lost_pages: 0 });
  const tm = performance.now();
  for (let seed = first; seed < first + runs; seed++) {
    const r = await runScenario(mode, seed);
    row.runs++;
    row.rounds += r.rounds;
    row.harvests += r.harvests;
    row.lost_pages += r.lostPages;
    if (!passed(r)) {
      row.failures++;
      failures.push(r);
      process.stderr.write(`FAIL ${mode} seed ${seed}: ${r.error ?? `lost ${r.lostPages}, verified ${r.verified}, differing ${r.differingPages}`} (${r.setup})\n`);
    }
  }
  process.stderr.write(`${mode}: ${row.runs} runs, ${row.failures} failures, ${row.harvests} harvests checked, ${row.lost_pages} lost pages, ${((performance.now() - tm) / 1000).toFixed(1)} s\n`);
}
const wallS = (performance.now() - t0) / 1000;
if (values.json) process.stdout.write(`${JSON.stringify({ runs_per_mode: runs, first_seed: first, modes: perMode, failures, wall_s: wallS })}\n`);
else process.stdout.write(`${modes.length} modes × ${runs} runs: ${failures.length} failures, wall ${wallS.toFixed(1)} s\n`);
process.exitCode = failures.length > 0 ? 1 : 0;
