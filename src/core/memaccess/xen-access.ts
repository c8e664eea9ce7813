/**
 * A vm_event listener in the spirit of Xen's tools/misc/xen-access.c (with
 * tools/libs/ctrl/xc_vm_event.c / xc_monitor.c), driving a MemAccessLayer
 * in-process.
 *
 * ```
 *  start():    xc_monitor_enable (ring page, port) ─► SHARED_RING_INIT + BACK_RING_INIT
 *              ─► max_gpfn ─► set_access_required ─► default access (pfn ~0)
 *              ─► range 0..max_gpfn−1 (nr = max_gpfn: gfn max_gpfn itself is not restricted, as in xen-access)
 *  poll():     while unconsumed requests: take one, check version, record it,
 *              [get_access (demo, as xen-access)], set that gfn to after_first if it differs,
 *              respond {version, vcpu_id, reason, flags & VCPU_PAUSED, mem_access body};
 *              then kick Xen (evtchn notify ⇒ vm_event_resume)
 *  shutdown(): default and range back to rwx, shutting_down, one more poll, xc_monitor_disable
 * ```
 * Modes: "write" = default rx, after_first rwx; "exec" = default rw, after_first rwx.
 * Events are kept in the order the ring delivered them, which is the order
 * the guest posted them.
 */
import { Access } from '../p2m/p2m-type.ts';
import { MemAccessError } from './errno.ts';
import type { MemAccessLayer } from './mem-access-layer.ts';
import { type AccessOpResult, type AccessOpStats, ACCESS_PFN_DEFAULT, getMemAccess, maximumGpfn, setMemAccess } from './mem-access-op.ts';
import { monitorDisable, monitorEnable, monitorResume, setAccessRequired } from './monitor-domctl.ts';
import {
  VM_EVENT_FLAG_VCPU_PAUSED, VM_EVENT_INTERFACE_VERSION, VM_EVENT_REASON_MEM_ACCESS, type VmEvent, accessString,
} from './vm-event-abi.ts';
import { BackRing } from './vm-event-ring.ts';

export const XEN_ACCESS_MODES = ['write', 'exec'] as const;
export type XenAccessMode = (typeof XEN_ACCESS_MODES)[number];

/** One mem_access event as the listener saw it. */
export interface AccessEvent {
  /** Position in the ring's request stream (0, 1, ...). */
  readonly seq: number;
  readonly vcpu: number;
  readonly gfn: number;
  /** gpa & 0xFFF. */
  readonly offset: number;
  /** xen-access's "rwx" string: r/w/x or '-' per MEM_ACCESS_R/W/X. */
  readonly access: string;
  /** MEM_ACCESS_* flags. */
  readonly flags: number;
  /** Guest-linear address, or -1 when not valid. */
  readonly gla: number;
  /** The vCPU was paused for it (sync event). */
  readonly paused: boolean;
}

export interface XenAccessOptions {
  /** xen-access -m: access_required = 1 (a violation with no listener crashes the domain). */
  readonly required?: boolean;
}

export interface XenAccessStats {
  requests: number;
  responses: number;
  /** Requests dropped for an interface version mismatch. */
  badVersion: number;
  /** Event-channel kicks to Xen. */
  kicks: number;
  /** Access hypercalls (continuations included). */
  readonly ops: AccessOpStats;
}

export class XenAccess {
  readonly defaultAccess: Access;
  readonly afterFirstAccess: Access;
  readonly events: AccessEvent[] = [];
  readonly stats: XenAccessStats = { requests: 0, responses: 0, badVersion: 0, kicks: 0, ops: { hypercalls: 0, continuations: 0, gfnsSet: 0 } };
  /** xenaccess->max_gpfn. */
  maxGpfn = -1;
  port = -1;
  shuttingDown = false;
  private back: BackRing | null = null;

  constructor(readonly layer: MemAccessLayer, readonly mode: XenAccessMode, readonly options: XenAccessOptions = {}) {
    this.defaultAccess = mode === 'write' ? Access.RX : Access.RW;
    this.afterFirstAccess = Access.RWX;
  }

  get attached(): boolean {
    return this.back !== null;
  }

  start(): void {
    const en = monitorEnable(this.layer);
    if (!en.ok) throw new MemAccessError('xc_monitor_enable', en.errno, en.message);
    en.page.init();
    this.back = new BackRing(en.page);
    this.port = en.port;
    this.maxGpfn = maximumGpfn(this.layer);
    setAccessRequired(this.layer, this.options.required === true);
    this.check('xc_set_mem_access(default)', setMemAccess(this.layer, this.defaultAccess, ACCESS_PFN_DEFAULT, 0, { stats: this.stats.ops }));
    this.check('xc_set_mem_access(range)', setMemAccess(this.layer, this.defaultAccess, 0, this.maxGpfn, { stats: this.stats.ops }));
  }

  /** One pass of xen-access's loop after a wake-up. Returns the requests handled. */
  poll(): number {
    const back = this.back;
    if (back === null) return 0;
    let n = 0;
    while (back.unconsumedRequests() > 0) {
      const req = back.consumeRequest();
      this.stats.requests++;
      if (req.version !== VM_EVENT_INTERFACE_VERSION) {
        this.stats.badVersion++;
        continue;
      }
      const rsp: VmEvent = {
        version: VM_EVENT_INTERFACE_VERSION, flags: req.flags & VM_EVENT_FLAG_VCPU_PAUSED, reason: req.reason,
        vcpuId: req.vcpuId, altp2mIdx: 0, memAccess: { gfn: 0, offset: 0, gla: 0, flags: 0 },
      };
      if (req.reason === VM_EVENT_REASON_MEM_ACCESS) {
        const ma = req.memAccess;
        if (!this.shuttingDown) this.check('xc_get_mem_access', getMemAccess(this.layer, ma.gfn));
        this.events.push({
          seq: this.stats.requests - 1, vcpu: req.vcpuId, gfn: ma.gfn, offset: ma.offset, access: accessString(ma.flags),
          flags: ma.flags, gla: ma.gla, paused: (req.flags & VM_EVENT_FLAG_VCPU_PAUSED) !== 0,
        });
        if (this.defaultAccess !== this.afterFirstAccess) {
          this.check('xc_set_mem_access(gfn)', setMemAccess(this.layer, this.afterFirstAccess, ma.gfn, 1, { stats: this.stats.ops }));
        }
        rsp.memAccess = { ...ma };
      }
      back.produceResponse(rsp);
      this.stats.responses++;
      n++;
    }
    // Tell Xen the responses are there (xenevtchn_notify ⇒ vm_event_resume).
    this.stats.kicks++;
    monitorResume(this.layer);
    return n;
  }

  /** xen-access on a signal: open everything again, drain once more, detach. */
  shutdown(): void {
    if (this.back === null) return;
    this.check('xc_set_mem_access(default rwx)', setMemAccess(this.layer, Access.RWX, ACCESS_PFN_DEFAULT, 0, { stats: this.stats.ops }));
    this.check('xc_set_mem_access(range rwx)', setMemAccess(this.layer, Access.RWX, 0, this.maxGpfn, { stats: this.stats.ops }));
    this.shuttingDown = true;
    this.poll();
    const r = monitorDisable(this.layer);
    if (!r.ok) throw new MemAccessError('xc_monitor_disable', r.errno, r.message);
    this.back = null;
  }

  private check(op: string, r: AccessOpResult): void {
    if (!r.ok) throw new MemAccessError(op, r.errno, r.message);
  }
}
