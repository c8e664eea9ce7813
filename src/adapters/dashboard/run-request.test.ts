import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import type { RunConfig } from './guest-session.ts';
import { defaultCleanEvery, parseMigrateRequest, parseRunRequest, RequestError } from './run-request.ts';

const defaults: RunConfig = { mode: 'ept-pml', workload: 'hotspot', memBytes: 1 << 28, vcpus: 1, dirtyRate: 20000, cleanEvery: 5000, seed: 1 };

describe('dashboard requests', () => {
  it('an empty body is the defaults', () => {
    assert.deepEqual(parseRunRequest({}, defaults), defaults);
    assert.deepEqual(parseRunRequest(undefined, defaults), defaults);
  });

  it('a new dirty rate with no cleanEvery keeps rounds a quarter of a virtual second', () => {
    const c = parseRunRequest({ mode: 'kvm-ring', workload: 'uniform', dirtyRate: 100000 }, defaults);
    assert.deepEqual(c, { ...defaults, mode: 'kvm-ring', workload: 'uniform', dirtyRate: 100000, cleanEvery: 25000 });
    assert.equal(defaultCleanEvery(2), 1);
    // An explicit --clean-every stays while the rate is the default one.
    assert.equal(parseRunRequest({}, { ...defaults, cleanEvery: 777 }, true).cleanEvery, 777);
    assert.equal(parseRunRequest({ cleanEvery: '1_000' }, defaults).cleanEvery, 1000);
  });

  it('bad fields are RequestErrors naming the field', () => {
    const bad: [unknown, RegExp][] = [
      [{ mode: 'nope' }, /^mode: unknown value "nope"/],
      [{ workload: 3 }, /^workload/],
      [{ dirtyRate: 0 }, /^dirtyRate/],
      [{ dirtyRate: 1.5 }, /^dirtyRate/],
      [{ memBytes: 5000 }, /^memBytes: 5000 is not a multiple of 4 KiB/],
      [{ memBytes: 8 * 1024 ** 3 }, /^memBytes/],
      [[1, 2], /JSON object/],
      ['text', /JSON object/],
    ];
    for (const [body, re] of bad) assert.throws(() => parseRunRequest(body, defaults), (e: Error) => e instanceof RequestError && re.test(e.message));
  });

  it('migrate: policy and link with defaults; bad ones refused', () => {
    assert.deepEqual(parseMigrateRequest({}), { policy: 'xen', bandwidthMiBps: 1000, latencyMs: 0.1 });
    assert.deepEqual(parseMigrateRequest({ policy: 'qemu', bandwidth: '250', latency: 0 }), { policy: 'qemu', bandwidthMiBps: 250, latencyMs: 0 });
    assert.throws(() => parseMigrateRequest({ policy: 'fast' }), RequestError);
    assert.throws(() => parseMigrateRequest({ bandwidth: 1 }), /bandwidth/);
  });
});
