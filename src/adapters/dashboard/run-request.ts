/**
 * The dashboard's POST bodies, validated once into the session's plain
 * configs (parse at the edge). A bad field is a RequestError naming it; the
 * server answers 400 with its message.
 */
import { MODE_NAMES, type ModeName } from '../../core/modes/dirty-mode.ts';
import { MODES } from '../../core/modes/registry.ts';
import { POLICY_NAMES, type PolicyName } from '../../core/migration/policy/registry.ts';
import { SYNTHETIC_WORKLOADS, type SyntheticWorkloadName } from '../../core/workload/synthetic.ts';
import { PERM_R, PERM_W, PERM_X } from '../../core/p2m/p2m-type.ts';
import type { MigrateConfig, RunConfig, WalkRequest } from './guest-session.ts';

/** Largest guest the dashboard runs: its memory is populated and filled up front, one heatmap pixel per page. */
export const MAX_DASHBOARD_MEM_BYTES = 4 * 1024 ** 3;
const PAGE_SIZE = 4096;

/** Modes the registry can install (a name may be reserved before its mode lands). */
export function runnableModes(): ModeName[] {
  return MODE_NAMES.filter((m) => MODES[m] !== undefined);
}

export class RequestError extends Error {
  override readonly name = 'RequestError';
}

/** Rounds of a quarter of a virtual second unless told otherwise. */
export function defaultCleanEvery(dirtyRate: number): number {
  return Math.max(1, Math.round(dirtyRate / 4));
}

function pick<T extends string>(field: string, v: unknown, choices: readonly T[], dflt: T): T {
  if (v === undefined || v === null || v === '') return dflt;
  if (typeof v !== 'string' || !(choices as readonly string[]).includes(v)) {
    throw new RequestError(`${field}: unknown value ${JSON.stringify(v)} (expected one of: ${choices.join(', ')})`);
  }
  return v as T;
}

function int(field: string, v: unknown, dflt: number, min: number, max: number): number {
  if (v === undefined || v === null || v === '') return dflt;
  const n = typeof v === 'string' ? Number(v.replace(/_/g, '')) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new RequestError(`${field}: expected an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}

function num(field: string, v: unknown, dflt: number, min: number): number {
  if (v === undefined || v === null || v === '') return dflt;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < min) throw new RequestError(`${field}: expected a number ≥ ${min}, got ${JSON.stringify(v)}`);
  return n;
}

function asObject(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new RequestError('request body: expected a JSON object');
  return body as Record<string, unknown>;
}

/**
 * POST /api/run: `{mode, workload, dirtyRate, cleanEvery, memBytes, vcpus, seed}`,
 * every field optional (the CLI's flags are the defaults). A changed
 * dirtyRate with no cleanEvery keeps rounds a quarter of a virtual second.
 */
export function parseRunRequest(body: unknown, defaults: RunConfig, defaultsCleanEveryExplicit = false): RunConfig {
  const o = asObject(body);
  const mode: ModeName = pick('mode', o.mode, runnableModes(), defaults.mode);
  const workload: SyntheticWorkloadName = pick('workload', o.workload, SYNTHETIC_WORKLOADS, defaults.workload);
  const dirtyRate = int('dirtyRate', o.dirtyRate, defaults.dirtyRate, 1, 0xffffffff);
  const cleanDflt = defaultsCleanEveryExplicit && dirtyRate === defaults.dirtyRate ? defaults.cleanEvery : defaultCleanEvery(dirtyRate);
  const cleanEvery = int('cleanEvery', o.cleanEvery, cleanDflt, 1, 1 << 30);
  const memBytes = int('memBytes', o.memBytes, defaults.memBytes, PAGE_SIZE, MAX_DASHBOARD_MEM_BYTES);
  if (memBytes % PAGE_SIZE !== 0) throw new RequestError(`memBytes: ${memBytes} is not a multiple of 4 KiB`);
  const vcpus = int('vcpus', o.vcpus, defaults.vcpus, 1, 64);
  const seed = int('seed', o.seed, defaults.seed, 0, 0xffffffff);
  const addressing = pick('addressing', o.addressing, ['identity', 'paged'] as const, defaults.addressing ?? 'identity');
  return { mode, workload, dirtyRate, cleanEvery, memBytes, vcpus, seed, addressing };
}

/**
 * POST /api/walk: `{vcpu, address | gfn, access, cold}`. `address` is a gva
 * (paged) or gpa (identity), as a number or a "0x…" string; `gfn` names a
 * heatmap page instead; access is read (default), write or fetch.
 */
export function parseWalkRequest(body: unknown): WalkRequest {
  const o = asObject(body);
  const vcpu = int('vcpu', o.vcpu, 0, 0, 63);
  let address: number | null = null;
  if (o.address !== undefined && o.address !== null && o.address !== '') {
    const text = String(o.address).trim().replace(/_/g, '');
    const n = /^0x[0-9a-f]+$/i.test(text) ? Number.parseInt(text.slice(2), 16) : /^\d+$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(n) || n >= 2 ** 48) throw new RequestError(`address: expected a 48-bit address (0x… or decimal), got ${JSON.stringify(o.address)}`);
    address = n;
  }
  const gfn = address === null ? int('gfn', o.gfn, -1, 0, 2 ** 36 - 1) : null;
  if (address === null && gfn === -1) throw new RequestError('give an address (0x…) or a gfn');
  const access = pick('access', o.access, ['read', 'write', 'fetch'] as const, 'read');
  if (o.cold !== undefined && typeof o.cold !== 'boolean') throw new RequestError(`cold: expected true or false, got ${JSON.stringify(o.cold)}`);
  return { vcpu, address, gfn, need: access === 'write' ? PERM_W : access === 'fetch' ? PERM_X : PERM_R, cold: o.cold === true };
}

/** POST /api/migrate: `{policy, bandwidth (MiB/s), latency (ms)}`, all optional. */
export function parseMigrateRequest(body: unknown): MigrateConfig {
  const o = asObject(body);
  return {
    policy: pick<PolicyName>('policy', o.policy, POLICY_NAMES, 'xen'),
    bandwidthMiBps: num('bandwidth', o.bandwidth, 1000, 10),
    latencyMs: num('latency', o.latency, 0.1, 0),
  };
}
