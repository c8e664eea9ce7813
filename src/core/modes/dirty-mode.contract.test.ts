/**
 * Every built-in dirty-tracking mode, in every option variant, against the
 * one contract (src/testing/dirty-mode-contract.ts, also exported as
 * `memvisor/testing` for users' own modes; its header lists what it checks).
 * Iterates MODES, so a mode joins by being registered, and EXPECTED_VARIANTS
 * makes a mode that drops out fail the cross-mode test.
 */
import type { ModeOptions } from './dirty-mode.ts';
import { MODES, type ModeEntry } from './registry.ts';
import { dirtyModeContract } from '../../testing/dirty-mode-contract.ts';

/** Option variants per mode; a mode not listed runs with {}. */
const VARIANTS: Record<string, readonly ModeOptions[]> = {
  'ept-pml': [{ pmlFlush: 'on-demand' }, { pmlFlush: 'every-exit' }],
  'arm-wp': [{ armDirtySet: 'bitmap' }, { armDirtySet: 'list' }],
  shadow: [{ shadowPool: 'xen' }, { shadowPool: 'prealloc' }],
  // KVM on Intel runs with PML by default; without it (kvm_intel.pml=0, AMD) every first write faults.
  // (Manual protect and QEMU's clear chunks: kvm-bitmap.test.ts and kvm-modes.test.ts, against the same naive model.)
  'kvm-bitmap': [{ kvmPml: true }, { kvmPml: false }],
  'kvm-ring': [{ kvmPml: true }, { kvmPml: false }],
};

/**
 * Every mode and variant the contract must run, spelled out: if a mode leaves
 * the registry or a variant list, the cross-mode test fails instead of
 * comparing fewer sets. Add a line here when a mode or variant joins.
 */
const EXPECTED_VARIANTS: readonly string[] = [
  'ept-wp',
  'ept-pml(pmlFlush=on-demand)',
  'ept-pml(pmlFlush=every-exit)',
  'npt-wp',
  'arm-wp(armDirtySet=bitmap)',
  'arm-wp(armDirtySet=list)',
  'kvm-bitmap(kvmPml=true)',
  'kvm-bitmap(kvmPml=false)',
  'kvm-ring(kvmPml=true)',
  'kvm-ring(kvmPml=false)',
  'shadow(shadowPool=xen)',
  'shadow(shadowPool=prealloc)',
];

const builtIn: ModeEntry[] = Object.values(MODES).filter((e) => e !== undefined);
dirtyModeContract(builtIn, { variants: VARIANTS, expectedVariants: EXPECTED_VARIANTS });
