/**
 * `memvisor access --mode write|exec`: runs a guest (trace or synthetic
 * workload) with a xen-access style listener attached to its vm_event monitor
 * ring, and prints every mem_access event in the order the guest raised them
 * (a table, or one JSON object: {mode, events: [{vcpu, gfn, offset, access}], ...}).
 *
 * A workload's guest is populated up front (an HVM guest's memory exists
 * before a listener attaches; xen-access restricts 0..max_gpfn−1). A trace
 * under identity addressing runs on a sparse 1 TiB guest populated on first
 * touch: nothing is mapped when the listener attaches (max_gpfn = −1, an empty
 * range), and every page populated later takes default_access. With --dirty-mode the
 * named dirty-tracking mode runs under the mem_access layer with log-dirty on.
 */
import { totalmem } from 'node:os';
import {
  MemAccessLayer, RING_SIZE, VM_EVENT_ENTRY_BYTES, XEN_ACCESS_MODES, XenAccess, runAccessSession,
} from '../../core/memaccess/index.ts';
import { STAT_CYCLES } from '../../core/mmu/mmu-stats.ts';
import { ACCESS_NAMES } from '../../core/p2m/p2m-type.ts';
import { createGuest } from '../../core/runner/guest.ts';
import { EXIT_REASON_COUNT, EXIT_REASON_NAMES } from '../../core/vm-exit.ts';
import { UsageError } from '../errors.ts';
import { choiceFlag, intFlag, memFlag, modeFlag } from '../options.ts';
import { Progress, renderTable } from '../output.ts';
import { openSource, requireRecords } from '../source.ts';

export interface AccessFlags {
  mode?: string;
  trace?: string;
  workload?: string;
  vcpus?: string;
  mem?: string;
  count?: string;
  seed?: string;
  addressing?: string;
  populate?: string;
  dirtyMode?: string;
  required?: boolean;
  json?: boolean;
}

/** What xen-access restricted when it attached: gfns 0..max_gpfn−1 (it leaves max_gpfn itself open). */
function restrictedRange(maxGpfn: number): string {
  if (maxGpfn <= 0) return 'nothing mapped when the listener attached: pages take the default as they are populated';
  return `gfns 0..${maxGpfn - 1} restricted at attach, as xen-access does, max_gpfn ${maxGpfn} itself left open`;
}

/** Rows of the event table printed without --json (the JSON always has every event). */
const TABLE_EVENT_ROWS = 200;

/** access's flags, each checked once (nothing runs). */
export function parseAccessFlags(f: AccessFlags) {
  if (f.mode === undefined) throw new UsageError('--mode is required (write or exec)');
  const mode = choiceFlag('--mode', f.mode, XEN_ACCESS_MODES, 'write');
  const isTrace = f.trace !== undefined;
  if (!isTrace && f.workload === undefined) throw new UsageError('give --trace FILE or --workload NAME');
  const addressing = choiceFlag('--addressing', f.addressing, ['identity', 'paged'] as const, 'identity');
  // A trace under identity addressing needs the whole range its addresses span: sparse, populated on first touch.
  const sparse = isTrace && addressing === 'identity';
  const populate = choiceFlag('--populate', f.populate, ['up-front', 'on-demand'] as const, sparse ? 'on-demand' : 'up-front');
  const memBytes = memFlag(f.mem, sparse ? 1024 ** 4 : 64 * 1024 * 1024, {
    synthetic: !isTrace,
    ...(populate === 'up-front' ? { populated: { hostBytes: totalmem(), copies: 1, why: '--populate up-front allocates every page (use --populate on-demand)' } } : {}),
  });
  const vcpus = intFlag('--vcpus', f.vcpus, 1, 1, 256);
  const count = intFlag('--count', f.count, 100_000);
  const seed = intFlag('--seed', f.seed, 1, 0);
  const dirtyMode = f.dirtyMode === undefined ? null : modeFlag(f.dirtyMode, 'ept-wp');

  return { mode, isTrace, addressing, populate, memBytes, vcpus, count, seed, dirtyMode };
}

/** Runs the session `access --json` describes (events and counters). */
export async function accessResult(f: AccessFlags, p: ReturnType<typeof parseAccessFlags>, progress: Progress) {
  const { mode, isTrace, addressing, populate, memBytes, vcpus, count, seed, dirtyMode } = p;
  const guest = createGuest({ memBytes, vcpus, mode: dirtyMode, format: 'ept', addressing, pageSize: '4k', populate });
  const domain = guest.domain;
  guest.mode?.enable();
  const layer = MemAccessLayer.install(domain);
  const listener = new XenAccess(layer, mode, { required: f.required === true });
  listener.start();
  const ring = layer.monitor!;
  const source = openSource({ trace: f.trace, workload: f.workload, pageCount: memBytes / 4096, count, seed });
  progress.start(`access ${mode}`, isTrace ? 0 : count);
  const result = await runAccessSession(domain, layer, listener, source, {
    onProgress: (n) => progress.update(n, isTrace ? 'records' : ''),
  });
  progress.stop();
  requireRecords(f.trace, result.records);

  const events = listener.events.map((e) => ({ vcpu: e.vcpu, gfn: e.gfn, offset: e.offset, access: e.access, flags: e.flags, gla: e.gla, paused: e.paused }));
  const byAccess: Record<string, number> = {};
  for (const e of events) byAccess[e.access] = (byAccess[e.access] ?? 0) + 1;
  const exitsNow = domain.totalExits();
  const exits: Record<string, number> = {};
  for (let r = 0; r < EXIT_REASON_COUNT; r++) if (exitsNow[r]! > 0) exits[EXIT_REASON_NAMES[r]!] = exitsNow[r]!;
  const rs = ring.stats;
  const out = {
    mode,
    source: source.name,
    vcpus,
    mem_bytes: memBytes,
    addressing,
    populate,
    dirty_mode: dirtyMode ?? 'none',
    records: result.records,
    max_gpfn: listener.maxGpfn,
    default_access: ACCESS_NAMES[listener.defaultAccess],
    after_first_access: ACCESS_NAMES[listener.afterFirstAccess],
    events,
    counts: { total: events.length, by_access: byAccess, sync: events.filter((e) => e.paused).length, async: events.filter((e) => !e.paused).length },
    pauses: { sync: rs.syncPauses, unpauses: rs.unpauses, ignored_responses: rs.ignored, guest_stops: result.stops },
    throttles: { paused: rs.throttles, woken: rs.throttleWakes, waits: rs.waits, wait_wakes: rs.waitWakes },
    ring: {
      slots: RING_SIZE, entry_bytes: VM_EVENT_ENTRY_BYTES, port: ring.port, requests: rs.requests, responses: rs.responses,
      max_in_use: rs.maxInUse, notifications: rs.notifications, bad_version: rs.badVersion, bad_vcpu: rs.badVcpu,
    },
    access_ops: { hypercalls: listener.stats.ops.hypercalls, continuations: listener.stats.ops.continuations, gfns_set: listener.stats.ops.gfnsSet },
    mem_access: { ...layer.stats },
    exits,
    cycles: domain.totalStats()[STAT_CYCLES]!,
  };
  return { out, listener, source, events, byAccess, rs, result };
}

export async function accessCommand(f: AccessFlags): Promise<void> {
  const p = parseAccessFlags(f);
  const { out, listener, source, events, byAccess, rs, result } = await accessResult(f, p, new Progress(!f.json));
  const mode = p.mode;
  if (f.json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  process.stdout.write(`access ${mode} on ${source.name}: ${result.records} records, ${events.length} events ` +
    `(default ${out.default_access}, after first ${out.after_first_access}; ${restrictedRange(listener.maxGpfn)})\n`);
  const rows = events.slice(0, TABLE_EVENT_ROWS).map((e, i) => [i, e.vcpu, `0x${e.gfn.toString(16)}`, `0x${e.offset.toString(16).padStart(3, '0')}`, e.access, e.paused ? 'yes' : 'no']);
  if (rows.length > 0) process.stdout.write(`${renderTable(['#', 'vcpu', 'gfn', 'offset', 'access', 'paused'], rows)}\n`);
  if (events.length > TABLE_EVENT_ROWS) process.stdout.write(`… ${events.length - TABLE_EVENT_ROWS} more events (--json lists them all)\n`);
  process.stdout.write(`${renderTable(['counter', 'value'], [
    ['events', events.length],
    ...Object.entries(byAccess).map(([k, v]) => [`events ${k}`, v] as (string | number)[]),
    ['sync pauses', rs.syncPauses],
    ['throttle pauses', rs.throttles],
    ['ring requests', rs.requests],
    ['ring responses', rs.responses],
    ['ring max in use', rs.maxInUse],
    ['access hypercalls', out.access_ops.hypercalls],
    ['access continuations', out.access_ops.continuations],
  ])}\n`);
}
