/**
 * Every built-in dirty-tracking mode, in every option variant, against the
 * one contract (src/testing/dirty-mode-contract.ts, also exported as
 * `memvisor/testing` for users' own modes). Iterates MODES, so a mode joins
 * by being registered.
 */
import type { ModeOptions } from './dirty-mode.ts';
import { MODES, type ModeEntry } from './registry.ts';
import { dirtyModeContract } from '../../testing/dirty-mode-contract.ts';

/** Option variants per mode; a mode not listed runs with {}. */
const VARIANTS: Record<string, readonly ModeOptions[]> = {
  'ept-pml': [{ pmlFlush: 'on-demand' }, { pmlFlush: 'every-exit' }],
  'arm-wp': [{ armDirtySet: 'bitmap' }, { armDirtySet: 'list' }],
  shadow: [{ shadowPool: 'xen' }, { shadowPool: 'prealloc' }],
};

const builtIn: ModeEntry[] = Object.values(MODES).filter((e) => e !== undefined);
dirtyModeContract(builtIn, { variants: VARIANTS });
