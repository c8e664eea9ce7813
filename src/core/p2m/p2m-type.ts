/**
 * p2m types and access rights, numbered as Xen numbers them
 * (xen/arch/x86/include/asm/p2m.h, xen/include/public/memory.h XENMEM_access_*).
 * Each format keeps them in its entries' software-available bits.
 */

/** p2m_type_t. */
export const enum P2mType {
  RamRw = 0,
  Invalid = 1,
  RamLogdirty = 2,
  RamRo = 3,
  MmioDm = 4,
  MmioDirect = 5,
  PopulateOnDemand = 6,
  GrantMapRw = 7,
  GrantMapRo = 8,
  RamPagingOut = 9,
  RamPaged = 10,
  RamPagingIn = 11,
  RamShared = 12,
  RamBroken = 13,
  MapForeign = 14,
  IoreqServer = 15,
}

export const P2M_TYPE_NAMES: readonly string[] = [
  'ram_rw', 'invalid', 'ram_logdirty', 'ram_ro', 'mmio_dm', 'mmio_direct', 'populate_on_demand',
  'grant_map_rw', 'grant_map_ro', 'ram_paging_out', 'ram_paged', 'ram_paging_in', 'ram_shared',
  'ram_broken', 'map_foreign', 'ioreq_server',
];

const bit = (t: P2mType): number => 1 << t;

/** Types whose hardware mapping is read-only (P2M_RO_TYPES). */
export const P2M_RO_TYPES =
  bit(P2mType.RamLogdirty) | bit(P2mType.RamRo) | bit(P2mType.GrantMapRo) | bit(P2mType.RamShared);
/** Writes silently dropped (P2M_DISCARD_WRITE_TYPES). */
export const P2M_DISCARD_WRITE_TYPES = bit(P2mType.RamRo) | bit(P2mType.GrantMapRo);
/** Types a global type change touches (P2M_CHANGEABLE_TYPES). */
export const P2M_CHANGEABLE_TYPES = bit(P2mType.RamRw) | bit(P2mType.RamLogdirty) | bit(P2mType.IoreqServer);
/** RAM types (P2M_RAM_TYPES). */
export const P2M_RAM_TYPES =
  bit(P2mType.RamRw) | bit(P2mType.RamLogdirty) | bit(P2mType.RamRo) | bit(P2mType.RamPagingOut) |
  bit(P2mType.RamPaged) | bit(P2mType.RamPagingIn) | bit(P2mType.RamShared) | bit(P2mType.IoreqServer);

export const isType = (group: number, t: P2mType): boolean => (group & (1 << t)) !== 0;

/** p2m_access_t / XENMEM_access_*: low 3 bits are R=1, W=2, X=4. */
export const enum Access {
  N = 0,
  R = 1,
  W = 2,
  RW = 3,
  X = 4,
  RX = 5,
  WX = 6,
  RWX = 7,
  RX2RW = 8,
  N2RWX = 9,
  R_PW = 10,
  /** XENMEM_access_default: resolves to the domain's default_access. */
  Default = 11,
}

export const ACCESS_NAMES: readonly string[] = ['n', 'r', 'w', 'rw', 'x', 'rx', 'wx', 'rwx', 'rx2rw', 'n2rwx', 'r_pw', 'default'];

export const PERM_R = 1;
export const PERM_W = 2;
export const PERM_X = 4;

/** Hardware permissions an access type allows (n/n2rwx ⇒ none; rx2rw ⇒ rx; r_pw ⇒ r). */
export function accessPerms(a: Access): number {
  if (a <= Access.RWX) return a;
  if (a === Access.RX2RW) return PERM_R | PERM_X;
  if (a === Access.R_PW) return PERM_R;
  return 0;
}

/** Hardware permissions a p2m type allows before access is applied. */
export function typePerms(t: P2mType): number {
  if (t === P2mType.Invalid || t === P2mType.MmioDm || t === P2mType.PopulateOnDemand ||
      t === P2mType.RamPagingOut || t === P2mType.RamPaged || t === P2mType.RamPagingIn ||
      t === P2mType.RamBroken) {
    return 0;
  }
  if (isType(P2M_RO_TYPES, t)) return PERM_R | PERM_X;
  if (t === P2mType.MmioDirect) return PERM_R | PERM_W;
  return PERM_R | PERM_W | PERM_X;
}
