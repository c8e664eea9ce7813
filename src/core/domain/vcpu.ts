/**
 * A virtual CPU: runs guest access records through its MMU (TLB, walker) and
 * host memory, hands VM exits to the domain's paging mode, and counts.
 *
 * The hot path (run): a TLB hit is one Float64 compare, one flags test and the
 * data access, inline and allocation-free; misses, page-crossing accesses,
 * walks and exits go to colder methods. Counters are kept in locals during a
 * run and added to `stats` at its end.
 *
 * Record semantics: Fetch needs X, Load R, Store W (plus every dirty flag
 * set); a Modify is a load then a store; an access that crosses a page
 * boundary touches both pages (each translated; a store writes both). Store
 * values come from the domain's write sequence, one step per store or modify
 * record (deterministic for a trace, whatever the batch boundaries, exits or
 * pauses): lo = seq, hi = seq ^ 0x9e3779b9, written little-endian, `size` bytes. Loads fold what they read into `loadSum`.
 *
 * Units: addresses are gpa (1-D) or gva (2-D) in bytes; cycles at NOMINAL_HZ.
 */
import type { CostModel } from '../cost-model.ts';
import type { FramePool } from '../memory/frame-pool.ts';
import type { ExitAction } from '../mmu/exit-info.ts';
import {
  STAT_ACCESSES, STAT_COUNT, STAT_CYCLES, STAT_FETCHES, STAT_LOADS, STAT_PAGE_CROSSINGS, STAT_STORES, STAT_TLB_HITS,
  STAT_TLB_MISSES,
} from '../mmu/mmu-stats.ts';
import { loadLE, storeLE } from '../memory/le-bytes.ts';
import { TLB_NEED_BY_KIND, TLB_R, TLB_WD, TLB_X } from '../mmu/tlb.ts';
import { Mmu, type MmuOptions, XLATE_EXIT, XLATE_OK } from '../mmu/walker.ts';
import { PERM_R, PERM_W, PERM_X } from '../p2m/p2m-type.ts';
import { EXIT_REASON_COUNT } from '../vm-exit.ts';
import { AccessKind, type AccessBatch } from '../workload/access-batch.ts';
import type { Domain } from './domain.ts';

/** Outcome of one access. */
export const ACCESS_DONE = 0;
/** The vCPU paused (the access re-executes when it runs again). */
export const ACCESS_PAUSED = 1;
/** The domain crashed. */
export const ACCESS_CRASHED = 2;

/** Retries of one access before the domain is crashed as livelocked. */
export const MAX_RETRIES = 64;

const KIND_FETCH = 0;
const KIND_LOAD = 1;
const KIND_STORE = 2;
const KIND_MODIFY = 3;
const HI_MIX = 0x9e3779b9;

/** What the guest OS does about a guest page fault: fix and re-execute, skip the access, or crash. */
export type GuestFaultAction = 'retry' | 'skip' | 'crash';

/** The guest OS model's #PF handler (paged addressing). Without one, guest faults skip the access. */
export interface GuestFaultHandler {
  handleGuestFault(vcpu: Vcpu, gva: number, errorCode: number): GuestFaultAction;
}

export class Vcpu {
  readonly mmu: Mmu;
  /** Counters indexed by STAT_* (mmu-stats.ts). */
  readonly stats = new Float64Array(STAT_COUNT);
  /** VM exits indexed by ExitReason. */
  readonly exits = new Float64Array(EXIT_REASON_COUNT);
  /** vcpu_pause count (vm_event, throttling); the vCPU runs only at 0. */
  pauseCount = 0;
  /** XOR of every value loaded (so loads have an observable result). */
  loadSum = 0;
  /** Value of the last load(): low and high u32. */
  lastLo = 0;
  lastHi = 0;
  guestFaultHandler: GuestFaultHandler | null = null;

  private readonly pool: FramePool;
  private readonly costs: CostModel;
  private readonly exitCost: number;

  constructor(readonly domain: Domain, readonly id: number, mmuOpts: MmuOptions = {}) {
    this.mmu = new Mmu(domain.p2m, this.stats, { ...mmuOpts, costs: domain.costs });
    this.pool = domain.p2m.pool;
    this.costs = domain.costs;
    this.exitCost = domain.p2m.fmt.name === 'arm' ? domain.costs.vmexitRoundTripArm : domain.costs.vmexitRoundTripX86;
  }

  pause(): void {
    this.pauseCount++;
  }

  unpause(): void {
    if (this.pauseCount > 0) this.pauseCount--;
  }

  /** Adds hypervisor work to this vCPU's cycles. */
  chargeCycles(cycles: number): void {
    this.stats[STAT_CYCLES]! += cycles;
  }

  /**
   * Runs records [start, end) of `batch`. Returns the index of the first record
   * not executed: `end`, or earlier when the vCPU paused (that record re-executes
   * next time), the domain crashed, or `cycleBudget` cycles were spent.
   */
  run(batch: AccessBatch, start: number, end: number, cycleBudget = Infinity): number {
    if (this.pauseCount > 0 || this.domain.crashed) return start;
    const kinds = batch.kind;
    const addrs = batch.addr;
    const sizes = batch.size;
    const tlb = this.mmu.tlb;
    const tags = tlb.tag;
    const mfns = tlb.mfn;
    const tflags = tlb.flags;
    const mask = tlb.mask;
    const chunks = this.pool.bytes;
    const need = TLB_NEED_BY_KIND;
    const hitCost = this.costs.tlbHitAccess;
    const stats = this.stats;
    const dom = this.domain;
    const cycleLimit = stats[STAT_CYCLES]! + cycleBudget;
    const budgeted = cycleBudget !== Infinity;
    let seq = dom.writeSeq;
    let sum = this.loadSum;
    let hits = 0;
    let cycles = 0;
    let loads = 0;
    let stores = 0;
    let fetches = 0;
    let r = start;
    while (r < end) {
      const kind = kinds[r]!;
      const addr = addrs[r]!;
      const size = sizes[r]!;
      const page = Math.floor(addr / 4096);
      const off = addr - page * 4096;
      const s = page & mask;
      const nd = need[kind]!;
      if (tags[s] === page && (tflags[s]! & nd) === nd && off + size <= 4096) {
        const mfn = mfns[s]!;
        const b = chunks[mfn >>> 12]!;
        const o = ((mfn & 4095) << 12) + off;
        if (kind === KIND_STORE) {
          seq = (seq + 1) >>> 0;
          storeLE(b, o, size, seq, seq ^ HI_MIX);
          stores++;
          cycles += hitCost;
        } else if (kind === KIND_LOAD) {
          sum ^= loadLE(b, o, size);
          loads++;
          cycles += hitCost;
        } else if (kind === KIND_FETCH) {
          sum ^= b[o]!;
          fetches++;
          cycles += hitCost;
        } else {
          sum ^= loadLE(b, o, size);
          seq = (seq + 1) >>> 0;
          storeLE(b, o, size, seq, seq ^ HI_MIX);
          loads++;
          stores++;
          cycles += 2 * hitCost;
        }
        hits++;
        r++;
      } else {
        dom.writeSeq = seq;
        this.loadSum = sum;
        const st = this.slowRecord(kind, addr, size);
        seq = dom.writeSeq;
        sum = this.loadSum;
        if (st !== ACCESS_DONE) break;
        if (kind === KIND_LOAD) loads++;
        else if (kind === KIND_STORE) stores++;
        else if (kind === KIND_FETCH) fetches++;
        else {
          loads++;
          stores++;
        }
        r++;
      }
      if (budgeted && stats[STAT_CYCLES]! + cycles >= cycleLimit) break;
    }
    dom.writeSeq = seq;
    this.loadSum = sum;
    stats[STAT_ACCESSES]! += r - start;
    stats[STAT_TLB_HITS]! += hits;
    stats[STAT_CYCLES]! += cycles;
    stats[STAT_LOADS]! += loads;
    stats[STAT_STORES]! += stores;
    stats[STAT_FETCHES]! += fetches;
    return r;
  }

  /** One load of 1-8 bytes at addr through the MMU (value in lastLo/lastHi). Returns ACCESS_*. */
  load(addr: number, size: number): number {
    this.lastLo = 0;
    this.lastHi = 0;
    const st = this.accessRange(KIND_LOAD, addr, size, 0, 0);
    if (st === ACCESS_DONE) this.stats[STAT_ACCESSES]!++;
    return st;
  }

  /** One store of 1-8 bytes (lo = bytes 0-3, hi = bytes 4-7) at addr through the MMU. Returns ACCESS_*. */
  store(addr: number, size: number, lo: number, hi = 0): number {
    const st = this.accessRange(KIND_STORE, addr, size, lo, hi);
    if (st === ACCESS_DONE) this.stats[STAT_ACCESSES]!++;
    return st;
  }

  // ---------------------------------------------------------------- cold paths

  /** A record the inline path could not complete: a miss, a permission upgrade, or a page crossing. */
  private slowRecord(kind: number, addr: number, size: number): number {
    const dom = this.domain;
    if (kind === KIND_STORE || kind === KIND_MODIFY) {
      // The value is taken from the sequence once per record; if the record does not
      // complete (pause, crash) the sequence is rolled back so its re-execution stores
      // the same value, whatever exits happened on the way.
      const seq0 = dom.writeSeq;
      let st = ACCESS_DONE;
      if (kind === KIND_MODIFY) {
        this.lastLo = 0;
        this.lastHi = 0;
        st = this.accessRange(KIND_LOAD, addr, size, 0, 0);
        if (st !== ACCESS_DONE) return st;
        this.loadSum ^= this.lastLo ^ this.lastHi;
      }
      const seq = (dom.writeSeq = (seq0 + 1) >>> 0);
      st = this.accessRange(KIND_STORE, addr, size, seq, seq ^ HI_MIX);
      if (st !== ACCESS_DONE) dom.writeSeq = seq0;
      return st;
    }
    this.lastLo = 0;
    this.lastHi = 0;
    const st = this.accessRange(kind, addr, size, 0, 0);
    if (st === ACCESS_DONE) this.loadSum ^= kind === KIND_FETCH ? this.lastLo & 0xff : this.lastLo ^ this.lastHi;
    return st;
  }

  /** An access of `size` bytes at addr, split at a page boundary. */
  private accessRange(kind: number, addr: number, size: number, lo: number, hi: number): number {
    const page = Math.floor(addr / 4096);
    const off = addr - page * 4096;
    if (off + size <= 4096) return this.accessPart(kind, addr, 0, size, lo, hi);
    this.stats[STAT_PAGE_CROSSINGS]!++;
    const first = 4096 - off;
    const st = this.accessPart(kind, addr, 0, first, lo, hi);
    if (st !== ACCESS_DONE) return st;
    return this.accessPart(kind, (page + 1) * 4096, first, size - first, lo, hi);
  }

  /**
   * Bytes [from, from + n) of an access whose value is (lo, hi), at addr (all on
   * one page): TLB, else translate; exits go to the paging mode and the access
   * is retried as it says.
   */
  private accessPart(kind: number, addr: number, from: number, n: number, lo: number, hi: number): number {
    const mmu = this.mmu;
    const tlb = mmu.tlb;
    const stats = this.stats;
    const page = Math.floor(addr / 4096);
    const off = addr - page * 4096;
    const perm = kind === KIND_STORE ? PERM_W : kind === KIND_FETCH ? PERM_X : PERM_R;
    const tneed = kind === KIND_STORE ? TLB_WD : kind === KIND_FETCH ? TLB_X : TLB_R;
    for (let tries = 0; ; tries++) {
      let mfn = tlb.lookup(page, tneed);
      if (mfn >= 0) {
        stats[STAT_TLB_HITS]!++;
      } else {
        stats[STAT_TLB_MISSES]!++;
        const st = mmu.translate(addr, perm);
        if (st === XLATE_OK) {
          mfn = mmu.resMfn;
        } else {
          const action = st === XLATE_EXIT ? this.deliverExit(kind) : this.deliverGuestFault();
          if (action === 'retry') {
            if (tries < MAX_RETRIES) continue;
            this.domain.crash(`vCPU ${this.id}: access at 0x${addr.toString(16)} still faulting after ${MAX_RETRIES} retries`);
            return ACCESS_CRASHED;
          }
          if (action === 'skip') return ACCESS_DONE;
          if (action === 'pause') return ACCESS_PAUSED;
          if (!this.domain.crashed) this.domain.crash(`vCPU ${this.id}: unhandled fault at 0x${addr.toString(16)}`);
          return ACCESS_CRASHED;
        }
      }
      stats[STAT_CYCLES]! += this.costs.tlbHitAccess;
      const b = this.pool.bytes[mfn >>> 12]!;
      const o = ((mfn & 4095) << 12) + off;
      for (let k = 0; k < n; k++) {
        const byteIndex = from + k;
        if (kind === KIND_STORE) {
          b[o + k] = byteIndex < 4 ? lo >>> (8 * byteIndex) : hi >>> (8 * (byteIndex - 4));
        } else {
          const v = b[o + k]!;
          if (byteIndex < 4) this.lastLo = (this.lastLo | (v << (8 * byteIndex))) >>> 0;
          else this.lastHi = (this.lastHi | (v << (8 * (byteIndex - 4)))) >>> 0;
        }
      }
      return ACCESS_DONE;
    }
  }

  private deliverExit(kind: number): ExitAction {
    const e = this.mmu.exit;
    e.kind = kind;
    this.exits[e.reason]!++;
    this.stats[STAT_CYCLES]! += this.exitCost;
    const action = this.domain.pagingMode.handleExit(this, e);
    if (action === 'crash' && !this.domain.crashed) {
      this.domain.crash(`vCPU ${this.id}: ${this.domain.p2m.fmt.name} exit ${e.reason} at gpa 0x${e.gpa.toString(16)} not handled`);
    }
    return action;
  }

  private deliverGuestFault(): ExitAction {
    this.stats[STAT_CYCLES]! += this.costs.guestPageFault;
    const h = this.guestFaultHandler;
    if (h === null) return 'skip';
    return h.handleGuestFault(this, this.mmu.guestPfAddr, this.mmu.guestPfCode);
  }
}

// Keep the AccessKind numbering and ours in step.
if (AccessKind.Fetch !== KIND_FETCH || AccessKind.Load !== KIND_LOAD || AccessKind.Store !== KIND_STORE ||
  AccessKind.Modify !== KIND_MODIFY || PERM_X !== TLB_X || PERM_R !== TLB_R) {
  throw new Error('AccessKind / TLB bit numbering changed');
}
