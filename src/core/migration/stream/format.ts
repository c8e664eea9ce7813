/**
 * The memvisor migration stream (MVMS): the bytes a sender writes and a
 * receiver reads. Ideas from Xen's libxc stream v2 (records = type, length,
 * body padded to 8 bytes; PAGE_DATA batches of ≤1024 pfns; END) and QEMU's
 * ram.c (u64 `addr | flags` descriptors, ZERO pages carry no payload), plus
 * what both lack: a checksum on every record and an end-to-end digest.
 *
 * ```
 * stream   = preamble, HEADER, PAGE_BATCH*, VCPU_STATE, END
 *
 * preamble (8 bytes)
 * +------+------+------+------+-------------+-------------+
 * | 'M'  | 'V'  | 'M'  | 'S'  | major  u16  | minor  u16  |
 * +------+------+------+------+-------------+-------------+
 *
 * record (every integer little-endian; every record a multiple of 8 bytes)
 * +-------------+-------------+---------------------------+
 * | type   u32  | bodyLen u32 | checksum u64 (lo, hi)     |  16-byte record header
 * +-------------+-------------+---------------------------+
 * | body: bodyLen bytes                  | zero pad to 8  |
 * +--------------------------------------+----------------+
 *
 * HEADER body (32 bytes)
 * | pageCount u64 | pageSize u32 | vcpuCount u32 | policy u32 | flags u32 | reserved u64 |
 *
 * PAGE_BATCH body (8 + 8·count + 4096·pages bytes, 1 ≤ count ≤ 1024)
 * +-------------+-------------+
 * | count  u32  | round  u32  |
 * +-------------+-------------+----------------------------------------+
 * | desc[i] u64 = gfn << 12 | flags        63 ........ 12 | 11 .. 0   |
 * |               (gfn < pageCount)             gfn      |  flags    |
 * +------------------------------------------------------------------+
 * | 4096-byte payload for each desc with PAGE, in descriptor order   |
 * +------------------------------------------------------------------+
 *   flags: ZERO (0x1) = an all-zero page, no payload; PAGE (0x2) = payload
 *   follows. Exactly one of them; the other ten bits are reserved, zero.
 *
 * VCPU_STATE body | vcpuCount u32 | stateBytes u32 | state bytes |
 * END body        | digest u64 | pageRecords u64 |
 * ```
 *
 * Checksum of a record = hashWords(seed SEED_RECORD + bodyLen, extra = type)
 * over the body padded to 8 (so the padding is covered), except that in a
 * PAGE_BATCH each 4096-byte payload is replaced by its 8-byte page hash
 * (hash of the page with SEED_PAGE): each page is hashed once per side, and
 * the same page hash feeds the sender's "unchanged since last send" check and
 * the receiver's digest.
 *
 * Digest (END) = hashWords(seed SEED_DIGEST, extra = vcpuStateBytes) over
 * [page hash (lo, hi) of gfn 0 … pageCount−1, then the vCPU state's hash
 * (lo, hi)]. An unpopulated page hashes as a zero page.
 *
 * Versioning rule: a decoder accepts any stream with its own major version,
 * whatever the minor. A minor bump may only (a) add record types with the
 * OPTIONAL bit (bit 31) set, which older decoders check and skip, or
 * (b) append fields to the HEADER or END body, which older decoders ignore.
 * Anything else (a new mandatory record, a changed field) bumps the major.
 *
 * History: major 3 made the page hash 16 lanes wide (page-hash.ts: four
 * SIMD vectors), which changes every batch checksum and the digest; major 2
 * changed the hash behind every checksum and the digest to the
 * two-words-per-step lane (checksum.ts); major 1 took one word per step.
 */

export const STREAM_MAGIC = 0x534d564d; // bytes 'M','V','M','S' read as LE u32
export const STREAM_MAJOR = 3;
export const STREAM_MINOR = 0;
export const PREAMBLE_BYTES = 8;

export const RECORD_HEADER_BYTES = 16;
export const RECORD_ALIGN = 8;

export const REC_HEADER = 1;
export const REC_PAGE_BATCH = 2;
export const REC_VCPU_STATE = 3;
export const REC_END = 4;
/** Bit 31 of a record type: a decoder that does not know the type skips it. */
export const REC_OPTIONAL = 0x80000000;

export const HEADER_BODY_BYTES = 32;
export const END_BODY_BYTES = 16;
export const BATCH_PREFIX_BYTES = 8;
export const DESC_BYTES = 8;

/** Xen's MAX_BATCH_SIZE (xg_sr_save.c): 1024 pfns per PAGE_DATA record. */
export const MAX_BATCH_PAGES = 1024;
export const STREAM_PAGE_SHIFT = 12;
export const STREAM_PAGE_SIZE = 1 << STREAM_PAGE_SHIFT;

/** Descriptor flags in the low 12 bits of `gfn << 12 | flags`. */
export const DESC_ZERO = 0x1;
export const DESC_PAGE = 0x2;
export const DESC_FLAGS_MASK = 0xfff;

/** Upper bounds on bodyLen, per record type: anything larger is rejected before buffering. */
export const MAX_HEADER_BODY = 4096;
export const MAX_BATCH_BODY = BATCH_PREFIX_BYTES + MAX_BATCH_PAGES * (DESC_BYTES + STREAM_PAGE_SIZE);
export const MAX_VCPU_BODY = 16 * 1024 * 1024;
export const MAX_END_BODY = 4096;
export const MAX_OPTIONAL_BODY = 16 * 1024 * 1024;

/** HEADER flags. */
export const HDR_FLAG_VIRTUAL_CLOCK = 0x1;

/** Policy ids carried in the HEADER (informational: the receiver reports them). */
export const POLICY_IDS = { unknown: 0, xen: 1, 'xen-legacy': 2, qemu: 3, clark: 4, adaptive: 5 } as const;
export type PolicyName = Exclude<keyof typeof POLICY_IDS, 'unknown'>;

export function policyNameOf(id: number): string {
  for (const [name, v] of Object.entries(POLICY_IDS)) if (v === id) return name;
  return 'unknown';
}

export function pad8(n: number): number {
  return (n + 7) & ~7;
}

/** The decoded HEADER record. */
export interface StreamHeader {
  readonly major: number;
  readonly minor: number;
  readonly pageCount: number;
  readonly pageSize: number;
  readonly vcpuCount: number;
  readonly policyId: number;
  readonly flags: number;
}

/** The decoded END record. */
export interface StreamEnd {
  readonly digestLo: number;
  readonly digestHi: number;
  /** Page descriptors (ZERO + PAGE) the source wrote in the whole stream. */
  readonly pageRecords: number;
}

export function digestHex(lo: number, hi: number): string {
  return (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}
