/**
 * A simulated guest OS for `--addressing paged`: it owns the guest's x86-64
 * 4-level page tables, kept in guest memory in the hardware format
 * (formats/x86-pte.ts), and demand-maps 4 KiB pages: when the walker reports
 * a guest page fault (the guest walk found a non-present entry), the
 * hypervisor model calls handlePageFault(gva) as the guest kernel's #PF
 * handler would run, and the access is retried.
 *
 *   CR3 → PML4 (gva 47:39) → PDPT (38:30) → PD (29:21) → PT (20:12) → data
 *
 * Invariants:
 *  - every frame (tables and data) comes from a GuestFrameAllocator over
 *    [firstGfn, endGfn); table frames are zeroed before use, since guest
 *    memory may hold anything (a guest that has been running);
 *  - entries are written P | RW | US with A and D clear (NX clear, no PS), as
 *    an OS leaves them: the walker sets A/D, which is what dirty tracking in
 *    shadow mode and the guest-side A/D experiments observe;
 *  - a fault either maps the page completely or, when frames run out,
 *    changes nothing and returns false;
 *  - the high word of an entry is written before the low word (which holds
 *    P), so a concurrent walker never sees a present entry half written.
 *
 * The OS writes through GuestPhysAccess (the software view: no TLB, no A/D,
 * no exits), as the guest's stores to its own tables would land in memory.
 * Units: gva (48-bit numbers), gpa, gfn.
 */
import {
  GUEST_LEVELS,
  PTE_P,
  PTE_PS,
  PTE_RW,
  PTE_US,
  gvaIndex,
  pteGfn,
  pteHi,
  pteLo,
} from '../formats/x86-pte.ts';
import type { GuestPhysAccess } from '../memory/guest-phys.ts';
import { PAGE_MASK, PAGE_SIZE } from '../units.ts';
import { GuestFrameAllocator } from './guest-frame-allocator.ts';

/** Flags of every entry the OS writes: present, writable, user; A/D clear. */
export const GUEST_OS_PTE_FLAGS = PTE_P | PTE_RW | PTE_US;
/** Guest-virtual addresses are 48-bit (4-level paging). */
export const GVA_LIMIT = 2 ** 48;
const ENTRY_BYTES = 8;

export interface GuestOsOptions {
  /** First gfn the OS may allocate (default 0). */
  readonly firstGfn?: number;
  /** One past the last gfn it may allocate (default mem.pageCount). */
  readonly endGfn?: number;
  /**
   * Zero a data frame when mapping it, as an OS clears an anonymous page
   * (default false: the frame keeps its contents and only the page tables
   * are written).
   */
  readonly zeroDataFrames?: boolean;
}

/** The OS has no guest frame left for its first page table (CR3). */
export class OutOfFramesError extends Error {
  override readonly name = 'OutOfFramesError';
  readonly userFacing = true;
}

/** A gva outside the 48-bit guest-virtual space. */
export class GuestAddressError extends Error {
  override readonly name = 'GuestAddressError';
  readonly userFacing = true;
  constructor(readonly gva: number) {
    super(`guest-virtual address ${Number.isFinite(gva) ? `0x${gva.toString(16)}` : String(gva)} is outside the 48-bit address space`);
  }
}

const ZERO_PAGE = new Uint8Array(PAGE_SIZE);

export class GuestOs {
  private readonly mem: GuestPhysAccess;
  private readonly frames: GuestFrameAllocator;
  private readonly zeroData: boolean;
  private readonly rootGfn: number;
  /** 4 KiB pages currently mapped. */
  mappedPages = 0;
  /** Frames holding page tables, the PML4 included. */
  tableFrames = 0;
  /** Faults that mapped a page. */
  faultsHandled = 0;
  /** Faults refused for lack of frames. */
  outOfFrames = 0;

  constructor(mem: GuestPhysAccess, opts: GuestOsOptions = {}) {
    const firstGfn = opts.firstGfn ?? 0;
    const endGfn = opts.endGfn ?? mem.pageCount;
    if (endGfn > mem.pageCount) {
      throw new RangeError(`guest OS frame range ends at ${endGfn}, beyond the guest's ${mem.pageCount} frames`);
    }
    this.mem = mem;
    this.frames = new GuestFrameAllocator(firstGfn, endGfn);
    this.zeroData = opts.zeroDataFrames ?? false;
    const root = this.frames.alloc();
    if (root < 0) throw new OutOfFramesError(`guest OS: no guest frame for the PML4 in [${firstGfn}, ${endGfn})`);
    this.mem.writePage(root, ZERO_PAGE, 0);
    this.rootGfn = root;
    this.tableFrames = 1;
  }

  /** gfn of the PML4 (CR3's frame). */
  get cr3Gfn(): number {
    return this.rootGfn;
  }

  /** CR3 as a gpa (no PCID, PWT/PCD clear). */
  get cr3(): number {
    return this.rootGfn * PAGE_SIZE;
  }

  /** Frames the OS can still allocate. */
  get framesFree(): number {
    return this.frames.available;
  }

  /**
   * The guest's #PF handler for a not-present fault at `gva`: allocates the
   * missing tables and a data frame and maps the page. Returns true if the
   * page is mapped afterwards (also when it already was), false — with
   * nothing changed — when the guest is out of frames.
   * @throws GuestAddressError for a gva outside [0, 2^48).
   */
  handlePageFault(gva: number): boolean {
    checkGva(gva);
    const mem = this.mem;
    // Find the first level whose entry is not present.
    let table = this.rootGfn;
    let level = GUEST_LEVELS;
    for (; level >= 1; level--) {
      const entryGpa = table * PAGE_SIZE + gvaIndex(gva, level) * ENTRY_BYTES;
      const lo = mem.readU32(entryGpa);
      if ((lo & PTE_P) === 0) break;
      if (level === 1 || (lo & PTE_PS) !== 0) return true; // already mapped
      table = pteGfn(lo, mem.readU32(entryGpa + 4));
    }
    // Tables for levels level-1 .. 1, and the data frame.
    const needed = level;
    if (this.frames.available < needed) {
      this.outOfFrames++;
      return false;
    }
    for (; level >= 1; level--) {
      const gfn = this.frames.alloc();
      if (level > 1 || this.zeroData) mem.writePage(gfn, ZERO_PAGE, 0);
      const entryGpa = table * PAGE_SIZE + gvaIndex(gva, level) * ENTRY_BYTES;
      mem.writeU32(entryGpa + 4, pteHi(gfn, false));
      mem.writeU32(entryGpa, pteLo(gfn, GUEST_OS_PTE_FLAGS));
      table = gfn;
    }
    this.tableFrames += needed - 1;
    this.mappedPages++;
    this.faultsHandled++;
    return true;
  }

  /**
   * Software walk of the guest tables, for tests and tools: the gpa `gva`
   * maps to, or -1 if it is not mapped. Sets no A/D bits.
   */
  translate(gva: number): number {
    checkGva(gva);
    const mem = this.mem;
    let table = this.rootGfn;
    for (let level = GUEST_LEVELS; level >= 1; level--) {
      const entryGpa = table * PAGE_SIZE + gvaIndex(gva, level) * ENTRY_BYTES;
      const lo = mem.readU32(entryGpa);
      if ((lo & PTE_P) === 0) return -1;
      const gfn = pteGfn(lo, mem.readU32(entryGpa + 4));
      if (level === 1) return gfn * PAGE_SIZE + (gva & PAGE_MASK);
      if ((lo & PTE_PS) !== 0) {
        // A large page (not made by this OS, but honoured): low gva bits pass through.
        const span = 2 ** (12 + 9 * (level - 1));
        return gfn * PAGE_SIZE + (gva % span);
      }
      table = gfn;
    }
    return -1;
  }

  /**
   * Unmaps the 4 KiB page holding `gva` and frees its frame (tables stay).
   * As on real hardware the caller must then invalidate the vCPUs' TLB
   * entries for it (INVLPG). Returns false if it was not mapped.
   */
  unmap(gva: number): boolean {
    checkGva(gva);
    const mem = this.mem;
    let table = this.rootGfn;
    for (let level = GUEST_LEVELS; level >= 1; level--) {
      const entryGpa = table * PAGE_SIZE + gvaIndex(gva, level) * ENTRY_BYTES;
      const lo = mem.readU32(entryGpa);
      if ((lo & PTE_P) === 0) return false;
      const gfn = pteGfn(lo, mem.readU32(entryGpa + 4));
      if (level === 1) {
        mem.writeU32(entryGpa, 0);
        mem.writeU32(entryGpa + 4, 0);
        this.frames.free(gfn);
        this.mappedPages--;
        return true;
      }
      if ((lo & PTE_PS) !== 0) return false;
      table = gfn;
    }
    return false;
  }
}

/**
 * The most 4 KiB pages this OS can map at gvas [0, n × 4 KiB) — the span a
 * workload may range over under paged addressing — when it owns `frames`
 * guest frames: each page takes a data frame, and the tables take a PML4
 * plus one PDPT per 512 GiB, one PD per 1 GiB and one PT per 2 MiB of the
 * span. A workload over all `frames` pages would run the OS out of frames
 * (handlePageFault refuses) once it has touched all but the tables' worth.
 */
export function guestOsMappablePages(frames: number): number {
  const need = (n: number): number => n + 1 + Math.ceil(n / 512 ** 3) + Math.ceil(n / 512 ** 2) + Math.ceil(n / 512);
  // need(n) grows with n: the largest n with need(n) <= frames, by bisection.
  let lo = 0;
  let hi = Math.max(0, frames);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (need(mid) <= frames) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function checkGva(gva: number): void {
  if (!(gva >= 0 && gva < GVA_LIMIT) || !Number.isInteger(gva)) throw new GuestAddressError(gva);
}
