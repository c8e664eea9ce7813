/**
 * Xen's log-dirty toolstack operations (`paging_domctl`,
 * `paging_log_dirty_op`, `paging_log_dirty_enable/disable`,
 * `paging_free_log_dirty_bitmap` in `xen/arch/x86/mm/paging.c`), driven by
 * `XEN_DOMCTL_shadow_op` (domctl 10) and its continuation.
 *
 * Per domain: the bitmap trie (`top`, `allocs`, `failed_allocs`), the
 * counters `fault_count` and `dirty_count`, the mode flag (PG_log_dirty),
 * and the preemption state {dom, op, done, i4, i3} of an unfinished op.
 *
 * PEEK / CLEAN, as Xen does them (no write is ever lost):
 * ```
 *   [FINAL: mark frames Xen holds write-mapped]
 *   pause (synchronous, counted) ─► flush hardware-cached dirty state (PML)
 *   ─► busy check ─► stats snapshot ─► ENOMEM check ─► walk: copy / clear
 *      leaves, preemptible after each L3 slot and each L4 slot (ERESTART:
 *      domain STAYS paused, the continuation resumes at {i4, i3, done})
 *   ─► CLEAN: counters := 0, mechanism.clean() (re-arm, still paused)
 *   ─► unpause
 * ```
 * Writes before the pause are in the tree (or in a PML buffer, flushed
 * under the pause); writes after the unpause fault against re-armed
 * tracking. Nothing can happen in between, because the domain is paused.
 *
 * Units: pfn counts (`pages`), bytes for the caller's bitmap. Counters are
 * plain numbers standing for Xen's `unsigned long`; `dirtyCount` goes below
 * zero only where Xen's would wrap (mark-clean after a partial CLEAN), and
 * the stats snapshot then reports 2^32 − 1 as Xen would.
 */
import { DirtyTrie, LOGDIRTY_MAX_PFNS, LOGDIRTY_NODE_ENTRIES, PFNS_PER_L3_SLOT, PFNS_PER_L4_SLOT } from './dirty-trie.ts';
import { BoundedPageAllocator, type LogDirtyPageAllocator } from './page-allocator.ts';

/** `XEN_DOMCTL_shadow_op` sub-ops (`xen/include/public/domctl.h`). */
export const SHADOW_OP_OFF = 0;
export const SHADOW_OP_ENABLE_TEST = 1;
export const SHADOW_OP_ENABLE_LOGDIRTY = 2;
export const SHADOW_OP_CLEAN = 11;
export const SHADOW_OP_PEEK = 12;
export const SHADOW_OP_GET_ALLOCATION = 30;
export const SHADOW_OP_SET_ALLOCATION = 31;
export const SHADOW_OP_ENABLE = 32;

/** Mode flags of SHADOW_OP_ENABLE. */
export const SHADOW_ENABLE_REFCOUNT = 1 << 1;
export const SHADOW_ENABLE_LOG_DIRTY = 1 << 2;
export const SHADOW_ENABLE_TRANSLATE = 1 << 3;
export const SHADOW_ENABLE_EXTERNAL = 1 << 4;
/** The only mode bit PEEK/CLEAN accept: last round of a save. */
export const SHADOW_LOGDIRTY_FINAL = 1 << 0;

const U32_MAX = 0xffffffff;

/**
 * The dirty-tracking mechanism of a paging mode (HAP write-protect on
 * EPT/NPT, PML, ARM stage-2, shadow). Xen's `log_dirty.ops` plus the PML
 * flush hook. Every method is called with the domain paused.
 */
export interface LogDirtyMechanism {
  /**
   * Start tracking writes. Called after the log-dirty mode flag is set, so
   * marks made from here on are recorded (HAP: enable PML, then global
   * ram_rw → ram_logdirty; shadow: drop shadows so pages map read-only).
   */
  enable(): void;
  /**
   * Stop tracking writes (HAP: disable PML, global ram_logdirty → ram_rw).
   * Called after the mode flag is cleared; the tree is freed next.
   */
  disable(): void;
  /**
   * Re-arm write tracking after a CLEAN has cleared the bitmap (HAP: global
   * rw → logdirty + guest TLB flush; shadow: blow all shadows).
   */
  clean(): void;
  /**
   * Push dirty state cached by hardware into the tree (PML buffers of every
   * vCPU → LogDirty.markPfnDirty). A no-op without PML.
   */
  flushHardwareCached(): void;
  /**
   * Optional, for SHADOW_LOGDIRTY_FINAL on HVM guests: mark every frame the
   * hypervisor holds write-mapped (`hvm_mapped_guest_frames_mark_dirty`).
   * Called before the pause.
   */
  markWriteMappedFrames?(): void;
}

/** A domain that can be paused (Xen `domain_pause` / `domain_unpause`). */
export interface PausableDomain {
  /** Synchronous: no vCPU of the domain runs when this returns. Nests (counted). */
  pause(): void;
  /** Undoes one pause(); vCPUs run again when the count reaches 0. */
  unpause(): void;
  /** Outstanding pauses. */
  readonly pauseCount: number;
}

/** `xen_domctl_shadow_op.stats`. */
export interface LogDirtyStats {
  /** Fixed shadow page faults since the last CLEAN (always 0 under HAP). */
  readonly faultCount: number;
  /** Distinct pages newly dirtied since the last CLEAN. */
  readonly dirtyCount: number;
}

export type LogDirtyErrno = 'EINVAL' | 'EBUSY' | 'ENOMEM' | 'ERESTART' | 'EFAULT';

export type ShadowOpResult =
  | { readonly ok: true; readonly pages: number; readonly stats: LogDirtyStats }
  | { readonly ok: false; readonly errno: LogDirtyErrno; readonly message: string };

/** `xen_domctl_shadow_op` as the toolstack fills it in. */
export interface ShadowOpRequest {
  /** SHADOW_OP_*. */
  readonly op: number;
  /** Mode flags (SHADOW_ENABLE_* for ENABLE, SHADOW_LOGDIRTY_FINAL for PEEK/CLEAN). */
  readonly mode?: number;
  /**
   * PEEK/CLEAN: how many pfns to cover (`sc->pages`). Default: the bitmap's
   * size in bits, or the whole tree (2^42) without a bitmap.
   */
  readonly pages?: number;
  /** PEEK/CLEAN: where to copy the bitmap; null/absent: no copy (CLEAN still cleans). */
  readonly dirtyBitmap?: Uint8Array | Uint32Array | null;
  /** Domain id of the caller (Xen `current->domain`); default 0 (dom0). */
  readonly callerDomId?: number;
}

/** `paging.preempt`: who owns the unfinished op and where it stopped. */
export interface LogDirtyPreemptState {
  /** Caller domain owning the unfinished op, or null when none is. */
  dom: number | null;
  op: number;
  /** pfns already walked (PEEK/CLEAN). */
  done: number;
  i4: number;
  i3: number;
}

export interface LogDirtyOptions {
  readonly domain: PausableDomain;
  /** May be bound later with {@link LogDirty.bindMechanism} (mechanisms usually need the LogDirty to mark). */
  readonly mechanism?: LogDirtyMechanism;
  /** Paging pool for the trie; default: unbounded. */
  readonly allocator?: LogDirtyPageAllocator;
  /** This domain's id (an op from the domain on itself is EINVAL); default 1. */
  readonly domId?: number;
  /**
   * Preemption budget: how many L3 slots (2^24 pfns each) one call walks or
   * frees before Xen's `hypercall_preempt_check()` says yes. Default
   * Infinity: never preempted. Tests set 1 to force ERESTART.
   */
  readonly preemptAfterL3Slots?: number;
}

export class LogDirty {
  /** The bitmap tree with `allocs` and `failedAllocs`. */
  readonly trie: DirtyTrie;
  /** Fixed shadow faults since the last CLEAN (Xen `fault_count`). */
  faultCount = 0;
  /** Distinct pages newly dirtied since the last CLEAN (Xen `dirty_count`). */
  dirtyCount = 0;
  /** Preemption state of an unfinished op. */
  readonly preempt: LogDirtyPreemptState = { dom: null, op: 0, done: 0, i4: 0, i3: 0 };
  /** See {@link LogDirtyOptions.preemptAfterL3Slots}; may be changed between calls. */
  preemptAfterL3Slots: number;
  readonly domId: number;
  private readonly domain: PausableDomain;
  private mechanism: LogDirtyMechanism | null;
  /** PG_log_dirty. */
  private enabled = false;
  /**
   * The op log: toolstack operations this domain completed, by kind. A CLEAN
   * or PEEK with XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL counts in its own column
   * too (the saver's last CLEAN, xg_sr_save.c `suspend_and_send_dirty`).
   * Continuations of a preempted op count once, when it completes.
   */
  readonly opCounts = { enable: 0, off: 0, peek: 0, clean: 0, peekFinal: 0, cleanFinal: 0 };
  /** L3 slots walked in the current call (the preemption check's budget). */
  private slotsThisCall = 0;

  constructor(options: LogDirtyOptions) {
    this.domain = options.domain;
    this.mechanism = options.mechanism ?? null;
    this.trie = new DirtyTrie(options.allocator ?? new BoundedPageAllocator());
    this.domId = options.domId ?? 1;
    this.preemptAfterL3Slots = options.preemptAfterL3Slots ?? Infinity;
  }

  bindMechanism(mechanism: LogDirtyMechanism): void {
    this.mechanism = mechanism;
  }

  /** Whether the domain is in log-dirty mode (PG_log_dirty). */
  get isEnabled(): boolean {
    return this.enabled;
  }

  // ---- Marking API for mechanisms (called from fault and flush paths) ----

  /**
   * `paging_mark_pfn_dirty`: sets the bit of `pfn`. No-op unless log-dirty
   * is on; counts a 0→1 transition in dirtyCount. An allocation failure
   * loses the mark and counts in failedAllocs (every later PEEK/CLEAN is
   * ENOMEM until OFF). Returns whether the bit went 0→1.
   */
  markPfnDirty(pfn: number): boolean {
    if (!this.enabled) return false;
    if (!this.trie.markDirty(pfn)) return false;
    this.dirtyCount++;
    return true;
  }

  /** `paging_mark_pfn_clean`: clears the bit; dirtyCount −1 on 1→0. Never allocates. */
  markPfnClean(pfn: number): boolean {
    if (!this.enabled) return false;
    if (!this.trie.markClean(pfn)) return false;
    this.dirtyCount--;
    return true;
  }

  /** Whether `pfn`'s bit is set (`paging_mfn_is_dirty` by pfn). */
  isPfnDirty(pfn: number): boolean {
    return this.enabled && this.trie.test(pfn);
  }

  /** Shadow mode only: one fixed shadow #PF (`shadow/multi.c` "fixed" path). */
  incrementFaultCount(): void {
    this.faultCount++;
  }

  /** Xen's snapshot: min(counter, 2^32 − 1), a wrapped (negative) counter as 2^32 − 1. */
  snapshotStats(): LogDirtyStats {
    return { faultCount: clampU32(this.faultCount), dirtyCount: clampU32(this.dirtyCount) };
  }

  // ---- Toolstack operations ----

  /** A fresh `XEN_DOMCTL_shadow_op` (paging_domctl, resuming = false). */
  domctl(req: ShadowOpRequest): ShadowOpResult {
    return this.pagingDomctl(req, false);
  }

  /**
   * The hypercall continuation of an op that returned ERESTART
   * (`paging_domctl_continuation`): same caller, same op, same bitmap.
   */
  continueOp(req: ShadowOpRequest): ShadowOpResult {
    return this.pagingDomctl(req, true);
  }

  /** Runs an op and its continuations to the end (what libxc sees: never ERESTART). */
  run(req: ShadowOpRequest): ShadowOpResult {
    let r = this.domctl(req);
    while (!r.ok && r.errno === 'ERESTART') r = this.continueOp(req);
    return r;
  }

  enableLogDirty(callerDomId = 0): ShadowOpResult {
    return this.run({ op: SHADOW_OP_ENABLE_LOGDIRTY, callerDomId });
  }

  off(callerDomId = 0): ShadowOpResult {
    return this.run({ op: SHADOW_OP_OFF, callerDomId });
  }

  /** PEEK to completion. */
  peek(dirtyBitmap: Uint8Array | Uint32Array | null, pages?: number, mode = 0): ShadowOpResult {
    return this.run({ op: SHADOW_OP_PEEK, dirtyBitmap, pages: pages ?? defaultPages(dirtyBitmap), mode });
  }

  /** CLEAN to completion. */
  clean(dirtyBitmap: Uint8Array | Uint32Array | null, pages?: number, mode = 0): ShadowOpResult {
    return this.run({ op: SHADOW_OP_CLEAN, dirtyBitmap, pages: pages ?? defaultPages(dirtyBitmap), mode });
  }

  private pagingDomctl(req: ShadowOpRequest, resuming: boolean): ShadowOpResult {
    const caller = req.callerDomId ?? 0;
    const mechanism = this.mechanism;
    if (mechanism === null) {
      return fail('EINVAL', `domain ${this.domId} has no dirty-tracking mechanism bound; bind one before shadow_op ${opName(req.op)}`);
    }
    if (caller === this.domId) {
      return fail('EINVAL', `domain ${this.domId} tried a paging op (${opName(req.op)}) on itself; issue it from another domain`);
    }
    const p = this.preempt;
    const busy = resuming ? p.dom !== caller || p.op !== req.op : p.dom !== null && req.op !== SHADOW_OP_GET_ALLOCATION;
    if (busy) {
      return fail(
        'EBUSY',
        resuming
          ? `no unfinished ${opName(req.op)} by domain ${caller} to continue on domain ${this.domId}` +
              (p.dom === null ? '' : ` (domain ${p.dom} owns an unfinished ${opName(p.op)})`)
          : `domain ${this.domId} has an unfinished ${opName(p.op)} by domain ${p.dom}; continue it (it returned ERESTART) before ${opName(req.op)}`,
      );
    }
    const mode = req.mode ?? 0;
    switch (req.op) {
      case SHADOW_OP_ENABLE:
        if ((mode & SHADOW_ENABLE_LOG_DIRTY) === 0) {
          return fail('EINVAL', `shadow_op ENABLE with mode ${mode} is not modelled; pass SHADOW_ENABLE_LOG_DIRTY or use ENABLE_LOGDIRTY`);
        }
        return this.enableOp(mechanism);
      case SHADOW_OP_ENABLE_LOGDIRTY:
        return this.enableOp(mechanism);
      case SHADOW_OP_OFF:
        return this.disableOp(mechanism, caller, resuming);
      case SHADOW_OP_CLEAN:
      case SHADOW_OP_PEEK:
        if ((mode & ~SHADOW_LOGDIRTY_FINAL) !== 0) {
          return fail('EINVAL', `${opName(req.op)} accepts only the LOGDIRTY_FINAL mode bit, got mode ${mode}`);
        }
        return this.logDirtyOp(mechanism, req, caller, resuming);
      default:
        return fail('EINVAL', `shadow_op ${req.op} (${opName(req.op)}) is not supported; use OFF, ENABLE_LOGDIRTY, CLEAN or PEEK`);
    }
  }

  /** `paging_log_dirty_enable`. The tree is not cleared: OFF freed it. */
  private enableOp(mechanism: LogDirtyMechanism): ShadowOpResult {
    if (this.enabled) {
      return fail('EINVAL', `log-dirty is already enabled on domain ${this.domId}; turn it OFF then ENABLE again to restart tracking`);
    }
    this.domain.pause();
    this.enabled = true; // mode flag first, so the mechanism's marks count
    mechanism.enable();
    this.domain.unpause();
    this.opCounts.enable++;
    return { ok: true, pages: 0, stats: this.snapshotStats() };
  }

  /** `paging_log_dirty_disable` + `paging_free_log_dirty_bitmap`. */
  private disableOp(mechanism: LogDirtyMechanism, caller: number, resuming: boolean): ShadowOpResult {
    if (!resuming) {
      this.domain.pause();
      if (this.enabled) {
        this.enabled = false;
        mechanism.disable();
      }
    }
    const r = this.freeBitmap(caller);
    if (r !== null) return r; // ERESTART: still paused
    this.domain.unpause();
    this.opCounts.off++;
    return { ok: true, pages: 0, stats: this.snapshotStats() };
  }

  /** Frees the tree one L3 slot at a time; returns null when done, else ERESTART. */
  private freeBitmap(caller: number): ShadowOpResult | null {
    const trie = this.trie;
    const p = this.preempt;
    if (trie.top === null) {
      // Xen returns early here and leaves failed_allocs set if the *top*
      // allocation was what failed; we reset it so ENOMEM ends at OFF as
      // the spec (§1, step 5) states.
      trie.failedAllocs = 0;
      p.dom = null;
      return null;
    }
    if (p.dom === null) {
      p.done = 0;
      p.i4 = 0;
      p.i3 = 0;
    }
    this.slotsThisCall = 0;
    let i4 = p.i4;
    let i3 = p.i3;
    let restart = false;
    for (; i4 < LOGDIRTY_NODE_ENTRIES; i4++, i3 = 0) {
      if (!trie.hasL3(i4)) continue;
      for (; i3 < LOGDIRTY_NODE_ENTRIES; i3++) {
        if (!trie.freeL3Slot(i4, i3)) continue;
        if (i3 < LOGDIRTY_NODE_ENTRIES - 1 && this.preemptCheck()) {
          p.i4 = i4;
          p.i3 = i3 + 1;
          restart = true;
          break;
        }
      }
      if (restart) break;
      trie.freeL4Slot(i4);
      if (i4 < LOGDIRTY_NODE_ENTRIES - 1 && this.preemptCheck()) {
        p.i4 = i4 + 1;
        p.i3 = 0;
        restart = true;
        break;
      }
    }
    if (restart) {
      p.dom = caller;
      p.op = SHADOW_OP_OFF;
      return fail('ERESTART', `OFF on domain ${this.domId} preempted at L4 slot ${p.i4}, L3 slot ${p.i3}; domain stays paused — continue the op`);
    }
    trie.freeTop(); // also resets failedAllocs
    p.dom = null;
    return null;
  }

  /** `paging_log_dirty_op`: PEEK and CLEAN. */
  private logDirtyOp(mechanism: LogDirtyMechanism, req: ShadowOpRequest, caller: number, resuming: boolean): ShadowOpResult {
    const domain = this.domain;
    if (!resuming) {
      if ((req.mode ?? 0) & SHADOW_LOGDIRTY_FINAL) mechanism.markWriteMappedFrames?.();
      domain.pause();
      // Only a fresh op flushes: during a continuation the domain has been
      // paused all along, so hardware can hold nothing new.
      mechanism.flushHardwareCached();
    }
    const p = this.preempt;
    if (p.dom === null) {
      p.done = 0;
      p.i4 = 0;
      p.i3 = 0;
    } else if (p.dom !== caller || p.op !== req.op) {
      // Unreachable through paging_domctl's own check, kept as Xen keeps it.
      domain.unpause();
      return fail('EBUSY', `domain ${this.domId} has an unfinished ${opName(p.op)} by domain ${p.dom}`);
    }
    const clean = req.op === SHADOW_OP_CLEAN;
    const stats = this.snapshotStats(); // before copying; each continuation re-snapshots
    const bitmap = req.dirtyBitmap ?? null;
    const requested = req.pages ?? defaultPages(bitmap);

    if (this.trie.failedAllocs !== 0) {
      p.dom = null;
      domain.unpause();
      return fail(
        'ENOMEM',
        `${this.trie.failedAllocs} log-dirty bitmap page allocation(s) failed on domain ${this.domId}, so dirty pages were lost; ` +
          'turn log-dirty OFF and ENABLE it again (with a larger paging pool) and resend all memory',
      );
    }
    const dst = bitmap === null ? null : bytesOf(bitmap);
    const needBytes = Math.ceil(Math.min(requested, LOGDIRTY_MAX_PFNS) / 8);
    if (dst !== null && dst.byteLength < needBytes) {
      // Xen would fault mid-walk with -EFAULT after cleaning what it had
      // copied; we refuse up front so a short buffer loses no dirty bits.
      p.dom = null;
      domain.unpause();
      return fail('EFAULT', `dirty bitmap buffer holds ${dst.byteLength} bytes but pages=${requested} needs ${needBytes}`);
    }

    // The walk: L4 slot by L4 slot, L3 slot by L3 slot, preemptible after each.
    const trie = this.trie;
    let pages = p.done;
    let i4 = p.i4;
    let i3 = p.i3;
    let restart = false;
    this.slotsThisCall = 0;
    for (; pages < requested && i4 < LOGDIRTY_NODE_ENTRIES; i4++, i3 = 0) {
      for (; pages < requested && i3 < LOGDIRTY_NODE_ENTRIES; i3++) {
        const first = i4 * PFNS_PER_L4_SLOT + i3 * PFNS_PER_L3_SLOT;
        pages += trie.copyOut(dst, pages / 8, first, Math.min(PFNS_PER_L3_SLOT, requested - pages), clean);
        if (i3 < LOGDIRTY_NODE_ENTRIES - 1 && this.preemptCheck()) {
          p.i4 = i4;
          p.i3 = i3 + 1;
          restart = true;
          break;
        }
      }
      if (!restart && i4 < LOGDIRTY_NODE_ENTRIES - 1 && this.preemptCheck()) {
        p.i4 = i4 + 1;
        p.i3 = 0;
        restart = true;
      }
      if (restart) break;
    }
    if (restart) {
      p.dom = caller;
      p.op = req.op;
      p.done = pages;
      return fail(
        'ERESTART',
        `${opName(req.op)} on domain ${this.domId} preempted after ${pages} of ${requested} pages; domain stays paused — continue the op`,
      );
    }
    p.dom = null;
    if (clean) {
      this.faultCount = 0;
      this.dirtyCount = 0;
    }
    const walked = Math.min(requested, pages);
    if (clean) mechanism.clean(); // re-arm while still paused
    domain.unpause();
    const final = ((req.mode ?? 0) & SHADOW_LOGDIRTY_FINAL) !== 0;
    if (clean) {
      this.opCounts.clean++;
      if (final) this.opCounts.cleanFinal++;
    } else {
      this.opCounts.peek++;
      if (final) this.opCounts.peekFinal++;
    }
    return { ok: true, pages: walked, stats };
  }

  /**
   * `hypercall_preempt_check()` after a completed L3 or L4 slot: true once
   * this call has walked its budget of L3 slots.
   */
  private preemptCheck(): boolean {
    return ++this.slotsThisCall >= this.preemptAfterL3Slots;
  }
}

function clampU32(counter: number): number {
  return counter < 0 || counter > U32_MAX ? U32_MAX : counter;
}

function fail(errno: LogDirtyErrno, message: string): ShadowOpResult {
  return { ok: false, errno, message };
}

function defaultPages(bitmap: Uint8Array | Uint32Array | null | undefined): number {
  return bitmap == null ? LOGDIRTY_MAX_PFNS : bitmap.byteLength * 8;
}

function bytesOf(bitmap: Uint8Array | Uint32Array): Uint8Array {
  return bitmap instanceof Uint8Array ? bitmap : new Uint8Array(bitmap.buffer, bitmap.byteOffset, bitmap.byteLength);
}

const OP_NAMES: Readonly<Record<number, string>> = {
  [SHADOW_OP_OFF]: 'OFF',
  [SHADOW_OP_ENABLE_TEST]: 'ENABLE_TEST',
  [SHADOW_OP_ENABLE_LOGDIRTY]: 'ENABLE_LOGDIRTY',
  [SHADOW_OP_CLEAN]: 'CLEAN',
  [SHADOW_OP_PEEK]: 'PEEK',
  [SHADOW_OP_GET_ALLOCATION]: 'GET_ALLOCATION',
  [SHADOW_OP_SET_ALLOCATION]: 'SET_ALLOCATION',
  [SHADOW_OP_ENABLE]: 'ENABLE',
};

/** Name of a shadow_op code, for messages. */
export function opName(op: number): string {
  return OP_NAMES[op] ?? `op ${op}`;
}
