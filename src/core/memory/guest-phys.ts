/**
 * The software (hypervisor/toolstack) view of a guest's physical memory: what
 * Xen's copy_to/from_guest and the toolstack's foreign mappings see. It goes
 * through the p2m but not through the vCPU's TLB, sets no A/D bits and raises
 * no exits. The guest OS model, the migration sender and the receiver use it.
 *
 * Units: gpa in bytes, gfn in 4 KiB frames; values are u32.
 */
export interface GuestPhysAccess {
  /** Guest frames: valid gfns are [0, pageCount). */
  readonly pageCount: number;
  readU32(gpa: number): number;
  /** Writes a u32 at a 4-byte-aligned gpa, populating the frame if needed. */
  writeU32(gpa: number, value: number): void;
  /**
   * Copies frame `gfn` into `dst` at `dstOffset` (4096 bytes). Returns false,
   * and writes zeros, when the frame is not populated.
   */
  readPage(gfn: number, dst: Uint8Array, dstOffset: number): boolean;
  /** Overwrites frame `gfn` from `src` at `srcOffset`, populating it if needed. */
  writePage(gfn: number, src: Uint8Array, srcOffset: number): void;
}
