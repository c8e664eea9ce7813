/**
 * memvisor as a library (`import … from 'memvisor'`): what a program needs to
 * do what the CLI does, and what a user needs to write a dirty-tracking mode
 * or a stop policy of their own. Re-exports only; each name is documented
 * where it is defined. The contract suites a user's mode or policy must pass
 * are in `memvisor/testing`.
 *
 * - a guest: createGuest (memory, vCPUs, p2m format, mode, addressing) → Domain;
 * - a workload or trace: createSyntheticWorkload, LackeyReader (AccessSource);
 * - rounds: replay (log-dirty rounds: enable, harvest every N records) and totalsOf;
 * - modes: registerMode / modeNames / modeEntry, the DirtyMode interface and
 *   the pieces a mode is built from (DefaultPagingMode, the p2m and its formats);
 * - migration: MigratableDomain + migrateTo a receiver, or spawnReceiver /
 *   runReceiver on the other side; stop policies (createPolicy, registerPolicy);
 * - reports: renderReport (migration), renderTraceReport / renderCompareReport.
 */

// ---------------------------------------------------------------- guest, workloads, rounds
export { createGuest, type Guest, type GuestSetup, type Addressing } from './core/runner/guest.ts';
export { replay, totalsOf, ReplayError, type Round, type ReplayResult, type ReplayOptions } from './core/runner/replay.ts';
export { Domain, DomainStateError, type DomainOptions } from './core/domain/domain.ts';
export type { Vcpu, GuestFaultAction } from './core/domain/vcpu.ts';
export { DefaultPagingMode, type PagingMode } from './core/domain/paging-mode.ts';
export { AccessBatch, AccessKind, type AccessSource } from './core/workload/access-batch.ts';
export { createSyntheticWorkload, SYNTHETIC_WORKLOADS, UnknownWorkloadError, type AnySyntheticOptions } from './core/workload/synthetic.ts';
export { LackeyReader, TraceParseError, TraceReadError, type LackeyReaderOptions } from './adapters/lackey-reader.ts';
export { Xoshiro128, type Rng } from './core/rng.ts';
export { VirtualClock, type Clock } from './core/clock.ts';
export { DEFAULT_COSTS, type CostModel } from './core/cost-model.ts';
export { PAGE_SIZE, ORDER_4K, ORDER_2M, ORDER_1G, ENTRIES_PER_TABLE, KiB, MiB, GiB, TiB, NOMINAL_HZ } from './core/units.ts';

// ---------------------------------------------------------------- dirty-tracking modes
export { MODE_NAMES, type ModeName, type DirtyMode, type ModeFactory, type ModeOptions, type HarvestResult } from './core/modes/dirty-mode.ts';
export { registerMode, modeNames, modeEntry, registeredModes, MODES, UnknownModeError, ModeRegistrationError, type ModeEntry } from './core/modes/registry.ts';
export { HapLogDirtyMode, DirtyModeError } from './core/modes/hap-log-dirty.ts';
export { P2m, P2mLookup, P2mError, type P2mStats } from './core/p2m/p2m.ts';
export { P2mType, Access, PERM_R, PERM_W, PERM_X } from './core/p2m/p2m-type.ts';
export { HW_EPT_AD, HW_PML, P2M_ROOT_LEVEL, LEVEL_SPANS, levelIndex, type P2mFormat, type P2mFormatName } from './core/p2m/p2m-format.ts';
export { eptFormat, EPT_A, EPT_D } from './core/p2m/formats/ept.ts';
export { nptFormat, NPT_A, NPT_D } from './core/p2m/formats/npt.ts';
export { armFormat } from './core/p2m/formats/arm.ts';
export { ExitReason, EXIT_REASON_NAMES } from './core/vm-exit.ts';
export { ExitInfo, type ExitAction } from './core/mmu/exit-info.ts';

// ---------------------------------------------------------------- migration
export { MigratableDomain, GuestCrashedError, fillGuestRandom, type MigratableDomainOptions } from './core/runner/migratable-domain.ts';
export type { MigratableGuest } from './core/migration/migratable-guest.ts';
export { migrate, type MigrationResult, type RoundStats, type SenderOptions, type SenderDeps, type SenderObserver, type ClockMode } from './core/migration/sender.ts';
export { MigrationFailedError, LinkLostError, ReceiverRejectedError, HandshakeRefusedError, type MigrationPhase } from './core/migration/errors.ts';
export { linkModel, type LinkModel } from './core/migration/link-model.ts';
export { migrateTo, type MigrateToOptions } from './adapters/migration/migrate-to.ts';
export { runReceiver, type ReceiverOptions, type ReceiverResult, type ReceiverIo } from './adapters/migration/receiver.ts';
export { spawnReceiver, type SpawnedReceiver, type SpawnReceiverOptions } from './adapters/migration/spawn-receiver.ts';
export { createPolicy, registerPolicy, policyNames, POLICY_NAMES, UnknownPolicyError, PolicyRegistrationError, type PolicyEntry, type PolicyOptions } from './core/migration/policy/registry.ts';
export type { StopPolicy, PrecopyStats, PrecopyDecision } from './core/migration/policy/stop-policy.ts';

// ---------------------------------------------------------------- reports
export { renderReport, type ReportMeta } from './adapters/migration/report-html.ts';
export { renderTraceReport, renderCompareReport, type TraceReportRun, type TraceReportMeta, type CompareReportResult } from './adapters/report/trace-report.ts';

// ---------------------------------------------------------------- plugins
export type { PluginApi, MemvisorPlugin } from './cli/plugins.ts';
