/** trace and compare reports: self-contained HTML whose charts and tables carry what --json prints. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Xoshiro128 } from '../../core/rng.ts';
import { createGuest } from '../../core/runner/guest.ts';
import { replay, totalsOf } from '../../core/runner/replay.ts';
import { createSyntheticWorkload } from '../../core/workload/synthetic.ts';
import { renderCompareReport, renderTraceReport } from './trace-report.ts';

async function run(mode: string, cleanEvery: number) {
  const guest = createGuest({ memBytes: 64 * 1024 * 1024, vcpus: 2, mode, addressing: 'identity', pageSize: '4k' });
  const source = createSyntheticWorkload('hotspot', { pageCount: 16384, rng: new Xoshiro128(4), count: 20_000 });
  const r = await replay(guest, source, { cleanEvery });
  return { mode, records: r.records, rounds: r.rounds, totals: { ...totalsOf(r.rounds), tracking_bytes: guest.mode!.trackingBytes(), host_bytes: guest.domain.hostBytes } };
}

function selfContained(html: string): void {
  assert.match(html, /^<!doctype html>/);
  assert.doesNotMatch(html, /<script|src=|href=|@import|url\(/);
}

test('trace report: dirty, exits by reason and cycles per round, the table, the source escaped', async () => {
  const r = await run('ept-pml', 2000);
  const html = renderTraceReport(r, { source: 'a <b>.lackey', cleanEvery: 2000 });
  selfContained(html);
  assert.equal((html.match(/<svg /g) ?? []).length, 3);
  assert.match(html, /a &lt;b&gt;\.lackey/);
  for (const reason of Object.keys(r.totals.exits)) assert.ok(html.includes(reason), reason);
  // One bar per round in the dirty chart, with the value in its tooltip.
  assert.equal((html.match(/<title>dirty, round \d+: /g) ?? []).length, r.rounds.length);
  assert.ok(html.includes(`<td>${r.totals.dirty.toLocaleString('en-US')}</td>`), 'totals row');
});

test('trace report: a long run keeps the table short and says so', async () => {
  const r = await run('ept-wp', 20);
  assert.ok(r.rounds.length > 400);
  const html = renderTraceReport(r, { source: 'workload hotspot', cleanEvery: 20 });
  assert.match(html, new RegExp(`The first 400 of ${r.rounds.length} rounds`));
  assert.equal((html.match(/<tr( class="[a-z]+")?><td>/g) ?? []).length, 401, '400 rounds + the total');
});

test('compare report: one bar group per mode in every chart, and the table', async () => {
  const modes = ['ept-wp', 'ept-pml', 'kvm-ring', 'shadow'];
  const runs = await Promise.all(modes.map((m) => run(m, 5000)));
  const html = renderCompareReport({
    source: 'workload hotspot',
    records: runs[0]!.records,
    clean_every: 5000,
    modes: runs.map((x) => ({
      mode: x.mode, rounds: x.rounds.length, dirty_total: x.totals.dirty, exits: x.totals.exits,
      tracking_cycles_per_million_records: 1000, harvest_cycles: x.totals.harvest_cycles, tracking_bytes: x.totals.tracking_bytes,
    })),
  });
  selfContained(html);
  assert.equal((html.match(/<svg /g) ?? []).length, 4);
  for (const m of modes) assert.ok(html.includes(`<title>tracking, mode ${m}: `), m);
  assert.ok(html.includes('shadow_pf') && html.includes('dirty_ring_full') === runs.some((x) => 'dirty_ring_full' in x.totals.exits));
});
