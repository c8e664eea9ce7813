export { allocHashable, hashesInPlace, hashPage, pageHashRef, pageKernelModule, PAGE_BYTES, sharedMemoryOf } from './page-hash.ts';
export type { PageHashPool } from './pool.ts';
