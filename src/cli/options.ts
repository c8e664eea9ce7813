/**
 * Flag validation shared by the commands: every flag is parsed once, here,
 * into plain values; a bad one is a UsageError naming the flag and the text.
 */
import { readFileSync } from 'node:fs';
import { modeNames } from '../core/modes/registry.ts';
import { SYNTHETIC_WORKLOADS } from '../core/workload/synthetic.ts';
import { UsageError } from './errors.ts';
import { formatSize } from './output.ts';
import { parseSize } from './parse-size.ts';

/** The bytes of the file a flag names (a certificate, a key); an unreadable file is a UsageError. */
export function fileFlag(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(`${flag}: cannot read '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export function intFlag(flag: string, text: string | undefined, dflt: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (text === undefined) return dflt;
  const t = text.replace(/_/g, '');
  // A sign is let through so that '-1' is named out of range, not 'not an integer'.
  if (!/^-?\d+$/.test(t)) throw new UsageError(`${flag}: expected an integer, got '${text}'`);
  const n = Number(t);
  if (n < min || n > max) throw new UsageError(`${flag}: ${n} is out of range (${min}..${max})`);
  return n;
}

export function numberFlag(flag: string, text: string | undefined, dflt: number, min = 0): number {
  if (text === undefined) return dflt;
  const n = Number(text);
  if (!Number.isFinite(n) || n < min) throw new UsageError(`${flag}: expected a number ≥ ${min}, got '${text}'`);
  return n;
}

/**
 * `--io-timeout SECONDS` (migrate, receive): how long a migration link may
 * make no progress before the attempt ends. More than 0, at most a day. In ms.
 */
export function ioTimeoutFlag(text: string | undefined, dfltSeconds = 30): number {
  if (text === undefined) return dfltSeconds * 1000;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 86_400) throw new UsageError(`--io-timeout: expected seconds, more than 0 and at most 86400, got '${text}'`);
  return n * 1000;
}

export function choiceFlag<T extends string>(flag: string, text: string | undefined, choices: readonly T[], dflt: T): T {
  if (text === undefined) return dflt;
  if (!(choices as readonly string[]).includes(text)) {
    throw new UsageError(`${flag}: unknown value '${text}' (expected one of: ${choices.join(', ')})`);
  }
  return text as T;
}

export function sizeFlag(flag: string, text: string | undefined, dflt: number): number {
  if (text === undefined) return dflt;
  const bytes = parseSize(text, { flag });
  if (bytes % 4096 !== 0) throw new UsageError(`${flag}: ${text} is not a multiple of 4 KiB`);
  return bytes;
}

/** Guest-physical space a 4-level p2m maps (48-bit gpa: P2M_MAX_GFN + 1 frames). */
const MAX_GUEST_BYTES = 2 ** 48;
/** Synthetic workloads draw page indices below 2^32 (workload/synthetic-base.ts). */
const MAX_SYNTHETIC_BYTES = 2 ** 32 * 4096;

export interface MemLimits {
  /** A synthetic workload drives the guest (page indices below 2^32). */
  readonly synthetic: boolean;
  /** Every page is populated on this host: the memory that needs (bytes), and why. */
  readonly populated?: { readonly hostBytes: number; readonly copies: number; readonly why: string };
}

/**
 * `--mem`: a size the engine can hold — within the 48-bit guest-physical
 * space, within a synthetic workload's 2^32 pages, and, for a guest populated
 * up front, within the host's memory.
 */
export function memFlag(text: string | undefined, dflt: number, limits: MemLimits): number {
  const bytes = sizeFlag('--mem', text, dflt);
  const shown = text ?? formatSize(bytes);
  if (bytes > MAX_GUEST_BYTES) throw new UsageError(`--mem: ${shown} is more than the 256 TiB a 4-level p2m maps (48-bit guest-physical addresses)`);
  if (limits.synthetic && bytes > MAX_SYNTHETIC_BYTES) {
    throw new UsageError(`--mem: ${shown} is more than the 16 TiB a synthetic workload addresses (2^32 pages); a trace may use up to 256 TiB`);
  }
  const p = limits.populated;
  if (p !== undefined && bytes * p.copies > p.hostBytes) {
    throw new UsageError(`--mem: ${shown} does not fit this machine's ${formatSize(p.hostBytes)} of memory: ${p.why}`);
  }
  return bytes;
}

/** --mode: a built-in mode or one a --plugin registered. */
export function modeFlag(text: string | undefined, dflt: string): string {
  return choiceFlag('--mode', text, modeNames(), dflt);
}

export function workloadFlag(text: string): string {
  return choiceFlag('--workload', text, SYNTHETIC_WORKLOADS, 'uniform');
}

/** The guest-shaping flags `run`, `trace` and `compare` share, parsed once. */
export interface GuestFlagValues {
  readonly memBytes: number;
  readonly vcpus: number;
  readonly addressing: 'identity' | 'paged';
  readonly pageSize: '4k' | '2m';
  readonly count: number;
  readonly seed: number;
}

export interface GuestFlagText {
  mem?: string | undefined;
  vcpus?: string | undefined;
  addressing?: string | undefined;
  pageSize?: string | undefined;
  count?: string | undefined;
  seed?: string | undefined;
}

/**
 * Default guest size: a trace under identity addressing needs the whole range
 * its addresses span (1 TiB, sparse: only touched pages cost memory); a
 * workload or a paged guest gets 1 GiB.
 */
export function parseGuestFlags(f: GuestFlagText, isTrace: boolean): GuestFlagValues {
  const addressing = choiceFlag('--addressing', f.addressing, ['identity', 'paged'] as const, 'identity');
  return {
    memBytes: memFlag(f.mem, isTrace && addressing === 'identity' ? 1024 ** 4 : 1024 ** 3, { synthetic: !isTrace }),
    vcpus: intFlag('--vcpus', f.vcpus, 1, 1, 256),
    addressing,
    pageSize: choiceFlag('--page-size', f.pageSize, ['4k', '2m'] as const, '4k'),
    count: intFlag('--count', f.count, 1_000_000),
    seed: intFlag('--seed', f.seed, 1, 0),
  };
}
