export * from './p2m-type.ts';
export * from './p2m-format.ts';
export * from './p2m.ts';
export * from './gfn-range-set.ts';
export { eptFormat } from './formats/ept.ts';
export { nptFormat } from './formats/npt.ts';
export { armFormat } from './formats/arm.ts';
