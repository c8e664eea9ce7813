import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { AutoConverge } from './auto-converge.ts';

const MS = 1e6;
const PAGE = 4096;

describe('auto-converge (migration_trigger_throttle, mig_throttle_guest_down)', () => {
  it('throttles at 20% after the second hot period, then +10 every second hot period, capped at 99', () => {
    const ac = new AutoConverge(PAGE);
    ac.onSync(0, 0, 0); // setup sync: the period starts
    // Each period: 1001 ms, 1000 pages sent, 600 pages newly dirty (600 > 1000 × 50%: hot).
    const pcts: number[] = [];
    let sent = 0;
    for (let p = 1; p <= 40; p++) {
      sent += 1000 * PAGE;
      ac.onSync(p * 1001 * MS, 600, sent);
      pcts.push(ac.pct);
    }
    // Written out by hand: hot periods 2, 4, 6, … raise it.
    assert.deepEqual(pcts.slice(0, 8), [0, 20, 20, 30, 30, 40, 40, 50]);
    assert.equal(pcts[39], 99, 'max-cpu-throttle caps it');
    assert.equal(ac.runFraction, 0.01);
  });

  it('a calm period (dirty ≤ half of what was sent) does not count; the count is not reset by it', () => {
    const ac = new AutoConverge(PAGE);
    ac.onSync(0, 0, 0);
    ac.onSync(1001 * MS, 600, 1000 * PAGE); // hot: count 1
    ac.onSync(2002 * MS, 500, 2000 * PAGE); // exactly half: not more than the threshold
    assert.equal(ac.pct, 0);
    ac.onSync(3003 * MS, 501, 3000 * PAGE); // hot: count 2 ⇒ throttle
    assert.equal(ac.pct, 20);
  });

  it('syncs inside one second accumulate into the period; none is judged before a second has passed', () => {
    const ac = new AutoConverge(PAGE);
    ac.onSync(0, 0, 0);
    // Ten syncs 100 ms apart, 100 dirty pages each: the period closes only at the sync after 1000 ms.
    for (let i = 1; i <= 10; i++) ac.onSync(i * 100 * MS, 100, i * 150 * PAGE);
    // At 1000 ms exactly the period is not over (QEMU: end_time > last + 1000).
    ac.onSync(1100 * MS, 100, 1650 * PAGE); // period: 1100 dirty vs 1650 sent × 0.5 = 825: hot (count 1)
    ac.onSync(2200 * MS, 0, 1700 * PAGE); // the next period: nothing dirtied, so calm
    assert.equal(ac.pct, 0);
    ac.onSync(3300 * MS, 100, 1800 * PAGE); // 100 dirty vs 100 × 0.5: hot ⇒ count 2 ⇒ throttle
    assert.equal(ac.pct, 20);
  });

  it('a sync exactly 1000 ms after the period began does not close it (end_time > last + 1000)', () => {
    const ac = new AutoConverge(PAGE);
    ac.onSync(0, 0, 0);
    ac.onSync(1000 * MS, 600, 1000 * PAGE); // not judged yet
    ac.onSync(2000 * MS, 600, 2000 * PAGE); // judged: one hot period only
    assert.equal(ac.pct, 0);
  });
});
