/**
 * The Xen errno values mem_access and vm_event return (xen/include/public/errno.h),
 * and the small result type operations return them in: errors are data here,
 * a hypercall's negative return value, never a thrown exception. The toolstack
 * side (xen-access.ts, the CLI) turns a refused operation into a MemAccessError.
 */

export const EPERM = 1;
export const ESRCH = 3;
export const EFAULT = 14;
export const EBUSY = 16;
export const ENODEV = 19;
export const EINVAL = 22;
export const ERANGE = 34;
export const ENOSYS = 38;
export const EOPNOTSUPP = 95;

const NAMES: Readonly<Record<number, string>> = {
  [EPERM]: 'EPERM', [ESRCH]: 'ESRCH', [EFAULT]: 'EFAULT', [EBUSY]: 'EBUSY', [ENODEV]: 'ENODEV',
  [EINVAL]: 'EINVAL', [ERANGE]: 'ERANGE', [ENOSYS]: 'ENOSYS', [EOPNOTSUPP]: 'EOPNOTSUPP',
};

/** 'EINVAL' for 22, 'errno 99' for one we do not name. */
export function errnoName(errno: number): string {
  return NAMES[errno] ?? `errno ${errno}`;
}

/** A refused hypercall: Xen's -errno plus a sentence saying why. */
export interface XenError {
  readonly ok: false;
  readonly errno: number;
  readonly message: string;
}

export function xenError(errno: number, message: string): XenError {
  return { ok: false, errno, message };
}

/** A refused operation surfaced to a user (toolstack, CLI): one actionable line. */
export class MemAccessError extends Error {
  readonly userFacing = true;
  constructor(readonly op: string, readonly errno: number, why: string) {
    super(`${op} failed (-${errnoName(errno)}): ${why}`);
    this.name = 'MemAccessError';
  }
}
