/** Workloads: access batches, synthetic generators, pacing, the guest OS model. */
export { AccessBatch, AccessKind, type AccessSource } from './access-batch.ts';
export { AccessRate } from './access-rate.ts';
export {
  SYNTHETIC_WORKLOADS,
  type SyntheticWorkloadName,
  type AnySyntheticOptions,
  UnknownWorkloadError,
  isSyntheticWorkloadName,
  createSyntheticWorkload,
} from './synthetic.ts';
export { SyntheticWorkload, type SyntheticOptions } from './synthetic-base.ts';
export { UniformWorkload, type UniformOptions } from './uniform.ts';
export { HotspotWorkload, type HotspotOptions } from './hotspot.ts';
export { ZipfWorkload, type ZipfOptions } from './zipf.ts';
export { SequentialWorkload, type SequentialOptions } from './sequential.ts';
export { ReadMostlyWorkload, type ReadMostlyOptions } from './read-mostly.ts';
export { ZipfSampler } from './zipf-sampler.ts';
export { PagePermutation } from './page-permutation.ts';
export { GuestFrameAllocator } from './guest-frame-allocator.ts';
export { GuestOs, type GuestOsOptions, GUEST_OS_PTE_FLAGS, GVA_LIMIT, OutOfFramesError, GuestAddressError } from './guest-os.ts';
