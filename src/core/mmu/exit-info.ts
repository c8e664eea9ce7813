/**
 * What the hardware hands the hypervisor on a VM exit from the MMU, in one
 * reusable object per vCPU (no allocation per exit), and what the hypervisor
 * answers.
 *
 * Qualification words, per architecture:
 *  - Intel EPT violation (SDM Vol. 3C §28.2.1, Table 28-7): bits 0/1/2 read/write/fetch,
 *    3/4/5 the effective R/W/X of the translation, 7 guest-linear address valid,
 *    8 the access was to the final gpa (1) or to a guest paging-structure entry (0).
 *    As Xen observes on VMX (ept_handle_violation feeding mem_access), a write is also
 *    reported as a read: bit 0 is set with bit 1. EPT misconfig has no qualification.
 *  - AMD #NPF (APM Vol. 2 §15.25.6): EXITINFO1 bits 0 P (entry present: a protection
 *    fault), 1 RW, 2 US (always 1: nested accesses are user accesses), 4 ID (fetch);
 *    bit 32 "final gpa", bit 33 "guest page-table walk" go to qualificationHi bits 0/1.
 *  - ARM stage-2 abort (Arm ARM D17.2.40 ESR_EL2, data abort ISS): DFSC bits 5:0
 *    (0b0001LL translation fault, 0b0011LL permission fault at level LL), WnR bit 6,
 *    S1PTW bit 7 (fault on a stage-1 table walk).
 */
import { ExitReason } from '../vm-exit.ts';

export const EPT_QUAL_READ = 1 << 0;
export const EPT_QUAL_WRITE = 1 << 1;
export const EPT_QUAL_FETCH = 1 << 2;
/** Effective permissions start at bit 3 (R), 4 (W), 5 (X). */
export const EPT_QUAL_PERM_SHIFT = 3;
export const EPT_QUAL_GLA_VALID = 1 << 7;
export const EPT_QUAL_GLA_FINAL = 1 << 8;

export const NPF_P = 1 << 0;
export const NPF_RW = 1 << 1;
export const NPF_US = 1 << 2;
export const NPF_RSV = 1 << 3;
export const NPF_ID = 1 << 4;
/** In qualificationHi: EXITINFO1 bit 32 (final gpa translation) and bit 33 (guest table walk). */
export const NPF_HI_FINAL = 1 << 0;
export const NPF_HI_TABLE = 1 << 1;

export const ARM_DFSC_TRANSLATION = 0b000100;
export const ARM_DFSC_ACCESS_FLAG = 0b001000;
export const ARM_DFSC_PERMISSION = 0b001100;
export const ARM_ISS_WNR = 1 << 6;
export const ARM_ISS_S1PTW = 1 << 7;

/** What a paging mode tells the vCPU after an exit. */
export type ExitAction =
  /** The entry was fixed: re-execute the access (VM entry, the CPU walks again). */
  | 'retry'
  /** The access was emulated or dropped (e.g. a discard-write type): go on to the next record. */
  | 'skip'
  /** The vCPU was paused (e.g. a synchronous vm_event); the access re-executes when it runs again. */
  | 'pause'
  /** domain_crash(). */
  | 'crash';

export class ExitInfo {
  reason: ExitReason = ExitReason.EptViolation;
  /** Guest-physical address of the access that faulted (a guest table entry's, for table accesses). */
  gpa = 0;
  gfn = 0;
  /** Guest-virtual address (2-D), or the gpa itself under 1-D; -1 when none. */
  gva = -1;
  /** PERM_R/W/X the access needed. */
  access = 0;
  /** AccessKind of the guest instruction (Fetch, Load, Store, Modify). */
  kind = 0;
  /** Effective p2m permissions found (0 = not present). */
  p2mPerms = 0;
  /** p2m level (0..3) where the walk stopped. */
  level = 0;
  /** The walker met a recalc-marked entry (EPT misconfig; on NPT/ARM the same exit reason as a violation). */
  isRecalc = false;
  /** The access was to a guest paging-structure entry rather than to the final gpa. */
  isTableAccess = false;
  /** Architectural qualification (see the header) and its high word (AMD EXITINFO1 63:32). */
  qualification = 0;
  qualificationHi = 0;
}

/** Names for reports. */
export const EXIT_ACTIONS: readonly ExitAction[] = ['retry', 'skip', 'pause', 'crash'];
