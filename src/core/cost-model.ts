/**
 * The cycle cost model: one table, every figure with its source. The walker,
 * the vCPU and the paging modes charge these to a vCPU's `cycles` counter;
 * virtual time is cycles / NOMINAL_HZ (units.ts, 3 GHz).
 *
 * Figures are per event, in CPU cycles at the nominal frequency. Where a figure
 * is an estimate (no single measured number applies to our event), it says so
 * and says how it was derived; change them here and nowhere else. A run can
 * pass its own CostModel (e.g. to model a faster exit path) to the Domain.
 */

export interface CostModel {
  /** A guest load/store that hits the TLB and the L1 data cache. */
  readonly tlbHitAccess: number;
  /** One memory reference of a page walk (guest table or p2m table entry). */
  readonly walkRef: number;
  /** A guest-physical (nested) TLB / paging-structure-cache hit during a walk. */
  readonly nestedTlbHit: number;
  /** VM exit + VM entry round trip, x86 (VMX or SVM), hypervisor work excluded. */
  readonly vmexitRoundTripX86: number;
  /** Trap to EL2 + return, ARM, hypervisor work excluded. */
  readonly vmexitRoundTripArm: number;
  /** Xen's handling of an EPT violation / #NPF / stage-2 abort on a log-dirty page (p2m lookup, paging_mark_dirty, p2m_change_type_one). */
  readonly writeFaultHandling: number;
  /** Fixed part of EPT-misconfig / NPT recalc handling (the resolve_misconfig / do_recalc walk from the root). */
  readonly recalcHandling: number;
  /** Per leaf entry recomputed by a recalc (EPT resolve_misconfig: up to 512 per leaf table; NPT do_recalc: 1). */
  readonly recalcPerEntry: number;
  /** Splitting one superpage into 512 entries (allocate a table, write 512 entries). */
  readonly superpageSplit: number;
  /** Populating one guest frame on demand (allocate, zero 4 KiB, p2m_set_entry). */
  readonly populate: number;
  /** The CPU writing one GPA into the PML log (one extra memory write). */
  readonly pmlLogWrite: number;
  /** Xen's ept_vcpu_flush_pml_buffer, per logged entry (p2m_change_type_one + paging_mark_dirty). */
  readonly pmlFlushPerEntry: number;
  /** Setting one bit in the log-dirty trie (paging_mark_pfn_dirty). */
  readonly logdirtyMark: number;
  /** A TLB / EPT-context flush (INVEPT single-context, or TLB flush on ARM/AMD). */
  readonly tlbFlush: number;
  /** Delivering a guest page fault to the guest's own handler and back. */
  readonly guestPageFault: number;

  // ---- Log-dirty control plane (toolstack ops; counted in DirtyMode.controlCycles) ----
  /** domain_pause: stop every vCPU synchronously (PEEK/CLEAN/ENABLE/OFF). */
  readonly domainPause: number;
  /** domain_unpause: wake the vCPUs again. */
  readonly domainUnpause: number;
  /** PEEK/CLEAN walk, per present trie leaf: copy 4 KiB to the caller's bitmap (and clear it on CLEAN). */
  readonly logdirtyLeafCopy: number;
  /** PEEK/CLEAN walk, per absent leaf slot in range: zero 4 KiB of the caller's bitmap (clear_guest). */
  readonly logdirtyLeafZero: number;
  /** PEEK/CLEAN walk with a null bitmap, per absent leaf slot: one loop step over an INVALID_MFN slot. */
  readonly logdirtyLeafSkip: number;
  /** p2m_change_entry_type_global, fixed part (take the p2m lock, walk the root, ept_sync_domain). */
  readonly globalTypeChange: number;
  /** Marking one present top-level entry for recalc (ept_invalidate_emt_subtree). */
  readonly recalcMarkPerEntry: number;
  /** Per-vCPU PML enable/disable (vmx_vcpu_enable_pml: log page, VMCS writes). */
  readonly pmlVcpuToggle: number;
  /** ARM list variant: appending one faulting IPA to the hypervisor's list at fault time. */
  readonly dirtyListAppend: number;
  /** ARM ENABLE (the dirty-tracing series' eager p2m_change_entry_type_global(d, mg_ro)), per present leaf entry walked. */
  readonly s2EagerProtectPerEntry: number;
  /** ARM CLEAN, per recorded page re-protected through the series' linear map of the p2m (`vlp2m_pte->p2m.write = 0`). */
  readonly s2ReprotectPerPage: number;
  /** ARM bitmap variant at CLEAN: scanning one present 4 KiB bitmap leaf for set bits to re-protect. */
  readonly dirtyBitmapScanPerLeaf: number;

  // ---- KVM comparison modes (kvm-bitmap, kvm-ring; Linux arch/x86/kvm/mmu, virt/kvm) ----
  /** KVM's fast_page_fault on a write-protected 4K SPTE: lockless walk, cmpxchg W on, mark dirty (vCPU). */
  readonly kvmWriteFault: number;
  /** mark_page_dirty_in_slot, bitmap flavour: set_bit_le in the memslot bitmap (vCPU). */
  readonly kvmBitmapMark: number;
  /** kvm_dirty_ring_push: write one 16-byte kvm_dirty_gfn and bump dirty_index (vCPU). */
  readonly kvmRingPush: number;
  /** KVM_RUN returning to the VMM with KVM_EXIT_DIRTY_RING_FULL and re-entering, on top of the VM exit. */
  readonly kvmUserspaceExit: number;
  /** One VM ioctl (KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG, KVM_RESET_DIRTY_RINGS): syscall, dispatch, slots_lock. */
  readonly kvmIoctl: number;
  /** KVM_GET_DIRTY_LOG / CLEAR, per 64-bit word of the memslot bitmap scanned (read, xchg, copy_to_user). */
  readonly kvmBitmapPerWord: number;
  /** Re-protecting one page by mask (kvm_arch_mmu_enable_log_dirty_pt_masked → TDP MMU walk + clear W). */
  readonly kvmProtectPerPage: number;
  /** kvm_mmu_slot_remove_write_access, per present leaf SPTE walked in order (enabling dirty logging). */
  readonly kvmSlotProtectPerEntry: number;
  /** The VMM reading one ring entry and setting its bit (QEMU kvm_dirty_ring_reap_one). */
  readonly kvmRingReapPerEntry: number;
  /**
   * KVM's vmx_flush_pml_buffer, per logged entry, before the bitmap bit or ring push
   * (kvmBitmapMark / kvmRingPush, charged apart): read the GPA, kvm_vcpu_mark_page_dirty's
   * memslot lookup. KVM leaves the SPTE as the CPU left it (writable, D set).
   */
  readonly kvmPmlFlushPerEntry: number;

  // ---- Shadow paging (modes/shadow.ts, shadow/; Xen xen/arch/x86/mm/shadow) ----
  /** sh_page_fault's fixed part on the fixed path: paging_lock, fault classification, shadow_prealloc check (vCPU). */
  readonly shadowFaultFixed: number;
  /** Setting one shadow entry (_sh_propagate + shadow_set_lNe: flags, refcounts, p2m lookup of the target). */
  readonly shadowPropagate: number;
  /** Taking one shadow page from the pool and clearing it (shadow_alloc): Xen's pool (free list, possibly after recycling). */
  readonly shadowAllocXen: number;
  /** Taking one preallocated shadow page-table info (pop a free list; its frame is already clear). */
  readonly shadowAllocPrealloc: number;
  /** Per shadow entry visited while destroying or unhooking shadows (sh_destroy_lNe_shadow, unhook). */
  readonly shadowTearPerEntry: number;
  /** Per L1 shadow entry scanned by sh_remove_write_access's brute-force search (hash_foreach over L1 shadows). */
  readonly shadowScanPerEntry: number;
  /** Following or updating one backlink (the XI-style pool's per-entry reverse map). */
  readonly shadowBacklink: number;
  /** Emulating one guest write to a write-protected page table (x86_emulate + sh_validate_guest_entry), exit excluded. */
  readonly shadowEmulateWrite: number;
  /** sh_unsync: take an OOS slot and copy the guest L1 into its snapshot (4 KiB memcpy). */
  readonly shadowUnsync: number;
  /** Per entry compared (guest vs snapshot) in an OOS resync. */
  readonly shadowResyncPerEntry: number;
}

export const DEFAULT_COSTS: CostModel = Object.freeze({
  // Intel 64 and IA-32 Architectures Optimization Reference Manual (248966), Skylake
  // microarchitecture: L1D load-to-use latency 4-5 cycles; an L1 DTLB hit adds nothing.
  tlbHitAccess: 5,
  // Estimate: a page-walk reference usually hits L2 or the LLC (paging-structure entries
  // are hot). Optimization Manual, Skylake: L2 ~14 cycles, LLC ~40-50; we take 25.
  // A full 2-D walk makes up to 24 such references (Bhargava et al., "Accelerating
  // Two-Dimensional Page Walks for Virtualized Systems", ASPLOS 2008).
  walkRef: 25,
  // Estimate: a hit in a paging-structure / guest-physical-mapping cache (SDM Vol. 3A
  // §4.10.3, Vol. 3C §29.4) costs about an L1 access.
  nestedTlbHit: 4,
  // Dall et al., "ARM Virtualization: Performance and Architectural Implications",
  // ISCA 2016, Table 3 (hypercall round trip): Xen x86 1,228 cycles, KVM x86 1,300.
  vmexitRoundTripX86: 1250,
  // Same source: Xen ARM hypercall 376 cycles (EL2-resident hypervisor, no world switch).
  vmexitRoundTripArm: 376,
  // Estimate: hvm_hap_nested_page_fault → get_gfn, paging_mark_pfn_dirty (4-level trie
  // walk), p2m_change_type_one (ept_set_entry with resolve_misconfig and ept_sync_domain):
  // a few thousand cycles; we take 2,500.
  writeFaultHandling: 2500,
  // Estimate: resolve_misconfig's walk from the root (4 map_domain_page + entry writes).
  recalcHandling: 600,
  // Estimate: read, recompute (p2m_recalc_type + ept_p2m_type_to_flags) and write one entry.
  recalcPerEntry: 12,
  // Estimate: one paging-pool page allocation (~500) plus 512 entry writes at ~5 cycles.
  superpageSplit: 3000,
  // Estimate: frame allocation (~500), clearing 4 KiB at ~32 B/cycle (~130), p2m_set_entry (~800).
  populate: 1500,
  // Estimate: one posted write to a cached log page.
  pmlLogWrite: 5,
  // Estimate: per entry of ept_vcpu_flush_pml_buffer, p2m_change_type_one (~600) and
  // paging_mark_dirty (~100). Kai Huang's Xen PML design (xen-devel, 2015) reports PML
  // cutting log-dirty overhead chiefly by removing the per-page exits, consistent with
  // a per-entry cost well below writeFaultHandling + an exit.
  pmlFlushPerEntry: 700,
  // Estimate: paging_mark_pfn_dirty: 4 map_domain_page lookups and a test_and_set_bit.
  logdirtyMark: 100,
  // Estimate: INVEPT single-context is a few hundred cycles; TLB refill cost is charged
  // separately through the walks that follow.
  tlbFlush: 300,
  // Estimate: exception delivery + IRET (~200) plus a minimal guest #PF handler (~1,000).
  guestPageFault: 1200,
  // Estimate: domain_pause → vcpu_sleep_sync on each vCPU (an IPI and a wait for the
  // vCPU to leave guest context, ~2 µs on a 2-vCPU guest at 3 GHz); unpause is vcpu_wake.
  domainPause: 6000,
  domainUnpause: 1500,
  // Estimate: copy_to_guest of 4 KiB at ~16 B/cycle (256) + map_domain_page and loop
  // overhead (~200) + clear_page of the leaf on CLEAN (~100): 550.
  logdirtyLeafCopy: 550,
  // Estimate: clear_guest of 4 KiB at ~32 B/cycle plus loop overhead.
  logdirtyLeafZero: 200,
  // Estimate: paging_log_dirty_op's i2 loop body when the slot is empty and no copy
  // is asked (test the mfn, advance `pages`): a handful of cycles.
  logdirtyLeafSkip: 4,
  // Estimate: p2m_lock + ept_change_entry_type_global's root walk (512 entries) + ept_sync_domain (INVEPT).
  globalTypeChange: 2000,
  // Estimate: read, set emt=MTRR_NUM_TYPES and recalc, write one entry.
  recalcMarkPerEntry: 10,
  // Estimate: paging-pool page allocation (~500) + vmx_vmcs_enter/exit and two VMCS writes (~1,500).
  pmlVcpuToggle: 2000,
  // Estimate: bounds check and one store to a hypervisor array (vs logdirtyMark's 4-level
  // trie walk + test_and_set_bit); growth is amortised (doubling). The entries are marked
  // into the trie at PEEK/CLEAN at logdirtyMark each, charged to the control plane.
  dirtyListAppend: 10,
  // Estimate: the eager walk reads each present descriptor, tests its type, clears S2AP[1]
  // (write) and stores it back: one sequential read-modify-write per entry, the same order
  // as KVM's slot-wide write-protect walk (kvmSlotProtectPerEntry).
  s2EagerProtectPerEntry: 15,
  // Estimate: the descriptor of a recorded IPA is found by address arithmetic in the VLPT
  // (no table walk) but is usually cold: one cache-missing load (~40, as walkRef's LLC
  // figure) plus a store with the write bit cleared.
  s2ReprotectPerPage: 50,
  // Estimate: find_next_bit over 512 64-bit words of one leaf, about one word per cycle
  // plus loop overhead.
  dirtyBitmapScanPerLeaf: 550,
  // Estimate: KVM's fast page fault path (arch/x86/kvm/mmu/mmu.c fast_page_fault: lockless
  // TDP walk, one cmpxchg, mark_page_dirty_in_slot) avoids mmu_lock and the slow path; we
  // take 1,000, well under Xen's writeFaultHandling (trie mark + p2m_change_type_one).
  kvmWriteFault: 1000,
  // Estimate: one set_bit_le on a cached bitmap word.
  kvmBitmapMark: 20,
  // Estimate: a 16-byte store to the mmap'ed ring, smp_wmb, index increment.
  kvmRingPush: 40,
  // Estimate: leaving KVM_RUN for the VMM thread and issuing KVM_RUN again (two kernel/user
  // transitions, vcpu_put/vcpu_load, the VMM's exit dispatch): a few microseconds.
  kvmUserspaceExit: 8000,
  // Estimate: ioctl syscall entry/exit (~300), kvm_vm_ioctl dispatch, copy_from_user of the
  // argument, slots_lock / mmu_lock (~1,200).
  kvmIoctl: 1500,
  // Estimate: a sequential scan of 8 bytes plus an occasional xchg and copy_to_user.
  kvmBitmapPerWord: 2,
  // Estimate: a TDP-iterator walk to the 4K SPTE (mostly cached) and an atomic clear of W.
  kvmProtectPerPage: 150,
  // Estimate: the slot-wide write-protect walks leaf SPTEs in order: one atomic update each.
  kvmSlotProtectPerEntry: 15,
  // Estimate: read 16 bytes, test the flags, set a bit in the VMM's bitmap, store RESET.
  kvmRingReapPerEntry: 30,
  // Estimate: one load from the PML page plus kvm_vcpu_gfn_to_memslot, which hits the vCPU's
  // last-used-slot cache (virt/kvm/kvm_main.c): tens of cycles. Unlike Xen's 700-cycle
  // pmlFlushPerEntry there is no p2m_change_type_one: the SPTE stays as the CPU left it.
  kvmPmlFlushPerEntry: 30,
  // Estimate: sh_page_fault up to the fixed path without the guest walk (its references are
  // charged as walkRef each): lock, classify, shadow_prealloc's check, perf counters. Adams &
  // Agesen (ASPLOS 2006) measure a whole "hidden page fault" on a VT-x shadow VMM in the
  // thousands of cycles on top of the exit; we take 1,500 for the fixed part.
  shadowFaultFixed: 1500,
  // Estimate: _sh_propagate (flag arithmetic, p2m lookup ~200) and shadow_set_l1e (refcount
  // get/put, atomic write): ~300.
  shadowPropagate: 300,
  // Estimate: shadow_alloc: free-list pop (~100), clear_page of 4 KiB (~130), page_info set-up
  // and hash insert (~200); recycling is charged separately per entry torn down.
  shadowAllocXen: 450,
  // Estimate: popping a preallocated info whose frame was cleared when it was freed (~50) + hash insert (~100).
  shadowAllocPrealloc: 150,
  // Estimate: read an entry, drop the child's refcount if present, write zero.
  shadowTearPerEntry: 6,
  // Estimate: one 8-byte read and compare in a sequential scan of an L1 shadow.
  shadowScanPerEntry: 2,
  // Estimate: one Int32Array load/store in a cached per-entry link array.
  shadowBacklink: 10,
  // Estimate: x86_emulate decoding and executing one MOV (~2,000), sh_validate_guest_entry
  // re-propagating one entry into each shadow of the page (~500).
  shadowEmulateWrite: 2500,
  // Estimate: oos_hash_add bookkeeping (~200) + 4 KiB snapshot memcpy (~200).
  shadowUnsync: 400,
  // Estimate: compare one guest entry with its snapshot (two 8-byte reads).
  shadowResyncPerEntry: 3,
});
