/**
 * Xen's per-ring vm_event state (struct vm_event_domain, xen/common/vm_event.c)
 * for the monitor ring, with monitor_traps (xen/common/monitor.c): slot
 * reservations, the last-chance wait queue, throttling, wake order and resume.
 *
 * ```
 *   guest vCPU fault ─► trap(): grab a slot ──ok──► [sync: VCPU_PAUSED, vm_event pause] ─► put()
 *                                  │ none free                                          │
 *                                  └► wait queue (vCPU paused) ◄── wake ◄── slot freed ◄─┘ release + wake
 *   put(): copy into ring, push, release reservation, wake; a vCPU of the domain leaving
 *          avail < max_vcpus and not vm_event-paused is throttled (pause flag, blocked++)
 *   resume(): for each response: consume (slot freed, wake), skip bad version / vcpu_id,
 *          ignore if the vCPU has no vm_event pause, else apply flags, VCPU_PAUSED ⇒ unpause
 *   wake(): wait queue first (≤ avail waiters), else throttled vCPUs round-robin from
 *          lastVcpuWakeUp + 1 (≤ avail)
 * ```
 * avail = RING_FREE_REQUESTS − targetProducers − foreignProducers.
 *
 * Determinism: a woken waiter's continuation (Xen: the vCPU re-runs its fault
 * handler, grabs the slot and puts its request) runs when the outermost entry
 * point (trap, put, resume, disable) returns, in wake order; one that finds no
 * slot again goes back to the tail of the queue, as wait_event loops.
 *
 * Response flags beyond VCPU_PAUSED (EMULATE, NOWRITE, SET_EMUL_*, DENY,
 * TOGGLE_SINGLESTEP, ALTERNATE_P2M, SET_REGISTERS, GET_NEXT_INTERRUPT) are
 * counted in `stats.responseFlags`, not acted on: the simulator has no
 * instruction emulator, registers or altp2m views; the paused access simply
 * re-executes.
 */
import type { Domain } from '../domain/domain.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import {
  RING_SIZE, VM_EVENT_FLAG_FOREIGN, VM_EVENT_FLAG_VCPU_PAUSED, VM_EVENT_INTERFACE_VERSION, type VmEvent,
} from './vm-event-abi.ts';
import { FrontRing, type SharedRingPage } from './vm-event-ring.ts';

/**
 * Per-vCPU vm_event state that outlives a ring (it lives in struct vcpu in Xen):
 * vm_event_pause_count and the ring's pause flag bit (_VPF_mem_access).
 */
export class VcpuEventState {
  /** v->vm_event_pause_count: outstanding synchronous events. */
  readonly pauseCount: Int32Array;
  /** _VPF_mem_access in v->pause_flags: throttled by a nearly full ring. */
  readonly throttled: Uint8Array;

  constructor(vcpus: number) {
    this.pauseCount = new Int32Array(vcpus);
    this.throttled = new Uint8Array(vcpus);
  }
}

/** A guest vCPU sleeping on the wait queue with the request it could not post. */
interface Waiter {
  readonly vcpu: Vcpu;
  readonly sync: boolean;
  readonly req: VmEvent;
}

/** Counters, sampled by whoever watches. */
export interface VmEventStats {
  requests: number;
  responses: number;
  /** Throttle pauses (vm_event_mark_and_pause). */
  throttles: number;
  /** Throttled vCPUs woken (vm_event_wake_blocked). */
  throttleWakes: number;
  /** Times a guest vCPU found no slot and slept on the wait queue. */
  waits: number;
  /** Waiters woken (vm_event_wake_queued). */
  waitWakes: number;
  /** Synchronous pauses (vm_event_vcpu_pause). */
  syncPauses: number;
  /** VCPU_PAUSED responses that unpaused a vCPU. */
  unpauses: number;
  /** Responses dropped: interface version mismatch. */
  badVersion: number;
  /** Responses dropped: no such vCPU. */
  badVcpu: number;
  /** Responses ignored: the vCPU had no pending vm_event pause. */
  ignored: number;
  /** Unpause requests that would have made vm_event_pause_count negative. */
  unpauseUnderflow: number;
  /** Event-channel notifications to the listener. */
  notifications: number;
  /** Most requests ever held unconsumed-or-unanswered in the ring. */
  maxInUse: number;
  /** Response flags seen on applied responses, by bit (index = bit number). */
  readonly responseFlags: number[];
}

/** Outcome of trap(). */
export const TRAP_PUT = 0;
/** No free slot: the vCPU sleeps on the wait queue (paused) until woken. */
export const TRAP_WAITING = 1;

export class VmEventDomain {
  readonly front: FrontRing;
  targetProducers = 0;
  foreignProducers = 0;
  /** Throttled vCPUs (ved->blocked). */
  blocked = 0;
  lastVcpuWakeUp = 0;
  readonly waitQueue: Waiter[] = [];
  readonly stats: VmEventStats = {
    requests: 0, responses: 0, throttles: 0, throttleWakes: 0, waits: 0, waitWakes: 0, syncPauses: 0, unpauses: 0,
    badVersion: 0, badVcpu: 0, ignored: 0, unpauseUnderflow: 0, notifications: 0, maxInUse: 0, responseFlags: new Array<number>(16).fill(0),
  };
  /** Called after each request is posted (notify_via_xen_event_channel). */
  onNotify: (() => void) | null = null;

  private readonly woken: Waiter[] = [];
  private depth = 0;

  constructor(readonly domain: Domain, readonly vcpuState: VcpuEventState, readonly page: SharedRingPage, readonly port: number) {
    this.front = new FrontRing(page);
  }

  /** vm_event_ring_available. */
  available(): number {
    const a = this.front.freeRequests() - this.targetProducers - this.foreignProducers;
    if (a < 0) throw new Error(`vm_event: reservations exceed free slots (${a})`);
    return a;
  }

  /**
   * vm_event_grab_slot: reserve a slot (target or foreign producer). Returns 0
   * or -EBUSY (as a positive errno, 16) when none is available.
   */
  grabSlot(foreign: boolean): number {
    if (this.available() === 0) return 16;
    if (foreign) this.foreignProducers++;
    else this.targetProducers++;
    return 0;
  }

  /** Gives back a reservation that will not be used (vm_event_cancel_slot). */
  cancelSlot(foreign: boolean): void {
    this.enter();
    this.releaseSlot(foreign);
    this.leave();
  }

  /**
   * monitor_traps for an event raised by guest vCPU `vcpu`: claim a slot
   * (sleeping on the wait queue when none is free), set vcpu_id, pause the
   * vCPU for a sync event (VCPU_PAUSED), put the request.
   */
  trap(vcpu: Vcpu, sync: boolean, req: VmEvent): number {
    this.enter();
    let r = TRAP_PUT;
    if (this.grabSlot(false) === 0) {
      this.completeTrap(vcpu, sync, req);
    } else {
      this.waitQueue.push({ vcpu, sync, req });
      vcpu.pause();
      this.stats.waits++;
      r = TRAP_WAITING;
    }
    this.leave();
    return r;
  }

  /**
   * vm_event_put_request with a reservation held. `producer` is the guest vCPU
   * posting it, or null for a foreign producer (another domain).
   */
  put(req: VmEvent, producer: Vcpu | null): void {
    this.enter();
    const foreign = producer === null;
    if (foreign) req.flags |= VM_EVENT_FLAG_FOREIGN;
    req.version = VM_EVENT_INTERFACE_VERSION;
    const front = this.front;
    if (front.freeRequests() <= 0) throw new Error('vm_event: put without a free slot (reservation accounting broken)');
    front.produce(req);
    front.pushRequests();
    this.stats.requests++;
    const inUse = RING_SIZE - front.freeRequests();
    if (inUse > this.stats.maxInUse) this.stats.maxInUse = inUse;
    this.releaseSlot(foreign);
    // Throttle the producing vCPU on its way out if the ring is nearly full.
    const avail = this.available();
    if (producer !== null && avail < this.domain.vcpus.length && this.vcpuState.pauseCount[producer.id] === 0) {
      this.markAndPause(producer);
    }
    this.stats.notifications++;
    this.onNotify?.();
    this.leave();
  }

  /** vm_event_resume (XEN_VM_EVENT_RESUME or the listener's event-channel kick): drain every response. */
  resume(): number {
    this.enter();
    let n = 0;
    const vcpus = this.domain.vcpus;
    const st = this.stats;
    while (this.front.unconsumedResponses() > 0) {
      const rsp = this.front.consumeResponse();
      n++;
      st.responses++;
      this.wake();
      if (rsp.version !== VM_EVENT_INTERFACE_VERSION) {
        st.badVersion++;
        continue;
      }
      const v = vcpus[rsp.vcpuId];
      if (v === undefined) {
        st.badVcpu++;
        continue;
      }
      if (this.vcpuState.pauseCount[v.id] === 0) {
        st.ignored++;
        continue;
      }
      for (let b = 1; b < st.responseFlags.length; b++) if ((rsp.flags & (1 << b)) !== 0) st.responseFlags[b]!++;
      if ((rsp.flags & VM_EVENT_FLAG_VCPU_PAUSED) !== 0) this.vcpuUnpause(v);
    }
    this.leave();
    return n;
  }

  /**
   * vm_event_disable's ring side: refused (-EBUSY, 16) while vCPUs wait for a
   * slot; unpauses throttled vCPUs only — sync-paused ones stay paused, as Xen
   * does. Returns 0 or the errno.
   */
  disable(): number {
    if (this.waitQueue.length > 0 || this.woken.length > 0) return 16;
    const vcpus = this.domain.vcpus;
    for (const v of vcpus) {
      if (this.vcpuState.throttled[v.id] === 1) {
        this.vcpuState.throttled[v.id] = 0;
        v.unpause();
        this.blocked--;
      }
    }
    return 0;
  }

  // ---------------------------------------------------------------- internals

  /** The part of monitor_traps after the slot is held. */
  private completeTrap(vcpu: Vcpu, sync: boolean, req: VmEvent): void {
    req.vcpuId = vcpu.id;
    if (sync) {
      req.flags |= VM_EVENT_FLAG_VCPU_PAUSED;
      this.vcpuState.pauseCount[vcpu.id]!++;
      vcpu.pause();
      this.stats.syncPauses++;
    }
    this.put(req, vcpu);
  }

  /** vm_event_vcpu_unpause: one step down, never below zero. */
  private vcpuUnpause(v: Vcpu): void {
    if (this.vcpuState.pauseCount[v.id]! <= 0) {
      this.stats.unpauseUnderflow++;
      return;
    }
    this.vcpuState.pauseCount[v.id]!--;
    v.unpause();
    this.stats.unpauses++;
  }

  /** vm_event_mark_and_pause. */
  private markAndPause(v: Vcpu): void {
    if (this.vcpuState.throttled[v.id] === 1) return;
    this.vcpuState.throttled[v.id] = 1;
    v.pause();
    this.blocked++;
    this.stats.throttles++;
  }

  /** vm_event_release_slot. */
  private releaseSlot(foreign: boolean): void {
    if (foreign) this.foreignProducers--;
    else this.targetProducers--;
    this.wake();
  }

  /** vm_event_wake: the wait queue has priority over throttled vCPUs. */
  private wake(): void {
    if (this.waitQueue.length > 0) this.wakeQueued();
    else this.wakeBlocked();
  }

  /** vm_event_wake_queued: wake_up_nr(wq, avail) — FIFO. */
  private wakeQueued(): void {
    let avail = this.available() - this.woken.length;
    while (avail > 0 && this.waitQueue.length > 0) {
      this.woken.push(this.waitQueue.shift()!);
      this.stats.waitWakes++;
      avail--;
    }
  }

  /** vm_event_wake_blocked: round-robin from lastVcpuWakeUp + 1 so high-numbered vCPUs do not starve. */
  private wakeBlocked(): void {
    let avail = this.available();
    if (avail === 0 || this.blocked === 0) return;
    const vcpus = this.domain.vcpus;
    const n = vcpus.length;
    for (let i = this.lastVcpuWakeUp + 1, j = 0; j < n; i++, j++) {
      const k = i % n;
      if (this.blocked === 0 || avail === 0) break;
      if (this.vcpuState.throttled[k] === 1) {
        this.vcpuState.throttled[k] = 0;
        vcpus[k]!.unpause();
        avail--;
        this.blocked--;
        this.lastVcpuWakeUp = k;
        this.stats.throttleWakes++;
      }
    }
  }

  private enter(): void {
    this.depth++;
  }

  /** Leaving the outermost entry point: run woken waiters' continuations in wake order. */
  private leave(): void {
    if (this.depth === 1) {
      while (this.woken.length > 0) {
        const w = this.woken.shift()!;
        w.vcpu.unpause(); // off the wait queue
        if (this.grabSlot(false) === 0) {
          this.completeTrap(w.vcpu, w.sync, w.req);
        } else {
          w.vcpu.pause();
          this.waitQueue.push(w);
        }
      }
    }
    this.depth--;
  }
}
