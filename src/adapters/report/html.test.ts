/** Chart pieces of the HTML reports: the axis maximum and the bars' tooltips. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { barChart, niceMax } from './html.ts';

test('niceMax: the axis ends close above the largest value (262,144 pages → 300k, not 500k)', () => {
  assert.equal(niceMax(262_144), 300_000);
  assert.equal(niceMax(860), 1000);
  assert.equal(niceMax(1000), 1000);
  assert.equal(niceMax(1001), 1200);
  assert.equal(niceMax(0.3), 0.3);
  assert.equal(niceMax(7), 8);
  assert.equal(niceMax(0), 1);
  for (const v of [1, 3, 17, 99, 123_456, 999_999, 2.5e9]) {
    const m = niceMax(v);
    assert.ok(m >= v && m <= v * 1.25, `${v} → ${m}`);
  }
});

test('barChart: a page count reads "860 pages" in its tooltip, a fraction keeps two decimals', () => {
  const svg = barChart('Pages per round', 'pages', ['0', '1'], [{ name: 'dirty', color: '#000', values: [860, 262_144] }]);
  assert.match(svg, /<title>dirty, round 0: 860 pages<\/title>/);
  assert.match(svg, /<title>dirty, round 1: 262,144 pages<\/title>/);
  assert.match(svg, />300k</, 'top tick');
  assert.doesNotMatch(svg, />500k</);
  const ms = barChart('Time', 'ms', ['0'], [{ name: 'live', color: '#000', values: [12.345] }]);
  assert.match(ms, /<title>live, round 0: 12.35 ms<\/title>/);
});
