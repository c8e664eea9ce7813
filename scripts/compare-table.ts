/**
 * Regenerates the README's "Which mode wins" table: `memvisor compare` on
 * the sort-2m lackey trace (every built-in mode and variant, default
 * settings), printed as the markdown rows the README carries.
 *
 *   node --import tsx scripts/compare-table.ts [TRACE]
 *
 * It runs the CLI from the sources (as the e2e tests do), so the table
 * always describes the code in the tree, not an older dist/.
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const trace = process.argv[2] ?? join(ROOT, '../shared/traces/sort-2m.lackey.gz');
const r = spawnSync(
  process.execPath,
  ['--conditions=memvisor-source', '--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts'), 'compare', trace, '--json'],
  { encoding: 'utf8', maxBuffer: 1 << 26 },
);
if (r.status !== 0) {
  process.stderr.write(`compare failed: ${r.stderr}`);
  process.exit(1);
}
interface Row {
  mode: string;
  dirty_total: number;
  exits: Record<string, number>;
  tracking_cycles_per_million_records: number;
  harvest_cycles: number;
  tracking_bytes: number;
}
const o = JSON.parse(r.stdout) as { modes: Row[] };
const n = (x: number) => x.toLocaleString('en-US');
console.log('| mode | dirty | exits | tracking cycles / M records | harvest cycles | tracking KiB |');
console.log('|---|---|---|---|---|---|');
for (const m of o.modes) {
  const exits = Object.entries(m.exits).map(([k, v]) => `${n(v)} ${k}`).join(', ');
  console.log(`| ${m.mode} | ${n(m.dirty_total)} | ${exits} | ${n(m.tracking_cycles_per_million_records)} | ${n(m.harvest_cycles)} | ${n(m.tracking_bytes / 1024)} |`);
}
