/**
 * npt-wp: Xen HAP log-dirty on AMD NPT by write protection. A write to a
 * ram_logdirty page raises #NPF (VMEXIT_NPF) with P=1, RW=1. The lazy global
 * change (p2m-pt.c p2m_pt_change_entry_type_global) clears U/S and A
 * (RECALC_FLAGS) in the present top-level entries; the next nested walk through
 * a marked entry takes a #NPF, and svm.c hands it to
 * p2m_pt_handle_deferred_changes → do_recalc, which pushes the marks one table
 * down along the faulting path and recomputes ONLY the faulting entry. So after
 * each CLEAN every 4 KiB page the guest touches, read, fetch or write, takes its
 * own #NPF, and a write to a page that is then ram_logdirty takes a second one
 * as a log-dirty write — unlike EPT, where one misconfig recomputes a whole
 * 512-entry table (P2mFormat.recalcScope). HapLogDirtyMode.faults tells the
 * kinds apart. See hap-log-dirty.ts.
 */
import type { ModeFactory } from './dirty-mode.ts';
import { HapLogDirtyMode } from './hap-log-dirty.ts';

export const createNptWp: ModeFactory = (domain, opts) => {
  const mode = new HapLogDirtyMode(domain, 'npt-wp', 'npt', opts);
  domain.setPagingMode(mode);
  return mode;
};
