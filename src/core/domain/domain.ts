/**
 * A guest domain: a p2m in one format, guest memory over it, N vCPUs, the
 * hypervisor's paging mode (exit handler) and the domain-wide control state
 * (pause count, crash, write sequence).
 *
 * Scheduling is deterministic: one access stream is handed to the vCPUs in
 * turns of `quantumRecords` records (or, if set, `quantumCycles` cycles),
 * round-robin. The turn state survives across run() calls, so running a trace
 * in batches of any size gives the same interleaving.
 *
 * Pausing: pause()/unpause() count, as Xen's domain_pause (the toolstack
 * pauses around PEEK/CLEAN); run() on a paused domain is an error. A vCPU
 * paused by its paging mode (vm_event) stops the stream at its record; run()
 * returns that index and resumes there once it is unpaused.
 */
import { type CostModel, DEFAULT_COSTS } from '../cost-model.ts';
import { FramePool } from '../memory/frame-pool.ts';
import { STAT_COUNT, STAT_CYCLES } from '../mmu/mmu-stats.ts';
import { armFormat } from '../p2m/formats/arm.ts';
import { eptFormat } from '../p2m/formats/ept.ts';
import { nptFormat } from '../p2m/formats/npt.ts';
import { HW_EPT_AD, HW_PML, type P2mFormat, type P2mFormatName } from '../p2m/p2m-format.ts';
import { P2m } from '../p2m/p2m.ts';
import type { Access } from '../p2m/p2m-type.ts';
import { ORDER_4K, PAGE_SIZE } from '../units.ts';
import { EXIT_REASON_COUNT } from '../vm-exit.ts';
import type { AccessBatch } from '../workload/access-batch.ts';
import { GuestMemory } from './guest-memory.ts';
import { DefaultPagingMode, type PagingMode } from './paging-mode.ts';
import { Vcpu } from './vcpu.ts';

export class DomainStateError extends Error {}

export const P2M_FORMATS: Readonly<Record<P2mFormatName, P2mFormat>> = { ept: eptFormat, npt: nptFormat, arm: armFormat };

export interface DomainOptions {
  /** p2m format (object or name). */
  format: P2mFormat | P2mFormatName;
  /** Guest memory size in bytes (multiple of 4 KiB). */
  memBytes: number;
  vcpus?: number;
  /** Host frame pool (shared between domains, or to cap host memory). */
  pool?: FramePool;
  /** Guest paging on: accesses are gvas walked through the guest's CR3 (2-D). Default off (1-D). */
  guestPaging?: boolean;
  /** Records per vCPU turn (default 64). */
  quantumRecords?: number;
  /** Cycles per vCPU turn; when set, it replaces quantumRecords. */
  quantumCycles?: number;
  costs?: CostModel;
  tlbEntries?: number;
  nestedTlbEntries?: number;
  defaultAccess?: Access;
  /** 'on-demand' (default): frames on first touch; 'up-front': all populated now. */
  populate?: 'on-demand' | 'up-front';
  /** 0 (4 KiB, default) or 9 (2 MiB superpages where they fit). */
  populateOrder?: number;
  pagingMode?: PagingMode;
  /** Domain id, for messages. */
  id?: number;
}

export class Domain {
  readonly id: number;
  readonly pool: FramePool;
  readonly p2m: P2m;
  readonly memory: GuestMemory;
  readonly vcpus: Vcpu[] = [];
  readonly costs: CostModel;
  pagingMode: PagingMode;
  /** Write sequence: source of every stored value (see vcpu.ts). */
  writeSeq = 0;
  /** domain_pause count. */
  pauseCount = 0;
  crashed = false;
  crashReason = '';
  readonly quantumRecords: number;
  readonly quantumCycles: number;
  private cur = 0;
  private turnRecords = 0;
  private turnCycles = 0;

  constructor(opts: DomainOptions) {
    const fmt = typeof opts.format === 'string' ? P2M_FORMATS[opts.format] : opts.format;
    if (fmt === undefined) throw new DomainStateError(`unknown p2m format '${String(opts.format)}' (ept, npt, arm)`);
    if (!(opts.memBytes > 0) || opts.memBytes % PAGE_SIZE !== 0) {
      throw new DomainStateError(`guest memory size ${opts.memBytes} is not a positive multiple of 4 KiB`);
    }
    const n = opts.vcpus ?? 1;
    if (!Number.isInteger(n) || n < 1) throw new DomainStateError(`vCPU count ${n} must be a positive integer`);
    this.id = opts.id ?? 1;
    this.pool = opts.pool ?? new FramePool();
    this.costs = opts.costs ?? DEFAULT_COSTS;
    this.p2m = new P2m(this.pool, fmt, opts.defaultAccess !== undefined ? { defaultAccess: opts.defaultAccess } : {});
    this.memory = new GuestMemory(this.p2m, this.pool, opts.memBytes / PAGE_SIZE, opts.populateOrder ?? ORDER_4K);
    this.quantumRecords = opts.quantumRecords ?? 64;
    this.quantumCycles = opts.quantumCycles ?? 0;
    const mmuOpts = {
      ...(opts.tlbEntries !== undefined ? { tlbEntries: opts.tlbEntries } : {}),
      ...(opts.nestedTlbEntries !== undefined ? { nestedTlbEntries: opts.nestedTlbEntries } : {}),
    };
    for (let k = 0; k < n; k++) {
      const v = new Vcpu(this, k, mmuOpts);
      v.mmu.twoD = opts.guestPaging ?? false;
      this.vcpus.push(v);
    }
    this.p2m.onFlush = () => this.flushTlbs();
    this.pagingMode = new DefaultPagingMode();
    if (opts.pagingMode) this.setPagingMode(opts.pagingMode);
    if (opts.populate === 'up-front') this.memory.populateAll();
  }

  get format(): P2mFormat {
    return this.p2m.fmt;
  }

  /** Installs the hypervisor's exit handler (detaching the previous one). */
  setPagingMode(mode: PagingMode): void {
    this.pagingMode.detach?.(this);
    this.pagingMode = mode;
    mode.attach?.(this);
  }

  pause(): void {
    this.pauseCount++;
  }

  unpause(): void {
    if (this.pauseCount === 0) throw new DomainStateError(`domain ${this.id}: unpause without a matching pause`);
    this.pauseCount--;
  }

  get paused(): boolean {
    return this.pauseCount > 0;
  }

  crash(reason: string): void {
    if (this.crashed) return;
    this.crashed = true;
    this.crashReason = reason;
  }

  /** Flushes every vCPU's TLBs (the p2m's onFlush hook; also explicit). */
  flushTlbs(): void {
    for (const v of this.vcpus) v.mmu.flush();
  }

  /**
   * Turns on Intel PML for every vCPU (EPT only): EPT A/D on, a log frame per
   * vCPU, index 511 (vmx_domain_enable_pml). Existing entries keep their
   * flags until rewritten, as in Xen; the global logdirty change that follows
   * enabling log-dirty rewrites them.
   */
  enablePml(): void {
    if (this.p2m.fmt.name !== 'ept') throw new DomainStateError(`PML needs EPT (domain ${this.id} uses ${this.p2m.fmt.name})`);
    this.p2m.hwFlags |= HW_EPT_AD | HW_PML;
    for (const v of this.vcpus) v.mmu.pml.enable();
    this.flushTlbs();
  }

  /** Turns PML off on every vCPU; the caller drains the logs first (Xen flushes before disabling). */
  disablePml(): void {
    this.p2m.hwFlags &= ~(HW_EPT_AD | HW_PML);
    for (const v of this.vcpus) v.mmu.pml.disable();
    this.flushTlbs();
  }

  get pmlEnabled(): boolean {
    return (this.p2m.hwFlags & HW_PML) !== 0;
  }

  /**
   * Runs records [start, end) of `batch` on the vCPUs in turns. Returns the
   * index of the first record not executed: `end`, or earlier when the domain
   * crashed or the vCPU whose turn it is is paused.
   */
  run(batch: AccessBatch, start = 0, end = batch.length): number {
    if (this.pauseCount > 0) throw new DomainStateError(`domain ${this.id} is paused (count ${this.pauseCount}): it cannot run`);
    const vcpus = this.vcpus;
    let pos = start;
    while (pos < end && !this.crashed) {
      const v = vcpus[this.cur]!;
      if (v.pauseCount > 0) break;
      let next: number;
      if (this.quantumCycles > 0) {
        const budget = this.quantumCycles - this.turnCycles;
        const c0 = v.stats[STAT_CYCLES]!;
        next = v.run(batch, pos, end, budget);
        this.turnCycles += v.stats[STAT_CYCLES]! - c0;
        if (this.turnCycles >= this.quantumCycles) this.nextTurn();
      } else {
        const stop = Math.min(end, pos + this.quantumRecords - this.turnRecords);
        next = v.run(batch, pos, stop);
        this.turnRecords += next - pos;
        if (this.turnRecords >= this.quantumRecords) this.nextTurn();
      }
      if (next < end && (v.pauseCount > 0 || this.crashed)) return next;
      pos = next;
    }
    return pos;
  }

  /** The vCPU whose turn it is: the one that runs the next record. */
  get currentVcpu(): Vcpu {
    return this.vcpus[this.cur]!;
  }

  private nextTurn(): void {
    this.cur = (this.cur + 1) % this.vcpus.length;
    this.turnRecords = 0;
    this.turnCycles = 0;
  }

  /** Sum of every vCPU's counters (STAT_* indices). */
  totalStats(): Float64Array {
    const t = new Float64Array(STAT_COUNT);
    for (const v of this.vcpus) for (let k = 0; k < STAT_COUNT; k++) t[k]! += v.stats[k]!;
    return t;
  }

  /** Sum of every vCPU's exit counters (ExitReason indices). */
  totalExits(): Float64Array {
    const t = new Float64Array(EXIT_REASON_COUNT);
    for (const v of this.vcpus) for (let k = 0; k < EXIT_REASON_COUNT; k++) t[k]! += v.exits[k]!;
    return t;
  }

  /** Host memory this domain holds: populated frames plus p2m tables, in bytes. */
  get hostBytes(): number {
    return (this.memory.populatedFrames + this.p2m.tableFrames) * PAGE_SIZE;
  }
}
