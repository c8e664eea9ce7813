/**
 * Builds a runnable guest: a Domain in the right p2m format, with the guest
 * OS model attached under paged addressing, and a dirty-tracking mode
 * installed when one is named. Used by `run`, `trace`, `compare`, `migrate`
 * and the dashboard, so every command sets a guest up the same way.
 */
import { Domain } from '../domain/domain.ts';
import type { GuestFaultAction, Vcpu } from '../domain/vcpu.ts';
import type { DirtyMode, ModeOptions } from '../modes/dirty-mode.ts';
import { modeEntry } from '../modes/registry.ts';
import type { P2mFormatName } from '../p2m/p2m-format.ts';
import { ORDER_2M, ORDER_4K, PAGE_SIZE } from '../units.ts';
import type { GuestPhysAccess } from '../memory/guest-phys.ts';
import { GuestOs } from '../workload/guest-os.ts';

export type Addressing = 'identity' | 'paged';

export interface GuestSetup {
  /** Guest memory in bytes. */
  readonly memBytes: number;
  readonly vcpus: number;
  /** Dirty-tracking mode name, or null for none (then `format` decides the p2m). */
  readonly mode: string | null;
  /** p2m format when no mode is named (default ept). */
  readonly format?: P2mFormatName;
  readonly modeOptions?: ModeOptions;
  readonly addressing: Addressing;
  /** Guest RAM mapped with 4 KiB or 2 MiB pages. */
  readonly pageSize: '4k' | '2m';
  /** Populate all guest memory up front (migration) or on first touch (traces). */
  readonly populate?: 'on-demand' | 'up-front';
}

export interface Guest {
  readonly domain: Domain;
  readonly mode: DirtyMode | null;
  readonly os: GuestOs | null;
}

export function createGuest(s: GuestSetup): Guest {
  const entry = s.mode === null ? null : modeEntry(s.mode);
  const domain = new Domain({
    format: entry?.format ?? s.format ?? 'ept',
    memBytes: s.memBytes,
    vcpus: s.vcpus,
    guestPaging: s.addressing === 'paged',
    populateOrder: s.pageSize === '2m' ? ORDER_2M : ORDER_4K,
    populate: s.populate ?? 'on-demand',
  });
  const mode = entry === null ? null : entry.create(domain, s.modeOptions ?? {});
  if (mode !== null) domain.setPagingMode(mode);
  let os: GuestOs | null = null;
  if (s.addressing === 'paged') {
    // The guest OS writes its page tables through the software view; the vCPU
    // whose fault it is handling made those writes, so they are logged as its own.
    const tracked = new TrackedGuestPhys(domain.memory, mode);
    const guestOs = new GuestOs(tracked);
    os = guestOs;
    const handler = {
      handleGuestFault(v: Vcpu, gva: number): GuestFaultAction {
        tracked.vcpu = v;
        const ok = guestOs.handlePageFault(gva);
        tracked.vcpu = null;
        if (ok) return 'retry';
        // The guest kernel has no free frame for the page (and its tables): it dies, and says why,
        // rather than leaving the exit path to report an unhandled exit.
        if (!domain.crashed) {
          domain.crash(`vCPU ${v.id}: guest OS out of frames mapping gva 0x${gva.toString(16)} (${guestOs.mappedPages} pages mapped, ${guestOs.tableFrames} table frames, 0 free)`);
        }
        return 'crash';
      },
    };
    for (const v of domain.vcpus) {
      v.mmu.setCr3(guestOs.cr3);
      v.guestFaultHandler = handler;
    }
  }
  return { domain, mode, os };
}

/**
 * The guest OS's view of its memory: the software view, with every write
 * reported to the dirty-tracking mode as a write by the vCPU whose page fault
 * the OS is handling.
 */
class TrackedGuestPhys implements GuestPhysAccess {
  vcpu: Vcpu | null = null;
  constructor(private readonly mem: GuestPhysAccess, private readonly mode: DirtyMode | null) {}
  get pageCount(): number {
    return this.mem.pageCount;
  }
  readU32(gpa: number): number {
    return this.mem.readU32(gpa);
  }
  writeU32(gpa: number, value: number): void {
    // Shadow mode sees the write as the hardware would trap it (modes/shadow.ts).
    this.mode?.beforeGuestWrite?.(this.vcpu, gpa);
    this.mem.writeU32(gpa, value);
    if (this.mode !== null && this.vcpu !== null) this.mode.markGuestWrite(this.vcpu, Math.floor(gpa / PAGE_SIZE));
    this.mode?.afterGuestWrite?.(this.vcpu, gpa, 4);
  }
  readPage(gfn: number, dst: Uint8Array, dstOffset: number): boolean {
    return this.mem.readPage(gfn, dst, dstOffset);
  }
  writePage(gfn: number, src: Uint8Array, srcOffset: number): void {
    this.mode?.beforeGuestWrite?.(this.vcpu, gfn * PAGE_SIZE);
    this.mem.writePage(gfn, src, srcOffset);
    if (this.mode !== null && this.vcpu !== null) this.mode.markGuestWrite(this.vcpu, gfn);
    this.mode?.afterGuestWrite?.(this.vcpu, gfn * PAGE_SIZE, PAGE_SIZE);
  }
}
