/** Log-dirty: Xen's bitmap trie and toolstack operations, and KVM's dirty bitmap and dirty ring. */
export * from './page-allocator.ts';
export * from './dirty-trie.ts';
export * from './log-dirty.ts';
export * from './kvm-write-protect.ts';
export * from './kvm-dirty-bitmap.ts';
export * from './kvm-dirty-ring.ts';
