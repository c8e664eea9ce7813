/**
 * How KVM's dirty-log code asks the MMU to start trapping writes again
 * (`kvm_arch_mmu_enable_log_dirty_pt_masked`, `kvm_mmu_slot_remove_write_access`,
 * `kvm_flush_remote_tlbs_memslot` in Linux `arch/x86/kvm/mmu/mmu.c`,
 * `virt/kvm/kvm_main.c`). The memvisor MMU implements it; the KVM dirty
 * bitmap and dirty ring call it.
 *
 * Units: `slot` is KVM's memslot id (`as_id << 16 | id`); page offsets are
 * 4 KiB pages relative to the memslot's base gfn. A 64-bit page mask is
 * passed as two u32 halves: bit i of `maskLo` is page `offset + i`, bit i of
 * `maskHi` is page `offset + 32 + i`.
 */
export interface KvmWriteProtector {
  /**
   * Re-protect (write-protect, or clear D for PML) the pages of `slot` at
   * `offset + i` for every set bit i of the 64-bit mask. Like
   * `kvm_reset_dirty_gfn`, an implementation ignores a mask that reaches
   * past the end of the slot or names an unknown slot (a ring entry is
   * userspace-writable memory).
   */
  protectMasked(slot: number, offset: number, maskLo: number, maskHi: number): void;
  /**
   * Write-protect every page of `slot` (dirty logging switched on without
   * KVM_DIRTY_LOG_INITIALLY_SET).
   */
  protectSlot(slot: number): void;
  /**
   * Flush the vCPUs' TLBs after a batch of re-protections: for `slot`
   * (`kvm_flush_remote_tlbs_memslot`), or for the whole VM when `slot` is
   * undefined (`kvm_flush_remote_tlbs`, after KVM_RESET_DIRTY_RINGS).
   */
  flushTlbs(slot?: number): void;
  /**
   * `kvm_arch_sync_dirty_log`, called by KVM_GET_DIRTY_LOG and
   * KVM_CLEAR_DIRTY_LOG before they touch the bitmap: move dirty GPAs the
   * hardware still holds (the vCPUs' PML buffers) into the log. On x86 it
   * kicks every vCPU out of the guest when PML is on, and does nothing
   * otherwise. Absent ⇒ nothing is ever cached outside the log.
   */
  syncDirtyLog?(slot: number): void;
}
