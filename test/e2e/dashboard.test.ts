/**
 * `memvisor dashboard --port 0` as a user's browser meets it, over
 * 127.0.0.1: the page and its module, the SSE stream of rounds, the binary
 * heatmap, the POST API (runs, refusals) and a live migration to a loopback
 * receiver charted round by round. Bounded in time.
 */
import { strict as assert } from 'node:assert';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { decodeHeatmap } from '../../src/adapters/dashboard/heatmap-frame.ts';
import { MAX_SSE_CLIENTS } from '../../src/adapters/dashboard/server.ts';
import { postJson, readEvents, startDashboardProcess, type DashboardProcess } from './dashboard-process.ts';

describe('memvisor dashboard (HTTP + SSE)', { timeout: 45_000 }, () => {
  let dash: DashboardProcess;
  before(async () => {
    dash = await startDashboardProcess(['--mem', '64M', '--dirty-rate', '40000', '--workload', 'hotspot', '--mode', 'ept-wp']);
  });
  after(async () => {
    const code = await dash?.stop();
    assert.equal(code, 0, `the dashboard exits cleanly on SIGTERM: ${dash?.stderr()}`);
  });

  it('prints its URL first, on 127.0.0.1 with the chosen port', () => {
    assert.match(dash.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.notEqual(new URL(dash.url).port, '0');
  });

  it('serves the page and its module', async () => {
    const page = await fetch(dash.url);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    const html = await page.text();
    assert.match(html, /memvisor dashboard/);
    assert.match(html, /<canvas id="heatmap"/);
    const js = await fetch(new URL('dashboard.js', dash.url));
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    assert.match(await js.text(), /EventSource/);
  });

  it('streams rounds over SSE, and the heatmap frame follows them', async () => {
    const events = await readEvents(dash.url, (s) => s.filter((e) => e.event === 'round').length >= 3, 15_000);
    assert.equal(events[0]!.event, 'state', 'a new client gets the state first');
    assert.equal(events[0]!.data.config.mode, 'ept-wp');
    const rounds = events.filter((e) => e.event === 'round').map((e) => e.data);
    for (let i = 1; i < rounds.length; i++) assert.equal(rounds[i].round, rounds[i - 1].round + 1);
    for (const r of rounds) {
      assert.equal(r.accesses, 10_000, 'a quarter of a virtual second at 40000 pages/s');
      assert.ok(r.dirty > 0 && r.dirty <= r.accesses);
      assert.ok(r.exits.ept_violation > 0 || r.exits.ept_misconfig > 0, JSON.stringify(r.exits));
      assert.ok(r.cycles > 0);
      assert.equal(r.page_count, 16384);
    }
    // A page that connects late gets the run's recent rounds first (its charts are not empty).
    const late = await readEvents(dash.url, (s) => s.some((e) => e.event === 'round'), 10_000);
    const firstLate = late.find((e) => e.event === 'round')!.data;
    assert.equal(firstLate.round, 1, 'history starts at the run\'s first round');
    const res = await fetch(new URL('api/heatmap', dash.url));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    const f = decodeHeatmap(new Uint8Array(await res.arrayBuffer()));
    assert.deepEqual([f.pageCount, f.width, f.height, f.pagesPerPixel], [16384, 128, 128, 1]);
    assert.ok(f.round >= rounds[rounds.length - 1].heat_round);
    const latest = f.ages.filter((a) => a === 1).length;
    assert.ok(latest > 0, 'some pages were dirtied in the latest round');
    assert.ok(f.ages.filter((a) => a !== 0).length >= latest);
  });

  it('POST /api/run starts a fresh run with the chosen mode; bad requests are refused with a reason', async () => {
    const ok = await postJson(dash.url, 'api/run', { mode: 'kvm-ring', workload: 'uniform', dirtyRate: 80000 });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.state, 'running');
    const run = ok.json.run;
    const events = await readEvents(dash.url, (s) => s.some((e) => e.event === 'round' && e.data.run === run && e.data.round >= 2), 15_000);
    const r = events.find((e) => e.event === 'round' && e.data.run === run)!.data;
    assert.equal(r.accesses, 20_000);
    // KVM on Intel runs with PML: memory populated up front, the CPU logs every first write (no EPT
    // violation) and the 512-entry buffer fills between exits.
    assert.ok(r.exits.pml_full > 0, 'kvm-ring logs through PML');
    assert.equal(r.exits.ept_violation ?? 0, 0, 'no write faults with PML on a populated guest');

    const bad = await postJson(dash.url, 'api/run', { mode: 'nope' });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /^mode: unknown value "nope"/);
    const form = await fetch(new URL('api/stop', dash.url), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1' });
    assert.equal(form.status, 415, 'a cross-site form post cannot drive the dashboard');
    const rebound = await new Promise<number>((res, rej) => {
      const u = new URL(dash.url);
      request({ host: u.hostname, port: u.port, path: '/api/state', headers: { host: 'evil.example:80' } }, (r) => {
        r.resume();
        res(r.statusCode ?? 0);
      }).on('error', rej).end();
    });
    assert.equal(rebound, 403, 'a foreign Host header is refused (DNS rebinding)');
  });

  it('migrates the running guest live to a loopback receiver, rounds streamed, digest verified', async () => {
    // Subscribe first (the state event proves it), then start the migration, so no round is missed.
    let started: ReturnType<typeof postJson> | null = null;
    const events = await readEvents(dash.url, (s) => {
      started ??= postJson(dash.url, 'api/migrate', { policy: 'xen', bandwidth: 500 });
      return s.some((e) => e.event === 'migration-done' || e.event === 'failure');
    }, 30_000);
    const st = await started!;
    assert.equal(st.status, 202, JSON.stringify(st.json));
    const failure = events.find((e) => e.event === 'failure');
    assert.equal(failure, undefined, failure?.data.message);
    const rounds = events.filter((e) => e.event === 'migration-round').map((e) => e.data);
    assert.ok(rounds.length >= 2, 'pre-copy rounds then stop-and-copy');
    assert.equal(rounds[0].round, 0);
    assert.equal(rounds[0].dirty, 16384, 'round 0 sends every page');
    assert.equal(rounds[rounds.length - 1].stop_and_copy, true);
    assert.ok(events.some((e) => e.event === 'heatmap'), 'the sender\'s CLEANs feed the heatmap');
    const done = events.find((e) => e.event === 'migration-done')!.data;
    assert.equal(done.verified, true);
    assert.equal(done.source_digest, done.dest_digest);
    const state = (await (await fetch(new URL('api/state', dash.url))).json()) as { state: string };
    assert.equal(state.state, 'migrated');
    const again = await postJson(dash.url, 'api/migrate', {});
    assert.equal(again.status, 409, 'a migrated guest cannot be migrated again');
    // A page opened after the migration still gets its rounds and its outcome.
    const late = await readEvents(dash.url, (s) => s.some((e) => e.event === 'migration-done'), 10_000);
    assert.deepEqual(late.filter((e) => e.event === 'migration-round').map((e) => e.data.round), rounds.map((r) => r.round));
    assert.equal(late.find((e) => e.event === 'migration-done')!.data.verified, true);
    assert.equal((await fetch(new URL('favicon.ico', dash.url))).status, 204, 'no 404 in the browser console');
  });

  it('bounds its event streams: past MAX_SSE_CLIENTS a new one is refused (503), and a freed slot is taken again', async () => {
    const open = (): Promise<{ status: number; close(): void }> =>
      new Promise((ok, fail) => {
        const req = request(new URL('api/events', dash.url), (res) => {
          res.resume();
          ok({ status: res.statusCode!, close: () => req.destroy() });
        });
        req.on('error', () => {});
        req.setTimeout(10_000, () => fail(new Error('no answer')));
        req.end();
      });
    const streams = [];
    try {
      for (let i = 0; i < MAX_SSE_CLIENTS; i++) streams.push(await open());
      assert.ok(streams.every((s) => s.status === 200));
      const over = await open();
      streams.push(over);
      assert.equal(over.status, 503);
      streams[0]!.close();
      await new Promise((r) => setTimeout(r, 200));
      const again = await open();
      streams.push(again);
      assert.equal(again.status, 200);
    } finally {
      for (const s of streams) s.close();
    }
  });
});
