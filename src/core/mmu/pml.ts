/**
 * Intel Page-Modification Logging, the hardware side (SDM Vol. 3C §29.3.6;
 * VMCS fields: PML address, 16-bit guest PML index). One per vCPU.
 *
 *   log frame (4 KiB, a host frame) = 512 × u64 guest-physical addresses, 4K-aligned
 *   index: next free slot, counts down from 511; after slot 0 it wraps to 0xFFFF
 *
 * Before the CPU sets an EPT accessed or dirty flag it checks the index:
 * outside [0, 511] ⇒ PML-full VM exit (reason 62), the flag is not set and the
 * access does not happen (it is retried after the hypervisor empties the log).
 * Otherwise it sets the flag and, only for a D 0→1 transition, writes the GPA
 * at log[index] and decrements the index: accessed-flag updates are checked,
 * never logged. (Xen presets A in the entries it writes, so in practice only
 * D updates reach the check; mmu/walker.ts p2mWalk.)
 *
 * drain() is Xen's ept_vcpu_flush_pml_buffer read side: index 511 ⇒ empty,
 * index ≥ 512 ⇒ all 512 entries, else entries index+1 .. 511; then index := 511.
 */
import type { FramePool } from '../memory/frame-pool.ts';

export const PML_ENTRIES = 512;
export const PML_INDEX_START = PML_ENTRIES - 1;

export class PmlUnit {
  enabled = false;
  /** GUEST_PML_INDEX (16 bits). */
  index = PML_INDEX_START;
  /** Host frame holding the log; 0 until enabled. */
  mfn = 0;
  /** GPAs written to the log since creation. */
  logged = 0;

  constructor(private readonly pool: FramePool) {}

  /** Allocates the log frame (from the host pool, as Xen takes it from the paging pool) and arms the index. */
  enable(): void {
    if (this.enabled) return;
    if (this.mfn === 0) this.mfn = this.pool.alloc();
    this.index = PML_INDEX_START;
    this.enabled = true;
  }

  /** Turns logging off and frees the log frame; the caller drains first (Xen flushes before disabling). */
  disable(): void {
    if (!this.enabled) return;
    this.enabled = false;
    this.pool.free(this.mfn);
    this.mfn = 0;
    this.index = PML_INDEX_START;
  }

  /** Whether the next EPT A or D 0→1 must raise a PML-full exit. */
  isFull(): boolean {
    return this.index > PML_INDEX_START;
  }

  /** Number of GPAs waiting in the log. */
  pending(): number {
    if (this.index === PML_INDEX_START) return 0;
    if (this.index > PML_INDEX_START) return PML_ENTRIES;
    return PML_INDEX_START - this.index;
  }

  /** Hardware write of one GPA (caller checked !isFull()). */
  log(gfn: number): void {
    const w = this.pool.wordsOf(this.mfn);
    const i = this.pool.wordOffset(this.mfn) + 2 * this.index;
    w[i] = ((gfn & 0xfffff) << 12) >>> 0;
    w[i + 1] = Math.floor(gfn / 0x100000) >>> 0;
    this.index = (this.index - 1) & 0xffff;
    this.logged++;
  }

  /** Calls fn(gfn) for each logged entry in log order (slot index+1 .. 511) and resets the index. Returns the count. */
  drain(fn: (gfn: number) => void): number {
    if (!this.enabled || this.index === PML_INDEX_START) return 0;
    const start = this.index > PML_INDEX_START ? 0 : this.index + 1;
    const w = this.pool.wordsOf(this.mfn);
    const base = this.pool.wordOffset(this.mfn);
    let n = 0;
    // Slot 511 was written first; Xen walks start..511 (newest first).
    for (let k = start; k < PML_ENTRIES; k++) {
      const lo = w[base + 2 * k]!;
      const hi = w[base + 2 * k + 1]!;
      fn(hi * 0x100000 + (lo >>> 12));
      n++;
    }
    this.index = PML_INDEX_START;
    return n;
  }
}
