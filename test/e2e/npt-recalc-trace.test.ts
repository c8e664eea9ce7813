/**
 * `memvisor trace --mode npt-wp` on a real lackey trace: Xen's NPT re-arm
 * (p2m-pt.c do_recalc) recomputes only the faulting entry, so after each CLEAN
 * every 4 KiB page the guest touches takes its own #NPF. The touched set of
 * each window is computed here from the file itself (our own parse of the
 * records into a plain Set), not by memvisor's reader. Bounded in time.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { CLI, ROOT } from './cli-entry.ts';

const TRACE = join(ROOT, 'test/fixtures/sort-small.lackey.gz');
const WINDOW = 30_000;

/** Distinct 4 KiB pages touched (I, L, S, M; both pages of a crossing access) per window of WINDOW records. */
function touchedPerWindow(file: string): Set<number>[] {
  const out: Set<number>[] = [];
  let cur = new Set<number>();
  let n = 0;
  for (const line of gunzipSync(readFileSync(file)).toString('latin1').split('\n')) {
    const m = /^(?:I |\s[LSM])\s+([0-9a-fA-F]+),(\d+)\s*$/.exec(line);
    if (m === null) continue;
    const addr = parseInt(m[1]!, 16);
    const size = Number(m[2]);
    for (let p = Math.floor(addr / 4096); p <= Math.floor((addr + size - 1) / 4096); p++) cur.add(p);
    if (++n % WINDOW === 0) {
      out.push(cur);
      cur = new Set();
    }
  }
  if (cur.size > 0) out.push(cur);
  return out;
}

it('npt-wp on a real trace: after each CLEAN, #NPF count ≥ distinct pages touched in the window', () => {
  const touched = touchedPerWindow(TRACE);
  const r = spawnSync(process.execPath, [...CLI, 'trace', TRACE, '--mode', 'npt-wp', '--clean-every', String(WINDOW), '--json'],
    { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const o = JSON.parse(r.stdout) as { rounds: { records: number; dirty: number; exits: Record<string, number> }[] };
  assert.equal(o.rounds.length, touched.length);
  assert.ok(o.rounds.length >= 5, 'several windows');
  for (let i = 0; i < touched.length; i++) {
    const npf = o.rounds[i]!.exits.npf ?? 0;
    assert.ok(npf >= touched[i]!.size, `round ${i}: ${npf} #NPF < ${touched[i]!.size} pages touched`);
    // A written page is ram_logdirty once its recalc (or populate) fault is handled, so its
    // first write faults once more, as a log-dirty write.
    const dirty = o.rounds[i]!.dirty;
    assert.ok(npf >= touched[i]!.size + dirty, `round ${i}: ${npf} #NPF < ${touched[i]!.size} touched + ${dirty} written`);
  }
});
