/**
 * `memvisor dirty-rate` through the CLI: on a uniform workload each method
 * is checked against the distinct-pages law computed here,
 * M(1 − e^(−D·S/M))/S — sample within 15% (its 512 pages per GiB are a
 * statistical estimate), bitmap within 1% (it counts every distinct page).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';

import { CLI, ROOT } from './cli-entry.ts';

function dirtyRate(args: string[]): { code: number | null; json: Record<string, number | string>; err: string } {
  const r = spawnSync(process.execPath, [...CLI, 'dirty-rate', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, json: r.status === 0 && args.includes('--json') ? JSON.parse(r.stdout) : {}, err: r.stderr };
}

const M = 131072; // 512 MiB
const D = 100_000;
const S = 2;
const law = (M * (1 - Math.exp((-D * S) / M))) / S;
const GUEST = ['--workload', 'uniform', '--mem', '512M', '--dirty-rate', String(D), '--seconds', String(S), '--json'];

describe('memvisor dirty-rate', { timeout: 300_000 }, () => {
  it('sample: 512 pages per GiB hashed before and after, within 15% of the distinct-pages rate', () => {
    for (const seed of ['1', '7']) {
      const { code, json, err } = dirtyRate([...GUEST, '--method', 'sample', '--seed', seed]);
      assert.equal(code, 0, err);
      assert.equal(json['method'], 'sample');
      assert.equal(json['seconds'], S);
      assert.equal(json['sample_pages'], 256, '512 per GiB of a 512 MiB guest');
      const got = json['dirty_rate_pages_s'] as number;
      assert.ok(Math.abs(got - law) / law < 0.15, `seed ${seed}: sample ${got.toFixed(0)} pages/s, law ${law.toFixed(0)}`);
      assert.ok(Math.abs((json['dirty_rate_mib_s'] as number) - (got * 4096) / 1048576) < 1e-9);
    }
  });

  it('bitmap: one CLEAN counts the distinct pages (within 1%)', () => {
    const { code, json, err } = dirtyRate([...GUEST, '--method', 'bitmap']);
    assert.equal(code, 0, err);
    const got = json['dirty_rate_pages_s'] as number;
    assert.ok(Math.abs(got - law) / law < 0.01, `bitmap ${got.toFixed(0)}, law ${law.toFixed(0)}`);
  });

  it('ring: counts dirty-ring entries (at least the distinct pages, at most every write); other modes are refused', () => {
    const { code, json, err } = dirtyRate(['--workload', 'uniform', '--mem', '64M', '--dirty-rate', '20000', '--seconds', '1', '--json', '--method', 'ring']);
    assert.equal(code, 0, err);
    assert.equal(json['mode'], 'kvm-ring');
    const m = 16384;
    const distinct = m * (1 - Math.exp(-20000 / m));
    const got = json['dirty_rate_pages_s'] as number;
    assert.ok(got >= distinct * 0.99 && got <= 20000, `ring ${got}, distinct ${distinct.toFixed(0)}, writes 20000`);
    const bad = dirtyRate(['--workload', 'uniform', '--mem', '64M', '--seconds', '1', '--method', 'ring', '--mode', 'ept-pml']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /^memvisor: --method ring .*kvm-ring/);
    assert.equal(bad.err.trim().split('\n').length, 1);
  });

  it('--seconds is required', () => {
    const r = dirtyRate(['--workload', 'uniform', '--mem', '64M']);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /--seconds/);
  });
});
