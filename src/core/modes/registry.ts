/**
 * CLI mode names → the p2m format they need and the factory that installs
 * them (creates the mode and sets it as the domain's paging mode). Each mode
 * is one entry here, importing its factory explicitly.
 */
import type { P2mFormatName } from '../p2m/p2m-format.ts';
import { createArmWp } from './arm-wp.ts';
import { MODE_NAMES, type ModeFactory, type ModeName } from './dirty-mode.ts';
import { createEptPml } from './ept-pml.ts';
import { createEptWp } from './ept-wp.ts';
import { createKvmBitmap } from './kvm-bitmap.ts';
import { createKvmRing } from './kvm-ring.ts';
import { createNptWp } from './npt-wp.ts';
import { createShadow } from './shadow.ts';

export interface ModeEntry {
  readonly name: ModeName;
  readonly format: P2mFormatName;
  readonly create: ModeFactory;
  /** One line for --help and the README. */
  readonly summary: string;
}

export const MODES: Partial<Record<ModeName, ModeEntry>> = {
  'ept-wp': { name: 'ept-wp', format: 'ept', create: createEptWp, summary: 'Xen HAP on EPT: write-protect faults, lazy global re-arm' },
  'ept-pml': { name: 'ept-pml', format: 'ept', create: createEptPml, summary: 'Xen HAP on EPT with Intel PML: 512-entry per-vCPU logs' },
  'npt-wp': { name: 'npt-wp', format: 'npt', create: createNptWp, summary: 'Xen HAP on AMD NPT: write-protect #NPF, lazy re-arm recomputed one entry per #NPF (p2m-pt.c do_recalc)' },
  'arm-wp': { name: 'arm-wp', format: 'arm', create: createArmWp, summary: 'ARM stage-2 write faults as the xen-devel dirty-tracing series proposed (not upstream Xen): eager write-protect at ENABLE, CLEAN re-protects only the recorded pages; dirty set as bitmap or list' },
  'kvm-bitmap': { name: 'kvm-bitmap', format: 'ept', create: createKvmBitmap, summary: "KVM memslot dirty bitmap, PML by default (or write protection): GET, or manual-protect CLEAR in QEMU's chunks" },
  // Format npt: Xen's shadow-mode p2m is its own software table in x86-64 long-mode format (p2m-pt.c), never walked by the CPU (modes/shadow.ts).
  shadow: { name: 'shadow', format: 'npt', create: createShadow, summary: 'Xen shadow paging: shadows built on #PF, page tables write-protected, 3 OOS L1s per vCPU; clean pages mapped read-only, shadows blown at CLEAN' },
  'kvm-ring': { name: 'kvm-ring', format: 'ept', create: createKvmRing, summary: 'KVM per-vCPU dirty ring, PML by default (or write protection), reaped and reset on dirty_ring_full' },
};

export class UnknownModeError extends Error {
  readonly userFacing = true;
  constructor(readonly mode: string) {
    super(`unknown mode '${mode}' (expected one of: ${MODE_NAMES.join(', ')})`);
    this.name = 'UnknownModeError';
  }
}

export function modeEntry(name: string): ModeEntry {
  const e = (MODES as Record<string, ModeEntry | undefined>)[name];
  if (e === undefined) throw new UnknownModeError(name);
  return e;
}
