/**
 * `memvisor access` as an outside test would run it: the JSON contract
 * ({mode, events: [{vcpu, gfn, offset, access}], ...}, events in the order the
 * guest raised them), write and exec listeners, 1 and 4 vCPUs, and one-line
 * errors. Bounded in time.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CLI, ROOT } from './cli-entry.ts';


function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, MEMVISOR_DEBUG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Ev { vcpu: number; gfn: number; offset: number; access: string }

describe('memvisor access CLI contract', { timeout: 120_000 }, () => {
  for (const vcpus of ['1', '4']) {
    it(`access --mode write --workload uniform --json, ${vcpus} vCPU(s): one event per first-written page, in order`, () => {
      const r = cli(['access', '--mode', 'write', '--workload', 'uniform', '--mem', '1M', '--count', '3000', '--seed', '7', '--vcpus', vcpus, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const o = JSON.parse(r.stdout);
      assert.equal(o.mode, 'write');
      assert.ok(Array.isArray(o.events));
      for (const e of o.events as Ev[]) {
        assert.deepEqual(Object.keys(e).slice(0, 4), ['vcpu', 'gfn', 'offset', 'access']);
        assert.ok(Number.isInteger(e.vcpu) && e.vcpu >= 0 && e.vcpu < Number(vcpus));
        assert.ok(Number.isInteger(e.gfn) && e.gfn >= 0 && e.gfn < o.max_gpfn, 'gfn max_gpfn itself is not restricted');
        assert.ok(Number.isInteger(e.offset) && e.offset >= 0 && e.offset < 4096);
        assert.equal(e.access, 'rw-', 'VMX reports a write as read+write');
      }
      // 256 pages, 3000 uniform writes: every page of 0..254 is written, each raises exactly one event.
      const gfns = (o.events as Ev[]).map((e) => e.gfn);
      assert.equal(new Set(gfns).size, gfns.length, 'one event per page');
      assert.equal(gfns.length, 255);
      assert.equal(o.counts.total, 255);
      assert.equal(o.ring.requests, 255);
      assert.equal(o.ring.responses, 255);
      assert.equal(o.records, 3000);
      if (vcpus === '4') assert.equal(new Set((o.events as Ev[]).map((e) => e.vcpu)).size, 4);
    });
  }

  it('events are in the order the guest raised them: the same run twice gives the same list; a 1-vCPU run matches the workload order', () => {
    const a = JSON.parse(cli(['access', '--mode', 'write', '--workload', 'uniform', '--mem', '256K', '--count', '400', '--seed', '3', '--json']).stdout);
    const b = JSON.parse(cli(['access', '--mode', 'write', '--workload', 'uniform', '--mem', '256K', '--count', '400', '--seed', '3', '--vcpus', '4', '--json']).stdout);
    // The stream is the same whatever the vCPU count, so the first-write order is too.
    assert.deepEqual(a.events.map((e: Ev) => [e.gfn, e.offset]), b.events.map((e: Ev) => [e.gfn, e.offset]));
    assert.ok(a.events.length > 10);
  });

  it('access --mode exec on a write-only workload raises nothing', () => {
    const r = cli(['access', '--mode', 'exec', '--workload', 'uniform', '--mem', '1M', '--count', '500', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.equal(o.mode, 'exec');
    assert.deepEqual(o.events, []);
  });

  it('with --dirty-mode ept-wp the first write of a page raises its event after log-dirty has reset the access (Xen behaviour 16)', () => {
    const r = cli(['access', '--mode', 'write', '--workload', 'uniform', '--mem', '256K', '--count', '2000', '--dirty-mode', 'ept-wp', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.equal(o.dirty_mode, 'ept-wp');
    // 64 pages: 0..62 raise one event each before the log-dirty fault and one after it; page 63 (max_gpfn) one.
    assert.equal(o.events.length, 2 * 63 + 1);
  });

  it('shadow mode (--dirty-mode shadow, paged): a real trace under exec raises the same events, in the same order, as under HAP', () => {
    const trace = join(ROOT, 'test/fixtures/sort-small.lackey.gz');
    const base = ['access', '--mode', 'exec', '--trace', trace, '--addressing', 'paged', '--mem', '64M', '--json'];
    const hap = cli(base);
    const shadow = cli([...base, '--dirty-mode', 'shadow']);
    assert.equal(hap.code, 0, hap.stderr);
    assert.equal(shadow.code, 0, shadow.stderr);
    const h = JSON.parse(hap.stdout);
    const s = JSON.parse(shadow.stdout);
    assert.equal(s.dirty_mode, 'shadow');
    assert.ok(s.events.length > 20, 'instruction pages are fetched');
    const key = (e: Ev) => `${e.vcpu}:${e.gfn}:${e.offset}:${e.access}`;
    assert.deepEqual(s.events.map(key), h.events.map(key));
  });

  it('bad input: one line, non-zero exit, no stack', () => {
    for (const args of [
      ['access', '--mode', 'read', '--workload', 'uniform'],
      ['access', '--workload', 'uniform'],
      ['access', '--mode', 'write'],
      ['access', '--mode', 'write', '--workload', 'uniform', '--mem', '12Q'],
      ['access', '--mode', 'write', '--workload', 'uniform', '--dirty-mode', 'nope'],
    ]) {
      const r = cli(args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^memvisor: /);
      assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/);
    }
  });
});
