/**
 * The dashboard in a real browser: Debian's chromium driven by
 * playwright-core (no browser download). Loads the page, starts a run from
 * its controls, waits until the dirty-pages chart and the heatmap have drawn
 * (canvas pixels read back, not blank), starts a live migration and waits
 * for its verdict, and leaves a screenshot in a temp dir. Skips when
 * /usr/bin/chromium is absent. Bounded in time.
 */
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startDashboardProcess } from './dashboard-process.ts';

/** Debian's chromium; MEMVISOR_CHROMIUM points elsewhere. */
const CHROMIUM = process.env.MEMVISOR_CHROMIUM ?? '/usr/bin/chromium';
/**
 * Runs in the page (a string: tsx names functions with a helper the page
 * does not have): true once 3 rounds are in, the dirty chart holds > 50
 * bar-coloured pixels and the heatmap > 100 pixels coloured other than "never".
 */
const DRAWN = `(() => {
  const count = (id, match) => {
    const cv = document.getElementById(id);
    const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (match(d[i], d[i + 1], d[i + 2], d[i + 3])) n++;
    return n;
  };
  const near = (r, g, b, hex) => Math.abs(r - parseInt(hex.slice(1, 3), 16)) < 8 && Math.abs(g - parseInt(hex.slice(3, 5), 16)) < 8 && Math.abs(b - parseInt(hex.slice(5, 7), 16)) < 8;
  const bars = count('chartDirty', (r, g, b, a) => a === 255 && near(r, g, b, '#d9822b'));
  const heat = document.getElementById('heatmap');
  const pages = heat.width > 1 ? count('heatmap', (r, g, b, a) => a === 255 && !near(r, g, b, '#1b1f24')) : 0;
  return Number(document.getElementById('kRound').textContent) >= 3 && bars > 50 && pages > 100;
})()`;
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

test('dashboard page in chromium: run, charts and heatmap drawn, live migration verified, screenshot', { timeout: 45_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} is not installed (apt-get install -y chromium)`);
    return;
  }
  const { chromium } = await import('playwright-core');
  const dash = await startDashboardProcess(['--no-start', '--mem', '64M']);
  const profile = mkdtempSync(join(tmpdir(), 'memvisor-chromium-'));
  const shots = mkdtempSync(join(tmpdir(), 'memvisor-dashboard-shot-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 1000 }, timeout: 20_000,
  });
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(dash.url, { timeout: 10_000 });
    await page.waitForSelector('#mode option[value="ept-wp"]', { state: 'attached', timeout: 10_000 });
    assert.equal(await page.getAttribute('body', 'data-state'), 'idle');

    await page.selectOption('#mode', 'ept-wp');
    await page.selectOption('#workload', 'hotspot');
    await page.fill('#dirtyRate', '40000');
    await page.click('#start');
    await page.waitForFunction("document.body.dataset.state === 'running'", null, { timeout: 10_000 });

    // Non-blank: the dirty chart holds bar-coloured pixels; the heatmap holds pages coloured other than "never".
    await page.waitForFunction(DRAWN, null, { timeout: 15_000, polling: 200 });
    assert.equal(await page.evaluate("(() => { const c = document.getElementById('heatmap'); return c.width + 'x' + c.height; })()"), '128x128');
    assert.ok((await page.textContent('#exitLegend'))!.includes('ept_'), 'exit reasons are charted');

    await page.click('#migrate');
    await page.waitForFunction("/verified|failed/.test(document.getElementById('migSummary').textContent)", null, { timeout: 20_000 });
    const summary = (await page.textContent('#migSummary'))!;
    assert.match(summary, /verified/);
    assert.doesNotMatch(summary, /NOT verified|failed/);

    const shot = join(shots, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(statSync(shot).size > 10_000, 'screenshot written');
    t.diagnostic(`screenshot: ${shot}`);
    assert.deepEqual(errors, [], 'no uncaught errors in the page');
  } finally {
    await ctx.close();
    rmSync(profile, { recursive: true, force: true });
    await dash.stop();
  }
});
