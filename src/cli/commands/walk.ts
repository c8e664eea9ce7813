/**
 * `memvisor walk`: runs the guest up to record N (records 1..N-1, with the
 * mode's log-dirty rounds as `trace` runs them), then explains record N's
 * translation reference by reference (core/explain/walk-explainer.ts): each
 * entry read, decoded in its format's field names, the A/D flags the walk
 * set, the caches that answered instead, and the outcome — gva → gpa → hpa,
 * or the exit as the hypervisor receives it. The explanation changes nothing
 * in the run. `--json` prints {gva, gpa, hpa, references[{stage, level, table,
 * entry, fields, set, cached_by}], exit, ...}.
 */
import { explainWalk, permOfRecordKind, type WalkExplanation, type WalkReference } from '../../core/explain/walk-explainer.ts';
import { createGuest } from '../../core/runner/guest.ts';
import { replay, type NextRecord } from '../../core/runner/replay.ts';
import { UsageError } from '../errors.ts';
import { choiceFlag, intFlag, modeFlag, parseGuestFlags } from '../options.ts';
import { renderTable } from '../output.ts';
import { openSource } from '../source.ts';
import { modeOptionsFrom, type TraceFlags } from './trace.ts';

export interface WalkFlags extends TraceFlags {
  trace?: string;
  record?: string;
  format?: string;
  vcpu?: string;
  cold?: boolean;
}

const KIND_NAMES = ['fetch', 'load', 'store', 'modify'];

/** What `walk --json` prints: the explanation plus where it came from. */
export interface WalkOutput extends WalkExplanation {
  readonly source: string;
  readonly record: number;
  readonly line: number;
  readonly kind: string;
  readonly size: number;
  readonly mode: string;
  readonly note: string | null;
}

export async function walkCommand(f: WalkFlags): Promise<void> {
  const isTrace = f.trace !== undefined;
  if (!isTrace && f.workload === undefined) throw new UsageError('give --trace FILE or --workload NAME, and --record N');
  if (f.record === undefined) throw new UsageError('--record N is required: the record (1 = the first I/L/S/M record) whose walk to show');
  const record = intFlag('--record', f.record, 1, 1);
  const { memBytes, vcpus, seed, addressing, pageSize } = parseGuestFlags(f, isTrace);
  const mode = f.mode === undefined ? null : modeFlag(f.mode, 'ept-wp');
  const format = choiceFlag('--format', f.format, ['ept', 'npt', 'arm'] as const, 'ept');
  if (mode !== null && f.format !== undefined) throw new UsageError('--format: the mode decides the p2m format; give --mode or --format, not both');
  const vcpuFlag = f.vcpu === undefined ? null : intFlag('--vcpu', f.vcpu, 0, 0, vcpus - 1);
  const cleanEvery = intFlag('--clean-every', f.cleanEvery, 100_000);
  // A workload needs only the records up to N.
  const count = intFlag('--count', f.count, record);
  const guest = createGuest({ memBytes, vcpus, mode, format, addressing, pageSize, modeOptions: modeOptionsFrom(f) });
  const source = openSource({ trace: f.trace, workload: f.workload, pageCount: memBytes / 4096, count, seed });
  const sourceName = isTrace ? (f.trace === '-' ? '<stdin>' : f.trace!) : `workload ${f.workload}`;
  const result = await replay(guest, source, { cleanEvery, stopBefore: record });
  source.close?.();
  const next: NextRecord | null | undefined = result.next;
  if (!next) {
    throw new UsageError(`--record ${record} is past the end of ${sourceName}: it has ${result.records} record${result.records === 1 ? '' : 's'}`);
  }
  const vcpu = vcpuFlag === null ? guest.domain.currentVcpu : guest.domain.vcpus[vcpuFlag]!;
  const x = explainWalk(vcpu, next.addr, permOfRecordKind(next.kind), f.cold === true);
  const note = x.walk === '1-d'
    ? `identity addressing has no guest page tables: record ${record}'s address is a gpa, so this is a 1-D walk through the p2m alone (give --addressing paged for the 2-D walk)`
    : null;
  if (note !== null) process.stderr.write(`memvisor: ${note}\n`);
  const out: WalkOutput = {
    source: sourceName, record, line: next.line, kind: KIND_NAMES[next.kind] ?? String(next.kind), size: next.size,
    mode: mode ?? 'none', note, ...x,
  };
  if (f.json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  process.stdout.write(renderWalk(out));
}

/** Decoded fields on one line: set flags by name, clear ones as -name, values as name=value. */
export function fieldsLine(fields: WalkReference['fields']): string {
  return Object.entries(fields).map(([k, v]) => (v === true ? k : v === false ? `-${k}` : `${k}=${v}`)).join(' ');
}

const COLUMN_NAMES = ['guest L4 table', 'guest L3 table', 'guest L2 table', 'guest L1 table', 'data'];

function stepName(o: WalkOutput, r: WalkReference): string {
  if (o.walk === '2-d') return r.purpose === 'guest A/D write' ? `${COLUMN_NAMES[r.column]} (A/D write)` : COLUMN_NAMES[r.column]!;
  return o.walk === 'shadow' ? 'shadow walk' : 'gpa';
}

function renderWalk(o: WalkOutput): string {
  const lines: string[] = [];
  const where = o.source.startsWith('workload ') ? `${o.source}, access ${o.line}` : `${o.source} line ${o.line}`;
  lines.push(`record ${o.record} (${where}): ${o.kind} of ${o.size} byte${o.size === 1 ? '' : 's'} at ${o.gva !== null ? `gva ${o.gva}` : `gpa ${o.gpa}`}`);
  lines.push(`vCPU ${o.vcpu}, ${o.format} p2m, mode ${o.mode}, ${o.walk} walk for a ${o.access}${o.cold ? ', cold (TLB, nested TLB and PDE cache flushed first)' : ''}`);
  let n = 0;
  const rows = o.references.map((r) => {
    const num = r.cached_by === null ? String(++n) : '-';
    const table = r.table === null ? '' : `${r.stage === 'guest' ? 'gpa' : 'hpa'} ${r.table}[${r.index}]`;
    return [num, stepName(o, r), r.cached_by === null ? r.name : r.name, table, r.entry ?? '', r.cached_by === null ? fieldsLine(r.fields) : `answered by the ${CACHE_NAMES[r.cached_by]}`, r.set.join(' ')];
  });
  lines.push(renderTable(['#', 'for', 'entry read', 'table[index]', 'raw entry', 'decoded', 'set'], rows));
  lines.push(`${o.memory_references} memory reference${o.memory_references === 1 ? '' : 's'}`);
  if (o.pml !== null && o.pml.logged.length > 0) lines.push(`PML: logged ${o.pml.logged.join(', ')} (index ${o.pml.index_before} → ${o.pml.index_after})`);
  if (o.exit === null) {
    lines.push(o.walk === '1-d' ? `gpa ${o.gpa} → hpa ${o.hpa}` : `gva ${o.gva} → ${o.gpa !== null ? `gpa ${o.gpa}` : 'gpa (not walked: the TLB maps gva to host frame)'} → hpa ${o.hpa}`);
  } else {
    const e = o.exit;
    const at = e.gpa !== null ? ` at gpa ${e.gpa}` : e.gva !== null ? ` at gva ${e.gva}` : '';
    const what = e.to === 'guest' ? 'guest page fault (#PF, handled by the guest: no VM exit)' : `VM exit ${e.reason}`;
    const detail = [e.table_access ? 'on a guest paging-structure access' : null, e.level !== null ? `p2m level ${e.level}` : null, e.recalc ? 'recalc-marked entry' : null]
      .filter((s) => s !== null).join(', ');
    const code = e.code === null ? '' : `; ${e.code_name === 'iss' ? 'ESR ISS' : e.code_name === 'error_code' ? 'error code' : 'qualification'} ${e.code}: ${fieldsLine(e.decoded)}`;
    lines.push(`${what}${at}${detail !== '' ? ` (${detail})` : ''}${code}`);
  }
  return `${lines.join('\n')}\n`;
}

const CACHE_NAMES: Record<string, string> = { tlb: 'TLB', nested_tlb: 'nested TLB', pde_cache: 'PDE cache' };
