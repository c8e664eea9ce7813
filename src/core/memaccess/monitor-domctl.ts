/**
 * The monitor ring's domctls (xen/common/vm_event.c vm_event_domctl for
 * XEN_DOMCTL_VM_EVENT_OP_MONITOR, vm_event_enable / vm_event_disable) and
 * XEN_DOMCTL_set_access_required (xen/common/domctl.c).
 *
 *  - ENABLE (0): -EBUSY if a ring already exists (one agent at a time),
 *    -EOPNOTSUPP if HVM_PARAM_MONITOR_RING_PFN is 0; maps the ring page,
 *    allocates an unbound event channel, returns its port.
 *  - DISABLE (1): pauses the domain; -EBUSY while vCPUs wait for a slot;
 *    unpauses throttled vCPUs only (sync-paused ones stay paused, as read);
 *    drops the ring.
 *  - RESUME (2): vm_event_resume; -ENODEV without a ring.
 *  - set_access_required (64): pauses the domain, sets the flag, unpauses.
 *
 * The ring page is a 4 KiB Uint8Array this module allocates and hands to the
 * listener (Xen: a guest frame both map); both ends read and write its bytes.
 */
import { EBUSY, ENODEV, EOPNOTSUPP, type XenError, xenError } from './errno.ts';
import type { MemAccessLayer } from './mem-access-layer.ts';
import { VmEventDomain } from './vm-event-domain.ts';
import { SharedRingPage } from './vm-event-ring.ts';

export type MonitorEnableResult = { readonly ok: true; readonly port: number; readonly page: SharedRingPage } | XenError;
export type DomctlResult = { readonly ok: true } | XenError;

export function monitorEnable(layer: MemAccessLayer): MonitorEnableResult {
  const d = layer.domain;
  if (layer.monitor !== null) return xenError(EBUSY, `domain ${d.id} already has a monitor ring (one listener at a time)`);
  if (layer.monitorRingPfn === 0) return xenError(EOPNOTSUPP, `domain ${d.id} has no HVM_PARAM_MONITOR_RING_PFN`);
  const page = new SharedRingPage();
  const port = layer.nextPort++;
  layer.monitor = new VmEventDomain(d, layer.vcpuState, page, port);
  return { ok: true, port, page };
}

export function monitorDisable(layer: MemAccessLayer): DomctlResult {
  const ved = layer.monitor;
  if (ved === null) return { ok: true };
  const d = layer.domain;
  d.pause();
  const rc = ved.disable();
  if (rc === 0) layer.monitor = null;
  d.unpause();
  return rc === 0 ? { ok: true } : xenError(rc, `domain ${d.id}: vCPUs are waiting for a ring slot`);
}

/** XEN_VM_EVENT_RESUME. */
export function monitorResume(layer: MemAccessLayer): DomctlResult {
  if (layer.monitor === null) return xenError(ENODEV, `domain ${layer.domain.id} has no monitor ring`);
  layer.monitor.resume();
  return { ok: true };
}

/** XEN_DOMCTL_set_access_required. */
export function setAccessRequired(layer: MemAccessLayer, required: boolean): DomctlResult {
  const d = layer.domain;
  d.pause();
  layer.accessRequired = required;
  d.unpause();
  return { ok: true };
}
