/**
 * The dashboard's walk view over HTTP: POST /api/walk on a running paged
 * guest explains a translation with the engine's walker (the same JSON as
 * `walk --json`): a cold walk makes 24 references (4 KiB pages: 4 guest levels
 * × (4 EPT levels + 1) + 4), the walk right after it is answered by a cache,
 * a heatmap page (gfn) is turned into the gva that maps it, and bad requests
 * are refused with a reason. Bounded in time.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { postJson, readEvents, startDashboardProcess, type DashboardProcess } from './dashboard-process.ts';

describe('memvisor dashboard walk view (HTTP)', { timeout: 45_000 }, () => {
  let dash: DashboardProcess;
  before(async () => {
    dash = await startDashboardProcess(['--mem', '64M', '--dirty-rate', '40000', '--workload', 'hotspot', '--mode', 'ept-pml', '--addressing', 'paged']);
    // Let a few rounds run, so the guest OS has mapped pages.
    await readEvents(dash.url, (s) => s.filter((e) => e.event === 'round').length >= 2, 15_000);
  });
  after(async () => {
    const code = await dash?.stop();
    assert.equal(code, 0, `the dashboard exits cleanly on SIGTERM: ${dash?.stderr()}`);
  });

  it('a heatmap page (gfn) becomes the gva that maps it; a cold walk makes 24 references; the next walk is cut short by a cache', async () => {
    // gfn 0 is the guest OS's PML4 (not a data page): refused with the reason.
    const table = await postJson(dash.url, 'api/walk', { gfn: 0 });
    assert.equal(table.status, 409);
    assert.match(table.json.error, /gfn 0 holds no page the guest has mapped/, JSON.stringify(table.json));
    // Find a mapped data page among the first frames the OS handed out.
    let cold: any = null;
    let asked = 0;
    for (let gfn = 1; gfn < 64 && cold === null; gfn++) {
      const r = await postJson(dash.url, 'api/walk', { gfn, cold: true, access: 'read' });
      if (r.status === 200 && r.json.exit === null) {
        cold = r.json;
        asked = gfn;
      }
    }
    assert.ok(cold, 'some data page among gfns 1..63');
    // The gva found for the page translates, through the guest's tables, to that very frame.
    assert.equal(BigInt(cold.gpa) >> 12n, BigInt(asked));
    assert.equal(cold.walk, '2-d');
    assert.equal(cold.memory_references, 24);
    assert.equal(cold.references.filter((r: any) => r.cached_by === null).length, 24);
    assert.equal(cold.address, cold.gva);
    // The walk right after it (sent with it): the caches the cold walk filled answer.
    const warm = cold.next;
    assert.ok(warm.memory_references < 24, JSON.stringify(warm.references.map((r: any) => r.cached_by)));
    assert.ok(warm.references.some((r: any) => r.cached_by !== null));
  });

  it('refuses what it cannot walk, with the field named', async () => {
    for (const [body, pattern] of [
      [{}, /give an address/],
      [{ address: 'zz' }, /address: expected a 48-bit address/],
      [{ address: '0x1000', access: 'exec' }, /access: unknown value/],
      [{ address: '0x1000', vcpu: 3 }, /vcpu: 3 is out of range/],
    ] as const) {
      const r = await postJson(dash.url, 'api/walk', body);
      assert.ok(r.status === 400 || r.status === 409, `${JSON.stringify(body)}: ${r.status}`);
      assert.match(r.json.error, pattern);
    }
  });
});
