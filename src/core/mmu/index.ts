export * from './exit-info.ts';
export * from './mmu-stats.ts';
export * from './tlb.ts';
export * from './pml.ts';
export * from './pde-cache.ts';
export { Mmu, type MmuOptions, XLATE_OK, XLATE_EXIT, XLATE_GUEST_PF, PFEC_PRESENT, PFEC_WRITE, PFEC_FETCH } from './walker.ts';
export * from './walk-tracer.ts';
