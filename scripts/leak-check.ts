/**
 * `node --import tsx scripts/leak-check.ts [--runs 200] [--mem-mib 32]`: runs
 * that many migrations back to back through ONE receiver process (spawned as
 * `migrate` spawns it, no preallocation: each migration allocates its
 * destination memory afresh) and reads the receiver's RSS (/proc/PID/status
 * VmRSS) after migration 20 and after the last. A receiver that kept anything
 * per migration grows with the count; RELIABILITY.md records the figures.
 * Exits 1 if RSS after the last is more than 10% above RSS after the 20th.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { migrateTo } from '../src/adapters/migration/migrate-to.ts';
import { spawnReceiver } from '../src/adapters/migration/spawn-receiver.ts';
import { linkModel } from '../src/core/migration/link-model.ts';
import { createPolicy } from '../src/core/migration/policy/registry.ts';
import { Xoshiro128 } from '../src/core/rng.ts';
import { createGuest } from '../src/core/runner/guest.ts';
import { fillGuestRandom, MigratableDomain } from '../src/core/runner/migratable-domain.ts';
import { createSyntheticWorkload } from '../src/core/workload/synthetic.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '200' }, 'mem-mib': { type: 'string', default: '32' } } });
const runs = Number(values.runs);
const memMiB = Number(values['mem-mib']);
const CHECKPOINT = 20;
if (!Number.isInteger(runs) || runs <= CHECKPOINT) throw new Error(`--runs must be an integer above ${CHECKPOINT}`);

const rssMiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

const memBytes = memMiB * 1048576;
const guest = createGuest({ memBytes, vcpus: 2, mode: 'ept-pml', addressing: 'identity', pageSize: '4k', populate: 'up-front' });
fillGuestRandom(guest.domain, new Xoshiro128(1));
const workload = createSyntheticWorkload('hotspot', { pageCount: memBytes / 4096, rng: new Xoshiro128(2) });
const source = new MigratableDomain({ domain: guest.domain, mode: guest.mode!, workload, accessesPerSecond: 20_000 });

// One more than we run, so the receiver is still there to be measured after the last.
const rx = await spawnReceiver({ migrations: runs + 1 });
const pid = rx.child.pid!;
const t0 = performance.now();
let atCheckpoint = 0;
const trace: string[] = [];
try {
  for (let i = 1; i <= runs; i++) {
    const r = await migrateTo(source, { host: rx.host, port: rx.port, policy: createPolicy('xen'), clock: 'virtual', link: linkModel(1000, 0.1), resumeSourceAfter: true });
    if (!r.verified) throw new Error(`migration ${i} did not verify`);
    if (i === CHECKPOINT) atCheckpoint = rssMiB(pid);
    if (i % 20 === 0) trace.push(`${i}:${rssMiB(pid).toFixed(0)}`);
  }
  const atEnd = rssMiB(pid);
  const growth = (atEnd - atCheckpoint) / atCheckpoint;
  process.stdout.write(
    `${runs} migrations of a ${memMiB} MiB guest through one receiver in ${((performance.now() - t0) / 1000).toFixed(1)} s: ` +
      `receiver RSS ${atCheckpoint.toFixed(1)} MiB after ${CHECKPOINT}, ${atEnd.toFixed(1)} MiB after ${runs} (${(growth * 100).toFixed(1)}%); every 20: ${trace.join(' ')}\n`,
  );
  process.exitCode = growth <= 0.1 ? 0 : 1;
} finally {
  rx.kill();
}
