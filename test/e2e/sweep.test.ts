/**
 * `memvisor sweep` and `sweep merge` end to end through the CLI: a grid of
 * 2 × 2 values and 2 seeds gives 8 rows in a fixed order whose varied values
 * are the cartesian product (checked against a list written here); shards
 * 1/2 and 2/2 merged are the single run's files byte for byte; --jobs 1 and
 * --jobs 2 agree; a bad grid fails before anything runs, naming the key;
 * --resume runs only the missing points. Bounded in time, temp dirs only.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { CLI } from './cli-entry.ts';

const ROOT = resolve(import.meta.dirname, '../..');

function cli(args: string[], cwd: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...CLI, ...args], { cwd, encoding: 'utf8', timeout: 120_000, env: { ...process.env, MEMVISOR_DEBUG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const dir = mkdtempSync(join(tmpdir(), 'memvisor-sweep-'));
const grid = join(dir, 'grid.json');
writeFileSync(grid, JSON.stringify({
  command: 'trace',
  base: { workload: 'uniform', count: 5000, mem: '16M' },
  vary: { mode: ['ept-wp', 'npt-wp'], '--clean-every': [500, 2500] },
  seeds: [1, 2],
}));
const read = (d: string, f: string): string => readFileSync(join(dir, d, f), 'utf8');

describe('sweep', { timeout: 240_000 }, () => {
  it('8 points over 2 × 2 values and 2 seeds write 8 rows, first flag outermost, seeds innermost', () => {
    const r = cli(['sweep', grid, '--out', 'one', '--jobs', '2', '--json'], dir);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.points, 8);
    const csv = read('one', 'results.csv').trim().split('\n');
    assert.equal(csv[0]!.split(',').slice(0, 4).join(','), 'point,mode,clean-every,seed');
    const expected: string[] = [];
    for (const m of ['ept-wp', 'npt-wp']) for (const c of [500, 2500]) for (const s of [1, 2]) expected.push(`${expected.length},${m},${c},${s}`);
    assert.deepEqual(csv.slice(1).map((l) => l.split(',').slice(0, 4).join(',')), expected);
    const rows = read('one', 'results.jsonl').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(rows.length, 8);
    // Each row is what `trace --json` prints for that point: same records; 5000 records / 500 → 10 rounds.
    assert.equal(rows[0].result.records, 5000);
    assert.equal(rows[0].result.rounds.length, 10);
    assert.equal(rows[2].result.rounds.length, 2);
    // The seed reaches the workload: seeds 1 and 2 of one point dirty different pages.
    assert.notDeepEqual(rows[0].result.rounds, rows[1].result.rounds);
    const html = read('one', 'report.html');
    assert.match(html, /<svg/);
    assert.match(html, /clean-every=500/);
  });

  it('shards 1/2 and 2/2 merged equal the single run row for row; --jobs 1 gives the same rows', () => {
    assert.equal(cli(['sweep', grid, '--out', 's1', '--shard', '1/2', '--jobs', '1'], dir).code, 0);
    assert.equal(cli(['sweep', grid, '--out', 's2', '--shard', '2/2', '--jobs', '2'], dir).code, 0);
    assert.equal(read('s1', 'results.csv').trim().split('\n').length, 1 + 4);
    const m = cli(['sweep', 'merge', 's1', 's2', '--out', 'merged'], dir);
    assert.equal(m.code, 0, m.stderr);
    assert.equal(read('merged', 'results.csv'), read('one', 'results.csv'));
    assert.equal(read('merged', 'results.jsonl'), read('one', 'results.jsonl'));
    const missing = cli(['sweep', 'merge', 's1', '--out', 'partial'], dir);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /4 of 8 points missing \(1, 3, 5, 7\)/);
  });

  it('--resume runs only the points an interrupted sweep did not finish', () => {
    assert.equal(cli(['sweep', grid, '--out', 'cut', '--jobs', '1'], dir).code, 0);
    const lines = read('cut', 'results.jsonl').trim().split('\n');
    writeFileSync(join(dir, 'cut', 'results.jsonl'), `${lines.slice(0, 3).join('\n')}\n${lines[3]!.slice(0, 20)}`);
    const again = cli(['sweep', grid, '--out', 'cut'], dir);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already holds 3 results.*--resume/);
    const r = cli(['sweep', grid, '--out', 'cut', '--resume', '--json'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).ran, 5);
    assert.equal(read('cut', 'results.jsonl'), read('one', 'results.jsonl'));
  });

  it('a bad grid fails before anything runs, naming the key', () => {
    const cases: [object, RegExp][] = [
      [{ command: 'trac', vary: { mode: ['ept-wp'] } }, /command: expected one of migrate, trace, compare, access/],
      [{ command: 'trace', base: { workload: 'uniform' }, vary: { modee: ['ept-wp'] } }, /vary\.modee: trace has no flag --modee/],
      [{ command: 'trace', base: { workload: 'uniform' }, vary: {} }, /vary: empty/],
      [{ command: 'trace', base: { workload: 'uniform' }, vary: { mode: [] } }, /vary\.mode: expected a non-empty list/],
      [{ command: 'trace', base: { workload: 'uniform' }, vary: { mode: ['ept-wp', 'ept-xx'] } }, /point 1 \(mode=ept-xx\): --mode: unknown value 'ept-xx'/],
      [{ command: 'migrate', base: { json: true }, vary: { policy: ['xen'] } }, /base\.json: a sweep sets --json itself/],
      [{ command: 'migrate', vary: { bandwidth: [100, 'fast'] } }, /point 1 \(bandwidth=fast\): --bandwidth: expected a number/],
    ];
    for (const [i, [g, re]] of cases.entries()) {
      writeFileSync(join(dir, `bad${i}.json`), JSON.stringify(g));
      const r = cli(['sweep', `bad${i}.json`, '--out', `bad${i}`], dir);
      assert.equal(r.code, 1, `case ${i}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1);
      assert.equal(existsSync(join(dir, `bad${i}`)), false, `case ${i} created its output directory`);
    }
  });
});
