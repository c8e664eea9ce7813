/**
 * `compare --jobs N` runs its rows and baselines on worker threads; the
 * result must be the one `--jobs 1` computes on this thread, field for field.
 */
import { strict as assert } from 'node:assert';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { Progress } from '../output.ts';
import { compareResult } from './compare.ts';

const TRACE = fileURLToPath(new URL('../../../test/fixtures/sort-small.lackey.gz', import.meta.url));

describe('compare --jobs', { timeout: 120_000 }, () => {
  it('worker threads give the same result as one thread (every row, in --modes order)', async () => {
    const flags = { modes: 'shadow,ept-pml,ept-pml:every-exit,npt-wp,arm-wp:list,kvm-ring', cleanEvery: '20000', json: true };
    const one = await compareResult(TRACE, { ...flags, jobs: '1' }, new Progress(false));
    const two = await compareResult(TRACE, { ...flags, jobs: '2' }, new Progress(false));
    assert.deepEqual(two, one);
    assert.deepEqual(one.modes.map((m) => m.mode), ['shadow', 'ept-pml', 'ept-pml:every-exit', 'npt-wp', 'arm-wp:list', 'kvm-ring']);
    // The same trace dirties the same pages in every mode.
    assert.ok(one.modes.every((m) => m.dirty_total === one.modes[0]!.dirty_total && m.dirty_total > 0));
    // A variant is applied in the worker: PML flushed on every exit costs cycles on-demand does not.
    assert.notEqual(one.modes[2]!.cycles, one.modes[1]!.cycles);
  });

  it('a failure in a worker is reported as the user error it is', async () => {
    await assert.rejects(
      compareResult('/nonexistent/trace.gz', { modes: 'ept-wp,npt-wp', jobs: '2' }, new Progress(false)),
      (e: Error) => /cannot open trace/.test(e.message) && (e as { userFacing?: boolean }).userFacing === true,
    );
  });
});
