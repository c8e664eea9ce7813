/**
 * One soak scenario: a seeded, randomized live migration of a real domain
 * (p2m, walker, the dirty-tracking mode under test) to an in-process
 * receiver, checked against oracles that do not use the code under test:
 *
 *   - every harvest (each CLEAN the sender makes, the stop-and-copy one
 *     included) must contain every page whose bytes differ from the bytes
 *     the sender last read of it (at ENABLE for a page not read since): a
 *     naive model that keeps a copy of each page as sent, so a write the
 *     mode failed to log shows as a missing bit, whatever the addressing or
 *     vCPU did it. (As sent, not as harvested: with KVM's manual protect,
 *     a page stays writable and unlogged between GET and its chunk's lazy
 *     CLEAR, which runs just before the page is read — a write there
 *     leaves with the page, as in QEMU.)
 *   - the migration verifies (destination digest == source digest), and the
 *     destination holds, page by page, the bytes the paused source holds.
 *
 * Everything random comes from the seed: a failure names it, and
 * `runScenario(mode, seed)` replays it exactly (virtual clock).
 */
import { linkModel } from '../../src/core/migration/link-model.ts';
import type { MigratableGuest, PageView } from '../../src/core/migration/migratable-guest.ts';
import { createPolicy, POLICY_NAMES } from '../../src/core/migration/policy/registry.ts';
import { migrate } from '../../src/core/migration/sender.ts';
import { LoopbackTransport } from '../../src/core/migration/testing/loopback-transport.ts';
import type { ModeOptions } from '../../src/core/modes/dirty-mode.ts';
import { Xoshiro128 } from '../../src/core/rng.ts';
import { createGuest } from '../../src/core/runner/guest.ts';
import { fillGuestRandom, MigratableDomain } from '../../src/core/runner/migratable-domain.ts';
import { createSyntheticWorkload, SYNTHETIC_WORKLOADS } from '../../src/core/workload/synthetic.ts';

export const SOAK_MODES = ['ept-wp', 'ept-pml', 'npt-wp', 'arm-wp', 'shadow', 'kvm-bitmap', 'kvm-ring'] as const;

export interface ScenarioResult {
  readonly mode: string;
  readonly seed: number;
  /** What was drawn, for the report of a failure. */
  readonly setup: string;
  readonly rounds: number;
  readonly harvests: number;
  /** Pages that changed but were missing from a harvest (must be 0). */
  readonly lostPages: number;
  readonly verified: boolean;
  /** Destination pages whose bytes differ from the paused source (must be 0). */
  readonly differingPages: number;
  readonly error?: string;
}

const PAGE = 4096;

/** Wraps the guest: checks each harvest against a content snapshot. */
class HarvestOracle implements MigratableGuest {
  harvests = 0;
  lost = 0;
  firstLoss = '';
  /** A copy of every page's bytes as the sender last read it (or at ENABLE). */
  private readonly sent: Uint8Array;
  private readonly now: Uint8Array;
  private readonly one = new Uint8Array(PAGE);
  readonly beforeSend?: (gfn: number) => void;
  constructor(readonly g: MigratableDomain) {
    this.sent = new Uint8Array(g.pageCount * PAGE);
    this.now = new Uint8Array(g.pageCount * PAGE);
    if (g.beforeSend) this.beforeSend = (gfn) => g.beforeSend!(gfn);
  }
  /** The sender reads a page to send it (or to hash it): that is the copy the destination gets. */
  private noteSent(gfn: number): void {
    this.one.fill(0);
    this.g.readPage(gfn, this.one, 0);
    this.sent.set(this.one, gfn * PAGE);
  }
  get pageCount() { return this.g.pageCount; }
  get vcpuCount() { return this.g.vcpuCount; }
  /** Every page's bytes into `out`; an unpopulated page reads as zeros, as the stream carries it. */
  private contents(out: Uint8Array): void {
    out.fill(0);
    for (let gfn = 0; gfn < this.g.pageCount; gfn++) this.g.readPage(gfn, out, gfn * PAGE);
  }
  readPage(gfn: number, dst: Uint8Array, off: number) {
    this.noteSent(gfn);
    return this.g.readPage(gfn, dst, off);
  }
  viewPage(gfn: number, view: PageView) {
    this.noteSent(gfn);
    return this.g.viewPage(gfn, view);
  }
  enableLogDirty() {
    this.g.enableLogDirty();
    this.contents(this.sent);
  }
  clean(bitmap: Uint32Array) {
    const r = this.g.clean(bitmap);
    this.harvests++;
    const now = this.now;
    this.contents(now);
    for (let gfn = 0; gfn < this.g.pageCount; gfn++) {
      const o = gfn * PAGE;
      if (Buffer.compare(now.subarray(o, o + PAGE), this.sent.subarray(o, o + PAGE)) === 0) continue;
      if ((bitmap[gfn >>> 5]! & (1 << (gfn & 31))) === 0) {
        if (this.lost === 0) this.firstLoss = `gfn ${gfn} changed since it was sent but is not in harvest ${this.harvests}`;
        this.lost++;
      }
    }
    return r;
  }
  /** PEEK reads without clearing (legacy libxc's skip): not a harvest, nothing to check. */
  peek(bitmap: Uint32Array) { return this.g.peek(bitmap); }
  disableLogDirty() { this.g.disableLogDirty(); }
  pause() { this.g.pause(); }
  unpause() { this.g.unpause(); }
  runGuestFor(ns: number) { return this.g.runGuestFor(ns); }
  vcpuState() { return this.g.vcpuState(); }
}

function pick<T>(rng: Xoshiro128, xs: readonly T[]): T {
  return xs[rng.nextU32() % xs.length]!;
}

function modeOptionsFor(mode: string, rng: Xoshiro128): ModeOptions {
  switch (mode) {
    case 'ept-pml': return { pmlFlush: pick(rng, ['on-demand', 'every-exit'] as const) };
    case 'arm-wp': return { armDirtySet: pick(rng, ['bitmap', 'list'] as const) };
    case 'kvm-bitmap': {
      const kvmPml = (rng.nextU32() & 1) === 1;
      const manual = (rng.nextU32() & 1) === 1;
      return manual ? { kvmPml, kvmManualProtect: true, kvmInitiallySet: (rng.nextU32() & 1) === 1, kvmClearChunkPages: 64 << (rng.nextU32() % 4) } : { kvmPml };
    }
    // With PML a ring needs room for a full PML log (576 reserved entries): 1024 and up.
    case 'kvm-ring': return { kvmPml: (rng.nextU32() & 1) === 1, ringEntries: pick(rng, [1024, 4096]) };
    default: return {};
  }
}

export async function runScenario(mode: string, seed: number): Promise<ScenarioResult> {
  const rng = new Xoshiro128(seed * 7919 + 17);
  const pageSize = pick(rng, ['4k', '2m'] as const);
  const memMiB = pick(rng, pageSize === '2m' ? [2, 4] : [1, 2, 4]);
  const vcpus = 1 + (rng.nextU32() % 4);
  const workloadName = pick(rng, SYNTHETIC_WORKLOADS);
  const addressing = mode === 'shadow' || (rng.nextU32() & 3) === 0 ? ('paged' as const) : ('identity' as const);
  const dirtyRate = 500 + (rng.nextU32() % 30_000);
  const policyName = pick(rng, POLICY_NAMES);
  const bandwidth = 20 + (rng.nextU32() % 2000);
  // The guest OS model (paged addressing) builds its page tables in guest frames it expects zeroed,
  // as a freshly booted guest's are: random fill would hand it garbage tables.
  const fill = addressing === 'paged' || (rng.nextU32() & 3) === 0 ? 'zero' : 'random';
  const skipUnchanged = (rng.nextU32() & 1) === 1;
  const modeOptions = modeOptionsFor(mode, rng);
  const setup = `${memMiB} MiB ${pageSize}, ${vcpus} vCPU, ${workloadName} at ${dirtyRate}/s, ${addressing}, policy ${policyName}, ${bandwidth} MiB/s, fill ${fill}, skip-unchanged ${skipUnchanged}, ${JSON.stringify(modeOptions)}`;
  const base = { mode, seed, setup };
  try {
    const memBytes = memMiB * 1048576;
    const guest = createGuest({ memBytes, vcpus, mode, addressing, pageSize, modeOptions, populate: fill === 'random' ? 'up-front' : 'on-demand' });
    if (fill === 'random') fillGuestRandom(guest.domain, new Xoshiro128(seed + 1));
    const workload = createSyntheticWorkload(workloadName, { pageCount: memBytes / PAGE, rng: new Xoshiro128(seed + 2) });
    const domain = new MigratableDomain({ domain: guest.domain, mode: guest.mode!, workload, accessesPerSecond: dirtyRate });
    const oracle = new HarvestOracle(domain);
    const t = new LoopbackTransport();
    const r = await migrate(oracle, t, { policy: createPolicy(policyName), clock: 'virtual', link: linkModel(bandwidth, 0.1), skipUnchanged });
    // The source is paused after a verified migration: compare it with the destination, page by page.
    let differing = 0;
    const a = new Uint8Array(PAGE);
    const b = new Uint8Array(PAGE);
    const dest = t.session.memory!;
    for (let gfn = 0; gfn < domain.pageCount; gfn++) {
      const sa = domain.readPage(gfn, a.fill(0), 0);
      const sb = dest.readPage(gfn, b.fill(0), 0);
      if ((sa || sb) && Buffer.compare(a, b) !== 0) differing++;
    }
    return {
      ...base,
      rounds: r.rounds.length,
      harvests: oracle.harvests,
      lostPages: oracle.lost,
      verified: r.verified && r.dest_digest === r.source_digest,
      differingPages: differing,
      ...(oracle.lost > 0 ? { error: oracle.firstLoss } : {}),
    };
  } catch (e) {
    return { ...base, rounds: 0, harvests: 0, lostPages: 0, verified: false, differingPages: 0, error: (e as Error).message };
  }
}

/** A scenario passed: nothing lost, verified, destination equal to source. */
export function passed(r: ScenarioResult): boolean {
  return r.error === undefined && r.lostPages === 0 && r.verified && r.differingPages === 0;
}
