/**
 * ept-wp: Xen HAP log-dirty on Intel EPT by write protection, without PML.
 * ram_logdirty entries are read/execute only; the first write to a page raises
 * an EPT violation (exit 48), Xen marks the gfn and makes that 4K page rw; CLEAN
 * re-arms with the lazy global change (EPT misconfig, exit 49, one 512-entry
 * leaf table per exit). See hap-log-dirty.ts.
 */
import type { ModeFactory } from './dirty-mode.ts';
import { HapLogDirtyMode } from './hap-log-dirty.ts';

export const createEptWp: ModeFactory = (domain, opts) => {
  const mode = new HapLogDirtyMode(domain, 'ept-wp', 'ept', opts);
  domain.setPagingMode(mode);
  return mode;
};
