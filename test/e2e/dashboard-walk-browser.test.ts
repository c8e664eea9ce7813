/**
 * The walk view in a real browser (Debian's chromium driven by playwright-core,
 * as dashboard-browser.test.ts): a paged guest runs, a click on a page of the
 * heatmap walks that page's gva cold, the step control fills the 5 × 5 figure
 * one reference at a time up to its 24 cells, and the walk right after it
 * (caches warm) shows cells answered by a cache. Skips when chromium is absent.
 */
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startDashboardProcess } from './dashboard-process.ts';

const CHROMIUM = process.env.MEMVISOR_CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
/** Page-side expressions (strings: tsx's helpers do not exist in the page). */
const CELLS = (kind: string): string => `document.querySelectorAll('#walkGrid td[data-kind="${kind}"]').length`;
/** Heatmap pixels a page was written in (coloured other than "never"), as canvas x, y; the first 40. */
const WRITTEN_PIXELS = `(() => {
  const cv = document.getElementById('heatmap');
  const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
  const out = [];
  for (let i = 0; i < d.length && out.length < 40; i += 4) {
    const never = Math.abs(d[i] - 0x1b) < 8 && Math.abs(d[i + 1] - 0x1f) < 8 && Math.abs(d[i + 2] - 0x24) < 8;
    if (!never) out.push([(i / 4) % cv.width, Math.floor(i / 4 / cv.width)]);
  }
  const b = cv.getBoundingClientRect();
  return { pixels: out, left: b.left, top: b.top, w: b.width / cv.width, h: b.height / cv.height };
})()`;

test('walk view in chromium: a heatmap page walked cold fills the 24 cells step by step; the next walk shows cache hits', { timeout: 60_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} is not installed (apt-get install -y chromium)`);
    return;
  }
  const { chromium } = await import('playwright-core');
  const dash = await startDashboardProcess(['--no-start', '--mem', '64M']);
  const profile = mkdtempSync(join(tmpdir(), 'memvisor-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 1400 }, timeout: 20_000,
  });
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(dash.url, { timeout: 10_000 });
    await page.waitForSelector('#mode option[value="arm-wp"]', { state: 'attached', timeout: 10_000 });
    // arm-wp: a CLEAN re-protects pages but leaves entries valid, so a read walks through (no lazy re-arm exit).
    await page.selectOption('#mode', 'arm-wp');
    await page.selectOption('#addressing', 'paged');
    await page.fill('#dirtyRate', '40000');
    await page.click('#start');
    await page.waitForFunction("Number(document.getElementById('kRound').textContent) >= 2 && document.getElementById('heatmap').width > 1", null, { timeout: 15_000, polling: 200 });
    await page.click('#stop');
    await page.waitForFunction("document.body.dataset.state === 'stopped'", null, { timeout: 10_000 });
    // Let the last round's heatmap frame arrive.
    await page.waitForTimeout(300);

    await page.check('#walkCold');
    const heat = await page.evaluate(WRITTEN_PIXELS) as { pixels: [number, number][]; left: number; top: number; w: number; h: number };
    assert.ok(heat.pixels.length > 0, 'written pages on the heatmap');
    // Written pages include the guest OS's page tables (not walkable as data): click until one walks.
    let walked = false;
    for (const [x, y] of heat.pixels) {
      await page.mouse.click(heat.left + (x + 0.5) * heat.w, heat.top + (y + 0.5) * heat.h);
      walked = await page.waitForFunction("document.getElementById('walkGrid').dataset.walk === '2-d'", null, { timeout: 1_000 }).then(() => true, () => false);
      if (walked) break;
    }
    assert.ok(walked, 'a heatmap page walked');
    assert.match(await page.inputValue('#walkAddr'), /^0x[0-9a-f]+$/);
    // Stepping: before the first reference nothing; three steps, three cells; the end, all 24.
    assert.equal(await page.evaluate(CELLS('ref')), 0);
    for (let k = 0; k < 3; k++) await page.click('#walkNext');
    assert.equal(await page.evaluate(CELLS('ref')), 3);
    await page.click('#walkAll');
    assert.equal(await page.evaluate(CELLS('ref')), 24);
    assert.equal(await page.evaluate(CELLS('data')), 1, 'the data cell holds the hpa');
    assert.match((await page.textContent('#walkOutcome'))!, /^24 memory references \(cold\); gva 0x[0-9a-f]+ → gpa 0x[0-9a-f]+ → hpa 0x[0-9a-f]+/);
    const shot = join(profile, '..', `memvisor-walk-${process.pid}.png`);
    await page.locator('section.walk').screenshot({ path: shot });
    t.diagnostic(`screenshot: ${shot}`);
    // An entry decoded on hover.
    await page.hover('#walkGrid td[data-kind="ref"].guest');
    assert.match((await page.textContent('#walkDetail'))!, /PML4E[\s\S]*entry 0x[0-9a-f]{16}[\s\S]*\bP\b/);

    // The next walk, right after the cold one: the caches it filled answer, fewer references.
    await page.click('#walkAgain');
    await page.waitForFunction("document.getElementById('walkStep').textContent.startsWith('0 /')", null, { timeout: 5_000 });
    await page.click('#walkAll');
    const skipped = await page.evaluate(CELLS('skip')) as number;
    const refs = await page.evaluate(CELLS('ref')) as number;
    assert.ok(skipped > 0, 'cells answered by a cache');
    assert.ok(refs < 24, `${refs} references`);
    assert.deepEqual(errors, [], 'no uncaught errors in the page');
  } finally {
    await ctx.close();
    rmSync(profile, { recursive: true, force: true });
    await dash.stop();
  }
});
