export * from './domain.ts';
export * from './vcpu.ts';
export * from './guest-memory.ts';
export * from './paging-mode.ts';
