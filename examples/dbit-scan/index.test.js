// The dbit-scan mode against memvisor's dirty-mode contract (the suite every
// built-in mode passes), and what makes it dbit-scan: no write takes a VM exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dirtyModeContract } from 'memvisor/testing';
import { AccessBatch, AccessKind, Domain, ExitReason } from 'memvisor';
import plugin, { dbitScan } from './index.js';

dirtyModeContract(dbitScan);

test('dbit-scan: writes to populated 4K pages take no VM exit; CLEAN reports each written page once', () => {
  const dom = new Domain({ format: 'ept', memBytes: 16 << 20, vcpus: 2, populate: 'up-front' });
  const mode = dbitScan.create(dom, {});
  mode.enable();
  const b = new AccessBatch(3000);
  for (let k = 0; k < 3000; k++) b.push(k % 3 === 0 ? AccessKind.Load : AccessKind.Store, ((k * 7919) % 4096) * 4096 + 8, 8, k + 1);
  assert.equal(dom.run(b, 0, b.length), b.length);
  const exits = dom.totalExits();
  assert.equal(exits[ExitReason.EptViolation] + exits[ExitReason.EptMisconfig] + exits[ExitReason.PmlFull], 0);
  const written = new Set();
  for (let k = 0; k < 3000; k++) if (k % 3 !== 0) written.add((k * 7919) % 4096);
  assert.equal(mode.harvest(null).dirtyCount, written.size);
  assert.equal(mode.harvest(null).dirtyCount, 0, 'the scan cleared every D bit');
  mode.disable();
});

test('dbit-scan: the plugin registers the mode through the API it is given', () => {
  const seen = [];
  plugin({ registerMode: (e) => seen.push(e), registerPolicy: () => assert.fail('no policy') });
  assert.deepEqual(seen, [dbitScan]);
});
