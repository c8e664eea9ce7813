/**
 * Start-up of the installed command: `node bin/memvisor.js --help` (the
 * compiled dist/, no TypeScript loader) against `node -e 0` (Node's own
 * start-up), run in turn, the ratio taken pair by pair so a busy machine
 * slows both sides of each pair alike. Builds nothing: run `npm run build` first.
 *   node --import tsx bench/startup.bench.ts [--runs 21]
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { runs: { type: 'string', default: '21' } } });
const runs = Number(values.runs);

function wallMs(args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const help: number[] = [];
const bare: number[] = [];
const ratios: number[] = [];
wallMs(['-e', '0']);
wallMs([join(ROOT, 'bin/memvisor.js'), '--help']);
for (let i = 0; i < runs; i++) {
  const b = wallMs(['-e', '0']);
  const h = wallMs([join(ROOT, 'bin/memvisor.js'), '--help']);
  bare.push(b);
  help.push(h);
  ratios.push(h / b);
}
console.log(`memvisor --help: median ${median(help).toFixed(1)} ms; node -e 0: median ${median(bare).toFixed(1)} ms; ratio (pairwise) median ${median(ratios).toFixed(2)}, min ${Math.min(...ratios).toFixed(2)}, max ${Math.max(...ratios).toFixed(2)} over ${runs} pairs`);
