/**
 * npt-wp: Xen HAP log-dirty on AMD NPT by write protection. A write to a
 * ram_logdirty page raises #NPF (VMEXIT_NPF) with P=1, RW=1; the lazy global
 * change clears the U/S bit of top-level entries ("recalc", p2m-pt.c), so the
 * re-arm also surfaces as #NPF, resolved one 512-entry table at a time.
 * See hap-log-dirty.ts.
 */
import type { ModeFactory } from './dirty-mode.ts';
import { HapLogDirtyMode } from './hap-log-dirty.ts';

export const createNptWp: ModeFactory = (domain, opts) => {
  const mode = new HapLogDirtyMode(domain, 'npt-wp', 'npt', opts);
  domain.setPagingMode(mode);
  return mode;
};
