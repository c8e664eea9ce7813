/**
 * `memvisor run`: runs a workload or trace on a guest with no dirty tracking
 * (or with one mode, as one round) and prints what the MMU did: accesses,
 * TLB hits and misses, walks, exits by reason, virtual cycles, host memory.
 */
import { STAT_CYCLES, STAT_NAMES } from '../../core/mmu/mmu-stats.ts';
import { createGuest } from '../../core/runner/guest.ts';
import { replay } from '../../core/runner/replay.ts';
import { NOMINAL_HZ } from '../../core/units.ts';
import { EXIT_REASON_COUNT, EXIT_REASON_NAMES } from '../../core/vm-exit.ts';
import { choiceFlag, modeFlag, parseGuestFlags } from '../options.ts';
import { Progress, renderTable } from '../output.ts';
import { openSource, requireRecords } from '../source.ts';

export interface RunFlags {
  trace?: string;
  workload?: string;
  mode?: string;
  format?: string;
  mem?: string;
  vcpus?: string;
  count?: string;
  seed?: string;
  addressing?: string;
  pageSize?: string;
  json?: boolean;
}

export async function runCommand(f: RunFlags): Promise<void> {
  const isTrace = f.trace !== undefined;
  const { memBytes, vcpus, count, seed, addressing, pageSize } = parseGuestFlags(f, isTrace);
  const format = choiceFlag('--format', f.format, ['ept', 'npt', 'arm'] as const, 'ept');
  const mode = f.mode === undefined ? null : modeFlag(f.mode, 'ept-wp');
  const guest = createGuest({ memBytes, vcpus, mode, format, addressing, pageSize });
  const source = openSource({ trace: f.trace, workload: f.workload, pageCount: memBytes / 4096, count, seed });
  const progress = new Progress(!f.json);
  progress.start('running', isTrace ? 0 : count);
  const result = await replay(guest, source, {
    cleanEvery: Infinity,
    onProgress: (n) => (isTrace ? progress.update(n, 'records') : progress.update(n)),
  });
  progress.stop();
  requireRecords(f.trace, result.records);
  const dom = guest.domain;
  const stats = dom.totalStats();
  const exits = dom.totalExits();
  const statObj: Record<string, number> = {};
  STAT_NAMES.forEach((n, i) => (statObj[n] = stats[i]!));
  const exitObj: Record<string, number> = {};
  for (let r = 0; r < EXIT_REASON_COUNT; r++) if (exits[r]! > 0) exitObj[EXIT_REASON_NAMES[r]!] = exits[r]!;
  const out = {
    source: source.name,
    format: dom.format.name,
    mode: mode ?? 'none',
    addressing,
    vcpus,
    mem_bytes: memBytes,
    records: result.records,
    stats: statObj,
    exits: exitObj,
    cycles: stats[STAT_CYCLES]!,
    virtual_seconds: stats[STAT_CYCLES]! / NOMINAL_HZ,
    host_bytes: dom.hostBytes,
    populated_pages: dom.memory.populatedFrames,
    p2m_table_pages: dom.p2m.tableFrames,
  };
  if (f.json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  const rows: (string | number)[][] = [
    ['records', result.records],
    ...STAT_NAMES.map((n, i) => [n, stats[i]!] as (string | number)[]),
    ...Object.entries(exitObj).map(([k, v]) => [`exit ${k}`, v] as (string | number)[]),
    ['virtual seconds', out.virtual_seconds],
    ['populated pages', out.populated_pages],
    ['p2m table pages', out.p2m_table_pages],
    ['host memory (MiB)', out.host_bytes / 1048576],
  ];
  process.stdout.write(`${source.name} on ${dom.format.name}, ${vcpus} vCPU(s), ${addressing} addressing, mode ${out.mode}\n`);
  process.stdout.write(`${renderTable(['counter', 'value'], rows)}\n`);
}
