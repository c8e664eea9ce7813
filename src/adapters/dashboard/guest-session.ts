/**
 * The dashboard's guest: one run of a synthetic workload on a real domain
 * under a dirty-tracking mode, in rounds, inside the server process.
 *
 *   start(config) ─► running ──stop()──► stopped ──migrate()──► migrating ─► migrated
 *        ▲              │  ▲                 │                        │ (failed: back to stopped,
 *        └──────────────┴──┴─────────────────┘                        │  the guest untouched)
 *
 * A round is `cleanEvery` guest accesses followed by a harvest (Xen CLEAN,
 * KVM GET/CLEAR or ring harvest) into a bitmap; the bitmap feeds PageAges
 * (the heatmap) and the counters' deltas become one RoundSample. The engine
 * runs in slices of at most SLICE_MS between setImmediate turns, so the HTTP
 * server stays responsive, and rounds are paced so that a round's virtual
 * time (cleanEvery / dirtyRate) passes on the wall clock too (at least
 * MIN_ROUND_MS), which is what a person watching wants.
 *
 * Migration reuses the CLI's path: the guest wrapped as a MigratableDomain,
 * a receiver process on loopback (spawnReceiver), migrateTo with the
 * observer's rounds forwarded; every CLEAN the sender makes also feeds the
 * heatmap, so the page watches pre-copy converge.
 */
import { performance } from 'node:perf_hooks';
import { linkModel } from '../../core/migration/link-model.ts';
import type { RoundStats } from '../../core/migration/sender.ts';
import { createPolicy, type PolicyName } from '../../core/migration/policy/registry.ts';
import type { ModeName } from '../../core/modes/dirty-mode.ts';
import { Xoshiro128 } from '../../core/rng.ts';
import { explainWalk, type WalkExplanation } from '../../core/explain/walk-explainer.ts';
import { createGuest, type Addressing, type Guest } from '../../core/runner/guest.ts';
import { fillGuestRandom, GuestCrashedError, MigratableDomain, type MigratableDomainOptions } from '../../core/runner/migratable-domain.ts';
import { PAGE_SIZE } from '../../core/units.ts';
import { AccessBatch } from '../../core/workload/access-batch.ts';
import type { SyntheticWorkload } from '../../core/workload/synthetic-base.ts';
import { createSyntheticWorkload, type SyntheticWorkloadName } from '../../core/workload/synthetic.ts';
import { migrateTo } from '../migration/migrate-to.ts';
import { spawnReceiver, type SpawnedReceiver } from '../migration/spawn-receiver.ts';
import { encodeHeatmap, heatmapGeometry, type HeatmapGeometry } from './heatmap-frame.ts';
import { PageAges } from './page-ages.ts';
import { CounterDeltas, type RoundSample } from './round-sample.ts';

/** Longest stretch the engine runs before yielding to the event loop. */
export const SLICE_MS = 8;
/** Shortest wall time between two rounds, so the page is not flooded. */
export const MIN_ROUND_MS = 50;
/** Rounds of the current run kept for a page that connects late (what its charts show). */
export const HISTORY_ROUNDS = 90;

export interface RunConfig {
  readonly mode: ModeName;
  readonly workload: SyntheticWorkloadName;
  readonly memBytes: number;
  readonly vcpus: number;
  /** Guest accesses (page writes for write workloads) per virtual second. */
  readonly dirtyRate: number;
  /** Accesses per round (a harvest after each). */
  readonly cleanEvery: number;
  readonly seed: number;
  /** identity (workload address = gpa; default) or paged (a guest OS maps gvas: the walk view's 2-D walks). */
  readonly addressing?: Addressing;
}

/** POST /api/walk: whose MMU walks, what address (or the guest frame the heatmap shows), for what access. */
export interface WalkRequest {
  readonly vcpu: number;
  /** A gva (paged) or gpa (identity); or null with `gfn` set. */
  readonly address: number | null;
  /** A guest frame (a heatmap page): the address that maps it is looked up. */
  readonly gfn: number | null;
  /** PERM_R, PERM_W or PERM_X. */
  readonly need: number;
  readonly cold: boolean;
}

/** Data pages a paged guest of `pageCount` frames can map at gvas [0, n): its OS's four levels of tables fit beside them. */
export function pagedDataPages(pageCount: number): number {
  return Math.max(1, pageCount - Math.ceil(pageCount / 512) - Math.ceil(pageCount / 262144) - 2);
}

export interface MigrateConfig {
  readonly policy: PolicyName;
  /** Modelled link (virtual clock), MiB/s. */
  readonly bandwidthMiBps: number;
  readonly latencyMs: number;
}

export type SessionState = 'idle' | 'running' | 'stopped' | 'migrating' | 'migrated' | 'failed';

/** An operation the session's state does not allow (e.g. migrate with no guest). */
export class SessionStateError extends Error {
  override readonly name = 'SessionStateError';
}

/** Where the session's events go (the SSE hub). */
export type Emit = (event: string, data: unknown) => void;

/** What GET /api/state and the SSE `state` event carry. */
export interface SessionSnapshot {
  readonly state: SessionState;
  readonly run: number;
  readonly round: number;
  readonly config: RunConfig | null;
  readonly heatmap: HeatmapGeometry | null;
  readonly message: string;
}

/** The sender's view of the guest, with every CLEAN also shown to the dashboard. */
class ObservedDomain extends MigratableDomain {
  constructor(o: MigratableDomainOptions, private readonly onClean: (bitmap: Uint32Array, dirtyCount: number) => void) {
    super(o);
  }
  override clean(bitmap: Uint32Array, final = false): { dirtyCount: number } {
    const r = super.clean(bitmap, final);
    this.onClean(bitmap, r.dirtyCount);
    return r;
  }
}

interface Run {
  readonly id: number;
  readonly config: RunConfig;
  readonly guest: Guest;
  readonly workload: SyntheticWorkload;
  readonly batch: AccessBatch;
  readonly bitmap: Uint32Array;
  readonly ages: PageAges;
  readonly geometry: HeatmapGeometry;
  readonly deltas: CounterDeltas;
  /** Heatmap rounds recorded (run rounds, then migration CLEANs). */
  heatRound: number;
  /** Run rounds closed. */
  round: number;
  /** Accesses still to run before this round's harvest. */
  leftInRound: number;
  /** Wall time (ms, performance.now) the current round started. */
  roundStartMs: number;
  /** Cached encoded heatmap, invalidated by every recorded round. */
  frame: Uint8Array | null;
  /** The last HISTORY_ROUNDS samples, oldest first. */
  readonly history: RoundSample[];
}

export class GuestSession {
  private stateName: SessionState = 'idle';
  private message = '';
  private run: Run | null = null;
  private runs = 0;
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private receiver: SpawnedReceiver | null = null;
  private migration: Promise<void> | null = null;
  private migrationLog: { event: string; data: unknown }[] = [];

  constructor(private readonly emit: Emit) {}

  get state(): SessionState {
    return this.stateName;
  }

  snapshot(): SessionSnapshot {
    const r = this.run;
    return {
      state: this.stateName,
      run: r?.id ?? 0,
      round: r?.round ?? 0,
      config: r?.config ?? null,
      heatmap: r?.geometry ?? null,
      message: this.message,
    };
  }

  /** Starts a fresh run (a new guest), stopping any run in progress. Refused while migrating. */
  start(config: RunConfig): SessionSnapshot {
    if (this.stateName === 'migrating') throw new SessionStateError('a migration is in progress; wait for it to finish');
    this.cancelLoop();
    const addressing = config.addressing ?? 'identity';
    const guest = createGuest({
      memBytes: config.memBytes, vcpus: config.vcpus, mode: config.mode, addressing, pageSize: '4k', populate: 'up-front',
    });
    // A guest that has been running holds non-zero data everywhere (migrate's --fill random)…
    const rng = new Xoshiro128(config.seed);
    fillGuestRandom(guest.domain, rng);
    // …except its OS's page tables: the OS set up its root table before the fill, so it is cleared
    // again (GuestOs zeroes every table frame it takes; the others are taken after this point).
    if (guest.os !== null) guest.domain.memory.writePage(guest.os.cr3Gfn, new Uint8Array(PAGE_SIZE), 0);
    const pageCount = config.memBytes / PAGE_SIZE;
    // Under paged addressing the workload's addresses are gvas; the OS needs frames for its tables too.
    const workloadPages = addressing === 'paged' ? pagedDataPages(pageCount) : pageCount;
    const workload = createSyntheticWorkload(config.workload, { pageCount: workloadPages, rng: new Xoshiro128(config.seed + 1) });
    guest.mode!.enable();
    const ages = new PageAges(pageCount);
    this.run = {
      id: ++this.runs,
      config,
      guest,
      workload,
      batch: new AccessBatch(4096),
      bitmap: new Uint32Array(Math.ceil(pageCount / 32)),
      ages,
      geometry: heatmapGeometry(pageCount),
      deltas: new CounterDeltas(guest.domain.totalStats(), guest.domain.totalExits()),
      heatRound: 0,
      round: 0,
      leftInRound: config.cleanEvery,
      roundStartMs: performance.now(),
      frame: null,
      history: [],
    };
    this.setState('running', '');
    this.schedule(0);
    return this.snapshot();
  }

  /**
   * Explains one translation on the current guest (core/explain/walk-explainer.ts):
   * the same walker, instrumented, between two slices of the run; the run's
   * state is left as it was. A `gfn` (a heatmap page) is turned into the
   * address that maps it: itself under identity addressing, the gva the guest
   * OS mapped it at under paged addressing.
   */
  walk(req: WalkRequest): WalkExplanation & { readonly address: string } {
    const run = this.run;
    if (run === null) throw new SessionStateError('no guest to walk: start a run first');
    const domain = run.guest.domain;
    if (req.vcpu >= domain.vcpus.length) throw new SessionStateError(`vcpu: ${req.vcpu} is out of range (the guest has ${domain.vcpus.length})`);
    const pageCount = domain.memory.pageCount;
    let address = req.address;
    if (address === null) {
      const gfn = req.gfn ?? 0;
      if (gfn >= pageCount) throw new SessionStateError(`gfn: ${gfn} is outside guest memory (${pageCount} pages)`);
      address = run.guest.os === null ? gfn * PAGE_SIZE : this.gvaOfGfn(run, gfn);
      if (address < 0) throw new SessionStateError(`gfn ${gfn} holds no page the guest has mapped (a page-table page, or a frame not used yet)`);
    }
    const limit = run.guest.os === null ? pageCount * PAGE_SIZE : 2 ** 48;
    if (address >= limit) throw new SessionStateError(`address 0x${address.toString(16)} is outside the guest's ${run.guest.os === null ? 'memory' : '48-bit address space'}`);
    return { address: `0x${address.toString(16)}`, ...explainWalk(domain.vcpus[req.vcpu]!, address, req.need, req.cold, true) };
  }

  /** The gva a paged guest's OS mapped `gfn` at, found through its tables (software view), or -1. */
  private gvaOfGfn(run: Run, gfn: number): number {
    const os = run.guest.os!;
    const pages = pagedDataPages(run.guest.domain.memory.pageCount);
    for (let p = 0; p < pages; p++) {
      if (os.translate(p * PAGE_SIZE) === gfn * PAGE_SIZE) return p * PAGE_SIZE;
    }
    return -1;
  }

  /** Stops the run loop; the guest stays (it can be migrated, or a new run started). */
  stop(): SessionSnapshot {
    if (this.stateName === 'running') {
      this.cancelLoop();
      this.setState('stopped', '');
    }
    return this.snapshot();
  }

  /** The current run's last rounds, oldest first (sent to a page when it connects). */
  recentRounds(): readonly RoundSample[] {
    return this.run?.history ?? [];
  }

  /** The last migration's events (start, rounds, done), for a page that connects after them. */
  recentMigration(): readonly { readonly event: string; readonly data: unknown }[] {
    return this.migrationLog;
  }

  /** Emits a migration event and keeps it for late pages (a new migration starts a new log). */
  private migrationEvent(event: 'migration-start' | 'migration-round' | 'migration-done', data: Record<string, unknown>): void {
    if (event === 'migration-start') this.migrationLog = [];
    this.migrationLog.push({ event, data });
    this.emit(event, data);
  }

  /** The current heatmap frame (see heatmap-frame.ts), or null before the first run. */
  heatmap(): Uint8Array | null {
    const r = this.run;
    if (r === null) return null;
    r.frame ??= encodeHeatmap(r.ages, r.geometry);
    return r.frame;
  }

  /**
   * Starts a live migration of the current guest to a receiver process on
   * loopback. Resolves once it has started (the receiver is up); progress
   * arrives as `migration-round`, the end as `migration-done` or `failure`.
   */
  async migrate(cfg: MigrateConfig): Promise<SessionSnapshot> {
    const run = this.run;
    if (run === null || (this.stateName !== 'running' && this.stateName !== 'stopped')) {
      throw new SessionStateError(this.stateName === 'migrating' ? 'a migration is already in progress' : 'no running guest to migrate: start a run first');
    }
    this.cancelLoop();
    // The accesses run since the last harvest become a (short) last round, then tracking
    // is handed to the sender, which enables log-dirty itself.
    if (run.leftInRound < run.config.cleanEvery) this.closeRound(run);
    run.guest.mode!.disable();
    this.setState('migrating', `starting a receiver on loopback`);
    let receiver: SpawnedReceiver;
    try {
      receiver = await spawnReceiver({ host: '127.0.0.1', once: true, preallocMiB: Math.ceil(run.config.memBytes / 1048576) });
    } catch (e) {
      run.guest.mode!.enable();
      this.setState('stopped', `receiver did not start: ${(e as Error).message}`);
      throw e;
    }
    this.receiver = receiver;
    const source = new ObservedDomain(
      { domain: run.guest.domain, mode: run.guest.mode!, workload: run.workload, accessesPerSecond: run.config.dirtyRate },
      (bitmap, dirty) => {
        run.heatRound++;
        run.ages.record(bitmap, run.heatRound);
        run.frame = null;
        this.emit('heatmap', { run: run.id, heat_round: run.heatRound, dirty, ever_dirty: run.ages.everDirty });
      },
    );
    this.setState('migrating', `migrating to 127.0.0.1:${receiver.port} (policy ${cfg.policy}, ${cfg.bandwidthMiBps} MiB/s modelled link)`);
    this.migrationEvent('migration-start', { run: run.id, policy: cfg.policy, bandwidth_mib_s: cfg.bandwidthMiBps, host: receiver.host, port: receiver.port, page_count: run.ages.pageCount });
    this.migration = (async () => {
      try {
        const result = await migrateTo(source, {
          host: receiver.host,
          port: receiver.port,
          policy: createPolicy(cfg.policy),
          clock: 'virtual',
          link: linkModel(cfg.bandwidthMiBps, cfg.latencyMs),
          observer: {
            round: (r: RoundStats) => this.migrationEvent('migration-round', { run: run.id, ...r }),
          },
        });
        this.migrationEvent('migration-done', {
          run: run.id,
          policy: result.policy,
          rounds: result.rounds.length,
          downtime_ms: result.downtime_ms,
          total_ms: result.total_ms,
          pages_sent: result.pages_sent,
          bytes_sent: result.bytes_sent,
          source_digest: result.source_digest,
          dest_digest: result.dest_digest,
          verified: result.verified,
        });
        this.setState('migrated', result.verified ? 'migrated; the destination verified the memory digest' : 'migrated, but the digests differ');
      } catch (e) {
        // The sender leaves the source guest running and untouched: it can run on.
        const why = (e as Error).message;
        this.emit('failure', { run: run.id, message: why });
        if (!run.guest.mode!.enabled) run.guest.mode!.enable();
        this.setState('stopped', `migration failed: ${why}`);
      } finally {
        await this.reapReceiver();
        this.migration = null;
      }
    })();
    return this.snapshot();
  }

  /** Stops the loop, waits for a migration to end, kills the receiver. */
  async close(): Promise<void> {
    this.cancelLoop();
    if (this.stateName === 'running') this.stateName = 'stopped';
    if (this.receiver !== null) this.receiver.kill();
    if (this.migration !== null) await this.migration.catch(() => undefined);
  }

  private async reapReceiver(): Promise<void> {
    const rcv = this.receiver;
    if (rcv === null) return;
    this.receiver = null;
    await rcv.reap(5000);
  }

  private setState(s: SessionState, message: string): void {
    this.stateName = s;
    this.message = message;
    this.emit('state', this.snapshot());
  }

  private schedule(delayMs: number): void {
    if (delayMs <= 0) this.immediate = setImmediate(this.step);
    else this.timer = setTimeout(this.step, delayMs);
  }

  private cancelLoop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
  }

  /** One slice: run accesses for at most SLICE_MS, closing the round when its accesses are done. */
  private readonly step = (): void => {
    this.timer = null;
    this.immediate = null;
    const run = this.run;
    if (run === null || this.stateName !== 'running') return;
    const sliceEnd = performance.now() + SLICE_MS;
    try {
      do {
        const n = Math.min(run.leftInRound, run.batch.capacity);
        if (!this.runAccesses(run, n)) {
          this.closeRound(run);
          this.setState('stopped', 'the workload ended');
          return;
        }
        run.leftInRound -= n;
        if (run.leftInRound === 0) {
          this.closeRound(run);
          // Pace: a round takes its virtual time on the wall clock too (at least MIN_ROUND_MS).
          const virtualMs = (run.config.cleanEvery / run.config.dirtyRate) * 1000;
          const due = run.roundStartMs + Math.max(MIN_ROUND_MS, virtualMs);
          const now = performance.now();
          run.roundStartMs = Math.max(now, due);
          this.schedule(due - now);
          return;
        }
      } while (performance.now() < sliceEnd);
    } catch (e) {
      this.cancelLoop();
      this.emit('failure', { run: run.id, message: (e as Error).message });
      this.setState('failed', (e as Error).message);
      return;
    }
    this.schedule(0);
  };

  /** Runs n accesses of the workload; false if it ended first. */
  private runAccesses(run: Run, n: number): boolean {
    const { batch, workload } = run;
    const domain = run.guest.domain;
    while (n > 0) {
      if (!workload.fill(batch, n) || batch.length === 0) return false;
      const next = domain.run(batch, 0, batch.length);
      if (next < batch.length) throw new GuestCrashedError(domain.crashReason || `stopped at access ${batch.line[next]}`);
      n -= batch.length;
    }
    return true;
  }

  /** Harvests, records the heatmap round and emits the round's sample. */
  private closeRound(run: Run): void {
    const mode = run.guest.mode!;
    const domain = run.guest.domain;
    const before = mode.controlCycles;
    const h = mode.harvest(run.bitmap);
    const harvestCycles = mode.controlCycles - before;
    run.round++;
    run.heatRound++;
    run.ages.record(run.bitmap, run.heatRound);
    run.frame = null;
    const d = run.deltas.take(domain.totalStats(), domain.totalExits());
    run.leftInRound = run.config.cleanEvery;
    const sample: RoundSample = {
      run: run.id,
      round: run.round,
      heat_round: run.heatRound,
      accesses: d.accesses,
      stores: d.stores,
      dirty: h.dirtyCount,
      fault_count: h.faultCount,
      exits: d.exits,
      cycles: d.cycles,
      harvest_cycles: harvestCycles,
      virtual_ns: Math.round((d.accesses / run.config.dirtyRate) * 1e9),
      ever_dirty: run.ages.everDirty,
      page_count: run.ages.pageCount,
      tracking_bytes: mode.trackingBytes(),
    };
    run.history.push(sample);
    if (run.history.length > HISTORY_ROUNDS) run.history.shift();
    this.emit('round', sample);
  }
}
