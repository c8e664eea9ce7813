/**
 * The README's "Use as a library" example, run as it stands against the
 * sources (`import 'memvisor'` resolves to src/ under the memvisor-source
 * condition, see package.json exports); package.test.ts runs it against the
 * installed tarball too. At most 20 lines, as the README promises.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { ROOT } from './cli-entry.ts';
import { readmeLibraryExample } from './readme-example.ts';

test("README's library example runs and prints a round per CLEAN", () => {
  const code = readmeLibraryExample();
  assert.ok(code.trim().split('\n').length <= 20, 'the example is at most 20 lines');
  const r = spawnSync(process.execPath, ['--conditions=memvisor-source', '--import', import.meta.resolve('tsx'), '--input-type=module', '-e', code], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const rounds = [...r.stdout.matchAll(/^round (\d+): (\d+) dirty pages/gm)];
  assert.deepEqual(rounds.map((m) => Number(m[1])), [0, 1, 2, 3]);
  for (const m of rounds) assert.ok(Number(m[2]) > 0);
  assert.match(r.stdout, /ept-pml .*kvm-ring/);
});
