/**
 * The soak's slice in `npm test`: 10 seeded randomized migrations per
 * dirty-tracking mode (test/soak/scenario.ts): no harvest misses a page whose
 * bytes changed, every migration verifies, destination == source page by
 * page. The full run (`npm run soak -- --runs 1000`) is in RELIABILITY.md.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { passed, runScenario, SOAK_MODES } from './scenario.ts';

const RUNS = 10;
/** Seeds past the ones RELIABILITY.md's run used first, so the slice adds coverage. */
const FIRST_SEED = 100_001;

describe('soak slice: randomized migrations per mode, nothing lost', { timeout: 240_000 }, () => {
  for (const mode of SOAK_MODES) {
    it(`${mode}: ${RUNS} scenarios`, async () => {
      let harvests = 0;
      for (let seed = FIRST_SEED; seed < FIRST_SEED + RUNS; seed++) {
        const r = await runScenario(mode, seed);
        assert.ok(passed(r), `${mode} seed ${seed} (replay: npm run soak -- --modes ${mode} --first-seed ${seed} --runs 1): ${r.error ?? `lost ${r.lostPages}, verified ${r.verified}, differing ${r.differingPages}`} — ${r.setup}`);
        assert.ok(r.harvests >= 1, 'at least the stop-and-copy harvest was checked');
        harvests += r.harvests;
      }
      assert.ok(harvests >= RUNS * 2, `${harvests} harvests checked`);
    });
  }
});
