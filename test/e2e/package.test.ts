/**
 * The package as a user gets it: `npm pack` (which builds dist/ afresh through
 * the prepare script) and the tarball installed into an empty project, then
 *  - `memvisor --help` runs with no TypeScript loader installed;
 *  - the README's "Use as a library" example runs against the installed API;
 *  - the dbit-scan example's own test passes the contract suite from the
 *    installed `memvisor/testing`;
 *  - `memvisor compare --plugin ./index.js` shows the example beside ept-pml
 *    with the same dirty pages;
 *  - a TypeScript consumer type-checks against the shipped .d.ts.
 * Runs in a temporary directory; npm prefers its cache (npm ci filled it).
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from './cli-entry.ts';
import { readmeLibraryExample } from './readme-example.ts';

const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const work = mkdtempSync(join(tmpdir(), 'memvisor-pack-'));
const project = join(work, 'project');

/** The environment of a command in the project: no MEMVISOR_DEBUG, and not inside this test run (a nested `node --test` would report to it). */
function projectEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, MEMVISOR_DEBUG: '' };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

function run(cmd: string, args: string[], cwd = project): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 300_000, env: projectEnv() });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('npm pack, installed into an empty project', { timeout: 900_000 }, () => {
  before(() => {
    const out = execFileSync(NPM, ['pack', '--silent', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8', timeout: 600_000, stdio: ['ignore', 'pipe', 'inherit'] });
    const tarball = join(work, out.trim().split('\n').pop()!);
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'uses-memvisor', private: true, type: 'module' }));
    execFileSync(NPM, ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: project, stdio: 'ignore', timeout: 600_000 });
  }, { timeout: 900_000 });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('ships what a user needs and nothing of the sources or tests', () => {
    const pkg = join(project, 'node_modules/memvisor');
    for (const f of ['README.md', 'LICENSE', 'CHANGELOG.md', 'bin/memvisor.js', 'dist/index.js', 'dist/index.d.ts', 'dist/testing/index.js', 'dist/cli/main.js', 'web/index.html']) {
      assert.ok(existsSync(join(pkg, f)), f);
    }
    assert.ok(!existsSync(join(pkg, 'src')), 'no TypeScript sources');
    const dist = readdirSync(join(pkg, 'dist'), { recursive: true }).map(String);
    assert.ok(!dist.some((f) => f.includes('.test.')), 'no tests');
    assert.ok(!existsSync(join(project, 'node_modules/tsx')), 'no TypeScript loader installed');
    assert.match(readFileSync(join(pkg, 'LICENSE'), 'utf8'), /^MIT License/);
  });

  it('memvisor --help runs the compiled package', () => {
    const r = run(join(project, 'node_modules/.bin/memvisor'), ['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Usage: memvisor/);
    assert.equal(r.stderr, '', 'no stale-dist warning: an installed package has no src/');
  });

  it("the README's library example runs against the installed API", () => {
    writeFileSync(join(project, 'readme-example.mjs'), readmeLibraryExample());
    const r = run(process.execPath, ['readme-example.mjs']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^round 3: \d+ dirty pages/m);
  });

  it('the dbit-scan example passes the contract suite from memvisor/testing', () => {
    for (const f of ['index.js', 'index.test.js']) copyFileSync(join(ROOT, 'examples/dbit-scan', f), join(project, f));
    const r = run(process.execPath, ['--test', 'index.test.js']);
    assert.equal(r.code, 0, r.stdout.slice(-3000) + r.stderr);
    assert.match(r.stdout, /# fail 0/);
    assert.match(r.stdout, /ok \d+ - contract dbit-scan: no write lost/);
  });

  it('compare --plugin ./index.js shows dbit-scan beside ept-pml with the same dirty pages', () => {
    const fixture = join(project, 'node_modules/memvisor/test/fixtures/sort-small.lackey.gz');
    const r = run(join(project, 'node_modules/.bin/memvisor'), ['compare', fixture, '--modes', 'ept-pml,dbit-scan', '--plugin', './index.js', '--clean-every', '50000', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const [pml, dbit] = (JSON.parse(r.stdout) as { modes: { mode: string; dirty_total: number }[] }).modes;
    assert.equal(dbit!.mode, 'dbit-scan');
    assert.equal(dbit!.dirty_total, pml!.dirty_total);
  });

  it('a TypeScript consumer type-checks against the shipped declarations', () => {
    writeFileSync(join(project, 'consumer.ts'), `import { createGuest, registerMode, type DirtyMode, type ModeEntry } from 'memvisor';
import { dirtyModeContract, stopPolicyContract } from 'memvisor/testing';
const g = createGuest({ memBytes: 1 << 24, vcpus: 1, mode: 'ept-wp', addressing: 'identity', pageSize: '4k' });
const m: DirtyMode | null = g.mode;
const e: ModeEntry = { name: 'x', format: 'ept', summary: '', create: (d) => { throw new Error(String(d.id)); } };
registerMode(e);
void [m, dirtyModeContract, stopPolicyContract];
// @ts-expect-error: a mode entry needs a factory
registerMode({ name: 'y', format: 'ept', summary: '' });
`);
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, typeRoots: [join(ROOT, 'node_modules/@types')], types: ['node'] },
      files: ['consumer.ts'],
    }));
    const r = run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', '.']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
});
