/**
 * The vm_event ABI as Xen lays it out (xen/include/public/vm_event.h,
 * interface version 7; xen/include/public/io/ring.h for the shared ring):
 * the numbers a listener and the hypervisor agree on, the byte layout of the
 * one shared 4 KiB ring page, and the request/response codec.
 *
 * ```
 *  shared ring page (4096 B), little-endian u32 / u64
 *  +0    req_prod   u32   Xen's published request producer index
 *  +4    req_event  u32   listener: "notify me when req_prod passes this"
 *  +8    rsp_prod   u32   listener's published response producer index
 *  +12   rsp_event  u32   Xen: "notify me when rsp_prod passes this"
 *  +16   pad to 64 (ring.h private union + __pad)
 *  +64   ring[0]   400 B  union { vm_event_request_t; vm_event_response_t }
 *  +464  ring[1]
 *   ...  ring[7]          8 slots: floor to a power of two of (4096 - 64) / 400 = 10
 *  +3264 unused (832 B)
 *
 *  one entry (vm_event_st, 400 B)
 *  +0  version u32 | +4 flags u32 | +8 reason u32 | +12 vcpu_id u32
 *  +16 altp2m_idx u16 | +18 pad u16[3]
 *  +24 u (32 B): mem_access { +24 gfn u64 | +32 offset u64 | +40 gla u64 | +48 flags u32 | +52 pad u32 }
 *  +56 data (344 B): regs (x86: vm_event_regs_x86) or emulation data — zero here, not modelled
 * ```
 * Indices are free-running u32 counters; a slot is `index & (RING_SIZE - 1)`.
 * 64-bit fields are written as two u32 words, low word first (STYLE §4).
 */

/** VM_EVENT_INTERFACE_VERSION. */
export const VM_EVENT_INTERFACE_VERSION = 7;

// VM_EVENT_FLAG_* (request and response flags).
/** The vCPU was paused for this event; the response unpauses it. */
export const VM_EVENT_FLAG_VCPU_PAUSED = 1 << 0;
/** The request was produced by a domain other than the target (a foreign producer). */
export const VM_EVENT_FLAG_FOREIGN = 1 << 1;
/** Response: emulate the faulting instruction instead of re-executing it. */
export const VM_EVENT_FLAG_EMULATE = 1 << 2;
/** Response, with EMULATE: emulate but discard writes. */
export const VM_EVENT_FLAG_EMULATE_NOWRITE = 1 << 3;
export const VM_EVENT_FLAG_TOGGLE_SINGLESTEP = 1 << 4;
export const VM_EVENT_FLAG_SET_EMUL_READ_DATA = 1 << 5;
export const VM_EVENT_FLAG_DENY = 1 << 6;
export const VM_EVENT_FLAG_ALTERNATE_P2M = 1 << 7;
export const VM_EVENT_FLAG_SET_REGISTERS = 1 << 8;
export const VM_EVENT_FLAG_SET_EMUL_INSN_DATA = 1 << 9;
export const VM_EVENT_FLAG_GET_NEXT_INTERRUPT = 1 << 10;

// VM_EVENT_REASON_*.
export const VM_EVENT_REASON_MEM_ACCESS = 1;
export const VM_EVENT_REASON_MEM_SHARING = 2;
export const VM_EVENT_REASON_MEM_PAGING = 3;
export const VM_EVENT_REASON_WRITE_CTRLREG = 4;
export const VM_EVENT_REASON_MOV_TO_MSR = 5;
export const VM_EVENT_REASON_SOFTWARE_BREAKPOINT = 6;
export const VM_EVENT_REASON_SINGLESTEP = 7;
export const VM_EVENT_REASON_GUEST_REQUEST = 8;

// MEM_ACCESS_* (vm_event_mem_access.flags).
export const MEM_ACCESS_R = 1 << 0;
export const MEM_ACCESS_W = 1 << 1;
export const MEM_ACCESS_X = 1 << 2;
export const MEM_ACCESS_RWX = MEM_ACCESS_R | MEM_ACCESS_W | MEM_ACCESS_X;
/** gla is valid. */
export const MEM_ACCESS_GLA_VALID = 1 << 3;
/** The fault was on the final translation of gla (not a guest page-table access). */
export const MEM_ACCESS_FAULT_WITH_GLA = 1 << 4;
/** The fault was on an access to a guest page-table entry during the walk of gla. */
export const MEM_ACCESS_FAULT_IN_GPT = 1 << 5;

// Domctl numbers (xen/include/public/domctl.h).
/** XEN_DOMCTL_vm_event_op sub-ops. */
export const XEN_VM_EVENT_ENABLE = 0;
export const XEN_VM_EVENT_DISABLE = 1;
export const XEN_VM_EVENT_RESUME = 2;
/** XEN_DOMCTL_VM_EVENT_OP_MONITOR: the ring mem_access uses. */
export const XEN_DOMCTL_VM_EVENT_OP_MONITOR = 2;
export const XEN_DOMCTL_SET_ACCESS_REQUIRED = 64;

// ---------------------------------------------------------------- ring layout

export const RING_PAGE_BYTES = 4096;
/** sring header: four u32 indices, padded to 64 bytes (ring.h __pad). */
export const SRING_REQ_PROD = 0;
export const SRING_REQ_EVENT = 4;
export const SRING_RSP_PROD = 8;
export const SRING_RSP_EVENT = 12;
export const SRING_HEADER_BYTES = 64;

/** sizeof(vm_event_request_t) == sizeof(vm_event_response_t). */
export const VM_EVENT_ENTRY_BYTES = 400;
export const ENTRY_VERSION = 0;
export const ENTRY_FLAGS = 4;
export const ENTRY_REASON = 8;
export const ENTRY_VCPU_ID = 12;
export const ENTRY_ALTP2M_IDX = 16;
/** Start of the event union `u` (32 bytes). */
export const ENTRY_U = 24;
export const ENTRY_MA_GFN = 24;
export const ENTRY_MA_OFFSET = 32;
export const ENTRY_MA_GLA = 40;
export const ENTRY_MA_FLAGS = 48;
/** Start of `data` (registers / emulation data, 344 bytes). */
export const ENTRY_DATA = 56;
export const ENTRY_DATA_BYTES = VM_EVENT_ENTRY_BYTES - ENTRY_DATA;

/** ring.h __RD32: the largest power of two ≤ n. */
function roundDownPow2(n: number): number {
  let p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

/** __CONST_RING_SIZE(vm_event, PAGE_SIZE) = 8. */
export const RING_SIZE = roundDownPow2(Math.floor((RING_PAGE_BYTES - SRING_HEADER_BYTES) / VM_EVENT_ENTRY_BYTES));

/** Byte offset of slot `index & (RING_SIZE - 1)` in the page. */
export function slotOffset(index: number): number {
  return SRING_HEADER_BYTES + (index & (RING_SIZE - 1)) * VM_EVENT_ENTRY_BYTES;
}

// ---------------------------------------------------------------- codec

/** struct vm_event_mem_access. gla is -1 when not valid (flags lack GLA_VALID). */
export interface MemAccessBody {
  gfn: number;
  /** gpa & 0xFFF. */
  offset: number;
  gla: number;
  flags: number;
}

/** vm_event_request_t / vm_event_response_t (control plane: one object per event is fine). */
export interface VmEvent {
  version: number;
  flags: number;
  reason: number;
  vcpuId: number;
  altp2mIdx: number;
  memAccess: MemAccessBody;
}

export function emptyEvent(): VmEvent {
  return { version: 0, flags: 0, reason: 0, vcpuId: 0, altp2mIdx: 0, memAccess: { gfn: 0, offset: 0, gla: 0, flags: 0 } };
}

const TWO32 = 2 ** 32;

function setU64(v: DataView, at: number, x: number): void {
  v.setUint32(at, x >>> 0, true);
  v.setUint32(at + 4, Math.floor(x / TWO32) >>> 0, true);
}

function getU64(v: DataView, at: number): number {
  return v.getUint32(at + 4, true) * TWO32 + v.getUint32(at, true);
}

/** Writes `e` into the entry at byte `at` (the whole 400 bytes: unused fields zeroed). */
export function encodeEvent(bytes: Uint8Array, view: DataView, at: number, e: VmEvent): void {
  bytes.fill(0, at, at + VM_EVENT_ENTRY_BYTES);
  view.setUint32(at + ENTRY_VERSION, e.version >>> 0, true);
  view.setUint32(at + ENTRY_FLAGS, e.flags >>> 0, true);
  view.setUint32(at + ENTRY_REASON, e.reason >>> 0, true);
  view.setUint32(at + ENTRY_VCPU_ID, e.vcpuId >>> 0, true);
  view.setUint16(at + ENTRY_ALTP2M_IDX, e.altp2mIdx & 0xffff, true);
  if (e.reason === VM_EVENT_REASON_MEM_ACCESS) {
    const m = e.memAccess;
    setU64(view, at + ENTRY_MA_GFN, m.gfn);
    setU64(view, at + ENTRY_MA_OFFSET, m.offset);
    setU64(view, at + ENTRY_MA_GLA, (m.flags & MEM_ACCESS_GLA_VALID) !== 0 ? m.gla : 0);
    view.setUint32(at + ENTRY_MA_FLAGS, m.flags >>> 0, true);
  }
}

/** Reads the entry at byte `at`. The mem_access body is decoded whatever the reason (a union). */
export function decodeEvent(view: DataView, at: number): VmEvent {
  const flags = view.getUint32(at + ENTRY_MA_FLAGS, true);
  return {
    version: view.getUint32(at + ENTRY_VERSION, true),
    flags: view.getUint32(at + ENTRY_FLAGS, true),
    reason: view.getUint32(at + ENTRY_REASON, true),
    vcpuId: view.getUint32(at + ENTRY_VCPU_ID, true),
    altp2mIdx: view.getUint16(at + ENTRY_ALTP2M_IDX, true),
    memAccess: {
      gfn: getU64(view, at + ENTRY_MA_GFN),
      offset: getU64(view, at + ENTRY_MA_OFFSET),
      gla: (flags & MEM_ACCESS_GLA_VALID) !== 0 ? getU64(view, at + ENTRY_MA_GLA) : -1,
      flags,
    },
  };
}

/** xen-access's "%c%c%c": r/w/x or '-' per MEM_ACCESS_R/W/X. */
export function accessString(maFlags: number): string {
  return ((maFlags & MEM_ACCESS_R) !== 0 ? 'r' : '-') + ((maFlags & MEM_ACCESS_W) !== 0 ? 'w' : '-') +
    ((maFlags & MEM_ACCESS_X) !== 0 ? 'x' : '-');
}
