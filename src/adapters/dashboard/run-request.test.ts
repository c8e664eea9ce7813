import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import type { RunConfig } from './guest-session.ts';
import { defaultCleanEvery, parseMigrateRequest, parseRunRequest, parseWalkRequest, RequestError } from './run-request.ts';

const defaults: RunConfig = { mode: 'ept-pml', workload: 'hotspot', memBytes: 1 << 28, vcpus: 1, dirtyRate: 20000, cleanEvery: 5000, seed: 1, addressing: 'identity' };

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
    assert.equal(parseRunRequest({ addressing: 'paged' }, defaults).addressing, 'paged');
    // A caller's defaults without addressing (a RunConfig from before it existed) mean identity.
    const { addressing: _, ...old } = defaults;
    assert.equal(parseRunRequest({}, old).addressing, 'identity');
  });

  it('bad fields are RequestErrors naming the field', () => {
    const bad: [unknown, RegExp][] = [
      [{ mode: 'nope' }, /^mode: unknown value "nope"/],
      [{ workload: 3 }, /^workload/],
      [{ dirtyRate: 0 }, /^dirtyRate/],
      [{ dirtyRate: 1.5 }, /^dirtyRate/],
      [{ memBytes: 5000 }, /^memBytes: 5000 is not a multiple of 4 KiB/],
      [{ memBytes: 8 * 1024 ** 3 }, /^memBytes/],
      [{ addressing: 'virtual' }, /^addressing: unknown value "virtual"/],
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

  it('walk: an address (hex or decimal) or a gfn, an access, cold; bad ones refused naming the field', () => {
    // PERM_R = 1, PERM_W = 2, PERM_X = 4 (p2m-type.ts).
    assert.deepEqual(parseWalkRequest({ address: '0x7f_0000_1008' }), { vcpu: 0, address: 0x7f00001008, gfn: null, need: 1, cold: false });
    assert.deepEqual(parseWalkRequest({ address: 4096, vcpu: 2, access: 'write', cold: true }), { vcpu: 2, address: 4096, gfn: null, need: 2, cold: true });
    assert.deepEqual(parseWalkRequest({ gfn: 17, access: 'fetch' }), { vcpu: 0, address: null, gfn: 17, need: 4, cold: false });
    const bad: [unknown, RegExp][] = [
      [{}, /^give an address/],
      [{ address: '0x1_0000_0000_0000' }, /^address: expected a 48-bit address/],
      [{ address: '-5' }, /^address/],
      [{ address: '0x10', access: 'rw' }, /^access: unknown value/],
      [{ address: '0x10', cold: 'yes' }, /^cold: expected true or false/],
      [{ gfn: -1 }, /^gfn/],
      [{ address: '0x10', vcpu: 64 }, /^vcpu/],
    ];
    for (const [body, re] of bad) assert.throws(() => parseWalkRequest(body), (e: Error) => e instanceof RequestError && re.test(e.message), JSON.stringify(body));
  });
});
