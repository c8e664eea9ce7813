/**
 * Mode names → the p2m format they need and the factory that installs them
 * (creates the mode and sets it as the domain's paging mode). Each built-in
 * mode is one entry in MODES, importing its factory explicitly; a user's mode
 * joins through registerMode (a `--plugin` module, or a program using the
 * package), after which every lookup by name (CLI flags, compare, migrate,
 * createGuest) finds it beside the built-in ones.
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

/** A dirty-tracking mode as the registry knows it. */
export interface ModeEntry {
  /** Name on the command line (`--mode`, `--modes`): lower-case letters, digits and dashes. */
  readonly name: string;
  /** p2m format the mode runs on; the guest's p2m is built in it. */
  readonly format: P2mFormatName;
  /** Creates the mode for a domain and installs it as the domain's paging mode. */
  readonly create: ModeFactory;
  /** One line for --help and the README. */
  readonly summary: string;
}

/** The built-in modes. */
export const MODES: Partial<Record<ModeName, ModeEntry & { readonly name: ModeName }>> = {
  'ept-wp': { name: 'ept-wp', format: 'ept', create: createEptWp, summary: 'Xen HAP on EPT: write-protect faults, lazy global re-arm' },
  'ept-pml': { name: 'ept-pml', format: 'ept', create: createEptPml, summary: 'Xen HAP on EPT with Intel PML: 512-entry per-vCPU logs' },
  'npt-wp': { name: 'npt-wp', format: 'npt', create: createNptWp, summary: 'Xen HAP on AMD NPT: write-protect #NPF, lazy re-arm recomputed one entry per #NPF (p2m-pt.c do_recalc)' },
  'arm-wp': { name: 'arm-wp', format: 'arm', create: createArmWp, summary: 'ARM stage-2 write faults as the xen-devel dirty-tracing series proposed (not upstream Xen): eager write-protect at ENABLE, CLEAN re-protects only the recorded pages; dirty set as bitmap or list' },
  'kvm-bitmap': { name: 'kvm-bitmap', format: 'ept', create: createKvmBitmap, summary: "KVM memslot dirty bitmap, PML by default (or write protection): GET, or manual-protect CLEAR in QEMU's chunks" },
  // Format npt: Xen's shadow-mode p2m is its own software table in x86-64 long-mode format (p2m-pt.c), never walked by the CPU (modes/shadow.ts).
  shadow: { name: 'shadow', format: 'npt', create: createShadow, summary: 'Xen shadow paging: shadows built on #PF, page tables write-protected, 3 OOS L1s per vCPU; clean pages mapped read-only, shadows blown at CLEAN' },
  'kvm-ring': { name: 'kvm-ring', format: 'ept', create: createKvmRing, summary: 'KVM per-vCPU dirty ring, PML by default (or write protection), reaped and reset on dirty_ring_full' },
};

/** Modes added by registerMode, in registration order. */
const registered = new Map<string, ModeEntry>();

/** A name was asked for that no built-in or registered mode has: user-facing. */
export class UnknownModeError extends Error {
  readonly userFacing = true;
  constructor(readonly mode: string) {
    super(`unknown mode '${mode}' (expected one of: ${modeNames().join(', ')})`);
    this.name = 'UnknownModeError';
  }
}

/** A registration refused (bad name, name taken, unknown format, no factory): user-facing. */
export class ModeRegistrationError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'ModeRegistrationError';
  }
}

const P2M_FORMATS: readonly P2mFormatName[] = ['ept', 'npt', 'arm'];

/**
 * Adds a dirty-tracking mode under `entry.name`, so that every command and
 * createGuest can use it by name. The name may not be a built-in mode's or an
 * already registered one's (registering the very same entry again is a no-op,
 * so a plugin loaded twice is harmless).
 */
export function registerMode(entry: ModeEntry): void {
  const name = entry?.name;
  if (typeof name !== 'string' || !/^[a-z][a-z0-9-]{0,39}$/.test(name)) {
    throw new ModeRegistrationError(`registerMode: mode name ${JSON.stringify(name)} must be lower-case letters, digits and dashes, starting with a letter (at most 40)`);
  }
  if (!P2M_FORMATS.includes(entry.format)) {
    throw new ModeRegistrationError(`registerMode: mode '${name}' has format ${JSON.stringify(entry.format)}; expected one of ${P2M_FORMATS.join(', ')}`);
  }
  if (typeof entry.create !== 'function') throw new ModeRegistrationError(`registerMode: mode '${name}' has no create(domain, options) factory`);
  const known = (MODES as Record<string, ModeEntry | undefined>)[name] ?? registered.get(name);
  if (known === entry) return;
  if (known !== undefined) throw new ModeRegistrationError(`registerMode: a mode named '${name}' is already ${registered.has(name) ? 'registered' : 'built in'}`);
  registered.set(name, { name, format: entry.format, create: entry.create, summary: entry.summary ?? '' });
}

/** Every mode name: the built-in ones, then the registered ones in registration order. */
export function modeNames(): string[] {
  return [...MODE_NAMES.filter((m) => MODES[m] !== undefined), ...registered.keys()];
}

/** Modes added by registerMode (plugins), in registration order. */
export function registeredModes(): ModeEntry[] {
  return [...registered.values()];
}

/** The entry for a built-in or registered mode; UnknownModeError otherwise. */
export function modeEntry(name: string): ModeEntry {
  const e = (MODES as Record<string, ModeEntry | undefined>)[name] ?? registered.get(name);
  if (e === undefined) throw new UnknownModeError(name);
  return e;
}
