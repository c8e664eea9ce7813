/**
 * `--plugin FILE` end to end, on the TypeScript sources (cli-entry.ts): the
 * dbit-scan example beside the built-in modes in compare and trace with the
 * same dirty counts, a migration whose sender runs the plugin's mode, a
 * plugin stop policy, and the one-line refusals (no file, nothing
 * registered, a name clash, an empty --modes).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CLI, ROOT } from './cli-entry.ts';

const FIXTURE = join(ROOT, 'test/fixtures/sort-small.lackey.gz');
const DBIT = join(ROOT, 'examples/dbit-scan/index.js');

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8', timeout: 180_000, env: { ...process.env, MEMVISOR_DEBUG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function oneLineError(r: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, pattern);
}

const dir = mkdtempSync(join(tmpdir(), 'memvisor-plugin-'));

describe('--plugin', { timeout: 600_000 }, () => {
  it('compare shows dbit-scan beside the built-in modes with the same dirty pages, and no write-protection exits', () => {
    const r = cli(['compare', FIXTURE, '--modes', 'ept-wp,ept-pml,dbit-scan', '--clean-every', '20000', '--plugin', DBIT, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout) as { modes: { mode: string; dirty_total: number; exits: Record<string, number>; rounds: number }[] };
    const by = new Map(o.modes.map((m) => [m.mode, m]));
    const d = by.get('dbit-scan')!;
    assert.equal(d.dirty_total, by.get('ept-wp')!.dirty_total);
    assert.equal(d.rounds, by.get('ept-wp')!.rounds);
    assert.equal(d.exits.ept_misconfig ?? 0, 0, 'no lazy re-arm');
    // Its only violations populate pages on first touch, as ept-pml's do (PML logs the writes instead of faulting).
    assert.equal(d.exits.ept_violation, by.get('ept-pml')!.exits.ept_violation);
    assert.ok(d.exits.ept_violation! < by.get('ept-wp')!.exits.ept_violation!);
  });

  it('compare with no --modes runs the plugin mode after the built-in rows', () => {
    const r = cli(['compare', '--workload', 'hotspot', '--mem', '16M', '--count', '20000', '--clean-every', '5000', '--plugin', DBIT, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const modes = (JSON.parse(r.stdout) as { modes: { mode: string; dirty_total: number }[] }).modes;
    assert.equal(modes.at(-1)!.mode, 'dbit-scan');
    assert.equal(modes.at(-1)!.dirty_total, modes[0]!.dirty_total);
  });

  it('trace --mode dbit-scan gives the rounds ept-wp gives', () => {
    const a = cli(['trace', FIXTURE, '--mode', 'dbit-scan', '--plugin', DBIT, '--clean-every', '30000', '--json']);
    const b = cli(['trace', FIXTURE, '--mode', 'ept-wp', '--clean-every', '30000', '--json']);
    assert.equal(a.code, 0, a.stderr);
    const dirty = (s: string): number[] => (JSON.parse(s) as { rounds: { dirty: number }[] }).rounds.map((x) => x.dirty);
    assert.equal(JSON.parse(a.stdout).mode, 'dbit-scan');
    assert.deepEqual(dirty(a.stdout), dirty(b.stdout));
  });

  it('migrate runs the sender under the plugin mode (the receiver needs none) and verifies', () => {
    const a = cli(['migrate', '--workload', 'hotspot', '--mem', '32M', '--mode', 'dbit-scan', '--plugin', DBIT, '--json']);
    const b = cli(['migrate', '--workload', 'hotspot', '--mem', '32M', '--mode', 'ept-pml', '--json']);
    assert.equal(a.code, 0, a.stderr);
    const ra = JSON.parse(a.stdout) as { verified: boolean; rounds: { dirty: number }[] };
    assert.equal(ra.verified, true);
    assert.deepEqual(ra.rounds.map((x) => x.dirty), (JSON.parse(b.stdout) as typeof ra).rounds.map((x) => x.dirty));
  });

  it('a plugin stop policy is usable as --policy', () => {
    const file = join(dir, 'two-passes.mjs');
    writeFileSync(file, `export default function (memvisor) {
  memvisor.registerPolicy({ name: 'two-passes', create: () => ({ name: 'two-passes', params: {}, decide: (s) => (s.iteration >= 2 ? 'stop' : 'continue') }) });
}\n`);
    const r = cli(['migrate', '--workload', 'uniform', '--mem', '32M', '--dirty-rate', '200000', '--policy', 'two-passes', '--plugin', file, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout) as { policy: string; rounds: unknown[]; verified: boolean };
    assert.equal(o.policy, 'two-passes');
    assert.equal(o.rounds.length, 3, 'two live passes, then stop-and-copy');
    assert.equal(o.verified, true);
  });

  it('refuses, in one line: a missing file, a plugin that registers nothing, a name clash, a mode not loaded', () => {
    oneLineError(cli(['trace', FIXTURE, '--mode', 'dbit-scan', '--plugin', join(dir, 'nope.js')]), /--plugin: .*nope\.js: no such file/);
    const empty = join(dir, 'empty.mjs');
    writeFileSync(empty, 'export const x = 1;\n');
    oneLineError(cli(['trace', FIXTURE, '--mode', 'ept-wp', '--plugin', empty]), /registered no mode or policy/);
    const clash = join(dir, 'clash.mjs');
    writeFileSync(clash, "export default (m) => m.registerMode({ name: 'ept-wp', format: 'ept', create: () => null });\n");
    oneLineError(cli(['trace', FIXTURE, '--mode', 'ept-wp', '--plugin', clash]), /'ept-wp' is already built in/);
    const broken = join(dir, 'broken.mjs');
    writeFileSync(broken, 'export default (;\n');
    oneLineError(cli(['trace', FIXTURE, '--mode', 'ept-wp', '--plugin', broken]), /--plugin: .*broken\.mjs: could not load it/);
    oneLineError(cli(['trace', FIXTURE, '--mode', 'dbit-scan']), /--mode: unknown value 'dbit-scan'/);
  });

  it('compare refuses an empty --modes list', () => {
    oneLineError(cli(['compare', FIXTURE, '--modes', '']), /--modes: no mode given/);
    oneLineError(cli(['compare', FIXTURE, '--modes', ',']), /--modes: no mode given/);
  });
});
