export * from './format.ts';
export * from './errors.ts';
export * from './checksum.ts';
export * from './encoder.ts';
export * from './decoder.ts';
