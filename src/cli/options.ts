/**
 * Flag validation shared by the commands: every flag is parsed once, here,
 * into plain values; a bad one is a UsageError naming the flag and the text.
 */
import { MODE_NAMES } from '../core/modes/dirty-mode.ts';
import { SYNTHETIC_WORKLOADS } from '../core/workload/synthetic.ts';
import { UsageError } from './errors.ts';
import { parseSize } from './parse-size.ts';

export function intFlag(flag: string, text: string | undefined, dflt: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (text === undefined) return dflt;
  const t = text.replace(/_/g, '');
  if (!/^\d+$/.test(t)) throw new UsageError(`${flag}: expected an integer, got '${text}'`);
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

export function modeFlag(text: string | undefined, dflt: string): string {
  return choiceFlag('--mode', text, MODE_NAMES, dflt as (typeof MODE_NAMES)[number]);
}

export function workloadFlag(text: string): string {
  return choiceFlag('--workload', text, SYNTHETIC_WORKLOADS, 'uniform');
}
