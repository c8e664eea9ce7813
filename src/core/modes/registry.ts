/**
 * CLI mode names → the p2m format they need and the factory that installs
 * them. Each mode's file registers itself here by one line.
 */
import type { P2mFormatName } from '../p2m/p2m-format.ts';
import { MODE_NAMES, type ModeFactory, type ModeName } from './dirty-mode.ts';

export interface ModeEntry {
  readonly name: ModeName;
  readonly format: P2mFormatName;
  readonly create: ModeFactory;
  /** One line for --help and the README. */
  readonly summary: string;
}

export const MODES: Partial<Record<ModeName, ModeEntry>> = {};

export class UnknownModeError extends Error {
  readonly userFacing = true;
  constructor(readonly mode: string) {
    super(`unknown mode '${mode}' (expected one of: ${MODE_NAMES.join(', ')})`);
    this.name = 'UnknownModeError';
  }
}

export function modeEntry(name: string): ModeEntry {
  const e = (MODES as Record<string, ModeEntry | undefined>)[name];
  if (e === undefined) throw new UnknownModeError(name);
  return e;
}
