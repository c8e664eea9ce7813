/**
 * `memvisor/testing`: the contract suites memvisor's own modes and policies
 * pass, as functions a user calls from their own node:test file, so that a
 * mode or policy they write is checked exactly as the built-in ones are.
 */
export { dirtyModeContract, type DirtyModeSubject, type DirtyModeContractOptions } from './dirty-mode-contract.ts';
export { stopPolicyContract, drivePrecopy, type StopPolicySubject, type PrecopyRun } from './stop-policy-contract.ts';
