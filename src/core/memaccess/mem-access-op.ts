/**
 * The toolstack's access operations on a domain (xen/common/mem_access.c
 * mem_access_memop, xen/arch/x86/mm/mem_access.c p2m_set_mem_access /
 * p2m_set_mem_access_multi / p2m_get_mem_access), and the older HVM-only
 * operation kept as an alias of the generic one.
 *
 * ```
 *  XENMEM_access_op (21) { op, access, domid, nr, pfn, pfn_list, access_list }
 *    checks: monitor ring (-ENODEV); HAP or shadow paging both work (Xen: HAP only, -EINVAL)
 *    set (0):       pfn == ~0 ⇒ default_access only; else pfn + nr − 1 ≤ max gpfn (-EINVAL),
 *                   each gfn rewritten at 4K keeping its type; preempt check every 64 gfns
 *    get (1):       pfn == ~0 ⇒ default_access; unmapped gfn ⇒ -ESRCH
 *    set_multi (4): pfn_list[i] gets access_list[i]; same preemption
 *  HVMOP_set_mem_access (12) / HVMOP_get_mem_access (13) { domid, hvmmem_access, first_pfn, nr }
 *    ⇒ the same XENMEM_access_op code path (an alias, so old callers keep working)
 * ```
 * Preemption: every 64 gfns (MEMOP_CMD_MASK + 1) the op asks `preempt()`;
 * when it says yes the op stops and returns a continuation whose `cmd` carries
 * the progress in its high bits (cmd = XENMEM_access_op | start), as
 * hypercall_create_continuation re-issues it. The default preempt check says
 * yes every time, deterministically (Xen's depends on pending softirqs).
 * `accessOp` re-issues continuations until done, as the guest's hypercall
 * page does transparently.
 *
 * In shadow mode the shadows of gfns whose rights narrowed are dropped when
 * the operation stops (done or preempted): MemAccessLayer.commitAccessChanges.
 *
 * Unmapped gfns in a set range are skipped: Xen writes a not-present entry
 * carrying the access, which a later populate overwrites with default_access,
 * so the observable result is the same.
 */
import { Access } from '../p2m/p2m-type.ts';
import { P2mLookup } from '../p2m/p2m.ts';
import { EFAULT, EINVAL, ENODEV, ENOSYS, ERANGE, ESRCH, type XenError, xenError } from './errno.ts';
import type { MemAccessLayer } from './mem-access-layer.ts';

export const XENMEM_ACCESS_OP = 21;
export const XENMEM_ACCESS_OP_SET_ACCESS = 0;
export const XENMEM_ACCESS_OP_GET_ACCESS = 1;
export const XENMEM_ACCESS_OP_SET_ACCESS_MULTI = 4;
/** MEMOP_EXTENT_SHIFT = 6: the low 6 bits of cmd are the op, the rest the progress. */
export const MEMOP_EXTENT_SHIFT = 6;
export const MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1;
/** pfn ~0ull: "the domain's default access". */
export const ACCESS_PFN_DEFAULT = -1;

export const HVMOP_SET_MEM_ACCESS = 12;
export const HVMOP_GET_MEM_ACCESS = 13;

/** xen_mem_access_op_t. */
export interface XenMemAccessOp {
  readonly op: number;
  /** XENMEM_access_* (Access numbering; 11 = default). */
  readonly access: number;
  readonly domid: number;
  readonly nr: number;
  /** First gfn, or ACCESS_PFN_DEFAULT. */
  readonly pfn: number;
  readonly pfnList?: readonly number[];
  readonly accessList?: readonly number[];
}

/** xen_hvm_set_mem_access_t / xen_hvm_get_mem_access_t. */
export interface HvmMemAccessOp {
  readonly domid: number;
  /** HVMMEM_access_* (same numbering as XENMEM_access_*). */
  readonly hvmmemAccess: number;
  readonly firstPfn: number;
  readonly nr: number;
}

export type AccessOpResult =
  | { readonly ok: true; readonly done: true; /** get: the access read. */ readonly access?: Access }
  | { readonly ok: true; readonly done: false; /** Continuation: re-issue with this cmd. */ readonly cmd: number }
  | XenError;

export interface AccessOpStats {
  /** Hypercalls issued (continuations included). */
  hypercalls: number;
  continuations: number;
  /** gfns rewritten by set / set_multi. */
  gfnsSet: number;
}

export interface AccessOpOptions {
  /** hypercall_preempt_check at each 64-gfn boundary; default: always. */
  readonly preempt?: () => boolean;
  readonly stats?: AccessOpStats;
}

const ALWAYS = (): boolean => true;
const tmp = new P2mLookup();

/** xenmem_access_to_p2m_access: 0..10 as is, 11 (default) ⇒ the p2m's default_access; else null. */
function toP2mAccess(layer: MemAccessLayer, access: number): Access | null {
  if (!Number.isInteger(access) || access < 0 || access > Access.Default) return null;
  return access === Access.Default ? layer.domain.p2m.defaultAccess : (access as Access);
}

/** domain_get_maximum_gpfn for a HAP guest: p2m->max_mapped_pfn (XENMEM_maximum_gpfn); 0 while nothing is mapped, as Xen's starts. */
export function maximumGpfn(layer: MemAccessLayer): number {
  return Math.max(0, layer.domain.p2m.maxMappedGfn);
}

/** One XENMEM_access_op hypercall, `cmd` = XENMEM_ACCESS_OP | progress (see the header). */
export function memAccessMemop(layer: MemAccessLayer, cmd: number, mao: XenMemAccessOp, opts: AccessOpOptions = {}): AccessOpResult {
  const startIter = Math.floor(cmd / (MEMOP_CMD_MASK + 1)) * (MEMOP_CMD_MASK + 1);
  const preempt = opts.preempt ?? ALWAYS;
  if (opts.stats) opts.stats.hypercalls++;
  if (mao.domid !== layer.domain.id) return xenError(ESRCH, `no domain ${mao.domid}`);
  if (layer.monitor === null) return xenError(ENODEV, `domain ${mao.domid} has no vm_event monitor ring: enable the monitor first`);
  const p2m = layer.domain.p2m;
  switch (mao.op) {
    case XENMEM_ACCESS_OP_SET_ACCESS: {
      const maxGpfn = maximumGpfn(layer);
      if (mao.pfn !== ACCESS_PFN_DEFAULT &&
        (mao.nr < startIter || mao.pfn < 0 || mao.pfn + mao.nr - 1 > maxGpfn)) {
        return xenError(EINVAL, `range ${mao.pfn}+${mao.nr} goes past the domain's maximum gpfn ${maxGpfn}`);
      }
      const a = toP2mAccess(layer, mao.access);
      if (a === null) return xenError(EINVAL, `access ${mao.access} is not a XENMEM_access_* value`);
      if (mao.pfn === ACCESS_PFN_DEFAULT) {
        p2m.defaultAccess = a;
        return { ok: true, done: true };
      }
      let start = startIter;
      try {
        for (let gfn = mao.pfn + start; mao.nr > start; gfn++) {
          if (layer.setAccess(gfn, a) && opts.stats) opts.stats.gfnsSet++;
          start++;
          if (mao.nr > start && (start & MEMOP_CMD_MASK) === 0 && preempt()) return continuation(start, opts);
        }
      } finally {
        layer.commitAccessChanges();
      }
      return { ok: true, done: true };
    }
    case XENMEM_ACCESS_OP_SET_ACCESS_MULTI: {
      const pfns = mao.pfnList ?? [];
      const accs = mao.accessList ?? [];
      if (pfns.length < mao.nr || accs.length < mao.nr) return xenError(EFAULT, `pfn_list/access_list hold fewer than nr = ${mao.nr} entries`);
      let start = startIter;
      try {
        while (start < mao.nr) {
          const a = toP2mAccess(layer, accs[start]!);
          if (a === null) return xenError(EINVAL, `access_list[${start}] = ${accs[start]} is not a XENMEM_access_* value`);
          if (layer.setAccess(pfns[start]!, a) && opts.stats) opts.stats.gfnsSet++;
          start++;
          if (mao.nr > start && (start & MEMOP_CMD_MASK) === 0 && preempt()) return continuation(start, opts);
        }
      } finally {
        layer.commitAccessChanges();
      }
      return { ok: true, done: true };
    }
    case XENMEM_ACCESS_OP_GET_ACCESS: {
      if (startIter !== 0) return xenError(ENOSYS, 'get_access cannot be continued');
      if (mao.pfn === ACCESS_PFN_DEFAULT) return { ok: true, done: true, access: p2m.defaultAccess };
      if (!p2m.lookup(mao.pfn, tmp)) return xenError(ESRCH, `gfn 0x${mao.pfn.toString(16)} is not mapped`);
      if (tmp.access > Access.Default) return xenError(ERANGE, `gfn 0x${mao.pfn.toString(16)} has access ${tmp.access}`);
      return { ok: true, done: true, access: tmp.access };
    }
    default:
      return xenError(ENOSYS, `XENMEM_access_op op ${mao.op} is not supported`);
  }
}

function continuation(start: number, opts: AccessOpOptions): AccessOpResult {
  if (opts.stats) opts.stats.continuations++;
  return { ok: true, done: false, cmd: XENMEM_ACCESS_OP | start };
}

/** XENMEM_access_op run to completion: continuations re-issued as the hypercall page does. */
export function accessOp(layer: MemAccessLayer, mao: XenMemAccessOp, opts: AccessOpOptions = {}): AccessOpResult {
  let cmd = XENMEM_ACCESS_OP;
  for (;;) {
    const r = memAccessMemop(layer, cmd, mao, opts);
    if (!r.ok || r.done) return r;
    cmd = r.cmd;
  }
}

/** HVMOP_set_mem_access: the old HVM-only operation, an alias of XENMEM_access_op set. */
export function hvmopSetMemAccess(layer: MemAccessLayer, a: HvmMemAccessOp, opts: AccessOpOptions = {}): AccessOpResult {
  return accessOp(layer, { op: XENMEM_ACCESS_OP_SET_ACCESS, access: a.hvmmemAccess, domid: a.domid, nr: a.nr, pfn: a.firstPfn }, opts);
}

/** HVMOP_get_mem_access: alias of XENMEM_access_op get. */
export function hvmopGetMemAccess(layer: MemAccessLayer, a: Pick<HvmMemAccessOp, 'domid' | 'firstPfn'>): AccessOpResult {
  return accessOp(layer, { op: XENMEM_ACCESS_OP_GET_ACCESS, access: 0, domid: a.domid, nr: 0, pfn: a.firstPfn });
}

/** xc_set_mem_access(xch, domid, access, first_pfn, nr). */
export function setMemAccess(layer: MemAccessLayer, access: Access, firstPfn: number, nr: number, opts: AccessOpOptions = {}): AccessOpResult {
  return accessOp(layer, { op: XENMEM_ACCESS_OP_SET_ACCESS, access, domid: layer.domain.id, nr, pfn: firstPfn }, opts);
}

/** xc_get_mem_access(xch, domid, pfn). */
export function getMemAccess(layer: MemAccessLayer, pfn: number): AccessOpResult {
  return accessOp(layer, { op: XENMEM_ACCESS_OP_GET_ACCESS, access: 0, domid: layer.domain.id, nr: 0, pfn });
}
