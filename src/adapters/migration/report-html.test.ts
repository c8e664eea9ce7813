import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderReport } from './report-html.ts';
import { migrate } from '../../core/migration/sender.ts';
import { FakeGuest } from '../../core/migration/testing/fake-guest.ts';
import { LoopbackTransport } from '../../core/migration/testing/loopback-transport.ts';
import { createPolicy } from '../../core/migration/policy/registry.ts';
import { linkModel } from '../../core/migration/link-model.ts';

test('the report is one self-contained HTML file with charts, split, policy and digests', async () => {
  const r = await migrate(new FakeGuest({ pageCount: 4096, dirtyRatePagesPerSec: 30_000, seed: 1 }), new LoopbackTransport(), {
    policy: createPolicy('qemu'), link: linkModel(64, 1),
  });
  const html = renderReport(r, { mode: 'ept-pml', workload: 'uniform <x>', dirtyRate: 30000 });
  assert.match(html, /^<!doctype html>/);
  assert.equal((html.match(/<svg /g) ?? []).length, 3);
  assert.doesNotMatch(html, /<script|src=|href=|@import|url\(/);
  assert.match(html, /VERIFIED/);
  assert.ok(html.includes(r.source_digest));
  assert.match(html, /downtime_limit_ms/);
  assert.match(html, /final dirty pages/);
  assert.match(html, /uniform &lt;x&gt;/);
});
