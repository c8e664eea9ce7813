/**
 * VM exit reasons, named as the CLI contract names them. The numeric value is
 * an index into per-vCPU exit counters; `hwCode` is the architectural reason
 * where one exists (Intel SDM Vol. 3D Appendix C; AMD APM VMEXIT codes; ARM ESR EC).
 */
export const enum ExitReason {
  EptViolation = 0,
  EptMisconfig = 1,
  PmlFull = 2,
  Npf = 3,
  Stage2Abort = 4,
  ShadowPf = 5,
  DirtyRingFull = 6,
  /** Guest page fault reflected to the guest (walk of guest tables failed). */
  GuestPf = 7,
}

export const EXIT_REASON_COUNT = 8;

export const EXIT_REASON_NAMES: readonly string[] = [
  'ept_violation', 'ept_misconfig', 'pml_full', 'npf', 'stage2_abort', 'shadow_pf', 'dirty_ring_full', 'guest_pf',
];

/** Architectural codes: VMX basic exit reasons 48/49/62, SVM VMEXIT_NPF 0x400, ARM EC 0x24 (data abort, lower EL). */
export const EXIT_HW_CODES: readonly number[] = [48, 49, 62, 0x400, 0x24, 14, -1, 14];
