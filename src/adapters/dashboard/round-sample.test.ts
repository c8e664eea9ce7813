import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { STAT_ACCESSES, STAT_COUNT, STAT_CYCLES, STAT_STORES } from '../../core/mmu/mmu-stats.ts';
import { EXIT_REASON_COUNT, ExitReason } from '../../core/vm-exit.ts';
import { CounterDeltas, sseFrame } from './round-sample.ts';

describe('round sample', () => {
  it('CounterDeltas returns each round its share, exits by contract name, zero reasons left out', () => {
    const stats = new Float64Array(STAT_COUNT);
    const exits = new Float64Array(EXIT_REASON_COUNT);
    stats[STAT_ACCESSES] = 10;
    exits[ExitReason.EptViolation] = 3;
    const d = new CounterDeltas(stats, exits);
    stats[STAT_ACCESSES] = 110;
    stats[STAT_STORES] = 40;
    stats[STAT_CYCLES] = 5000;
    exits[ExitReason.EptViolation] = 5;
    exits[ExitReason.PmlFull] = 1;
    assert.deepEqual(d.take(stats, exits), { accesses: 100, stores: 40, cycles: 5000, exits: { ept_violation: 2, pml_full: 1 } });
    stats[STAT_ACCESSES] = 111;
    assert.deepEqual(d.take(stats, exits), { accesses: 1, stores: 0, cycles: 0, exits: {} });
  });

  it('sseFrame: one event line, one data line of JSON, a blank line', () => {
    const f = sseFrame('round', { a: 'x\ny', n: 1 });
    assert.equal(f, 'event: round\ndata: {"a":"x\\ny","n":1}\n\n');
    assert.equal(f.split('\n').length, 4);
    assert.throws(() => sseFrame('bad\nname', {}), RangeError);
  });
});
