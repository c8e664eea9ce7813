/**
 * `memvisor migrate`: live-migrates a running guest to a receiver — one it
 * starts itself as a separate process on loopback, or `--to host:port`.
 * The guest is a real domain (p2m, walker, dirty-tracking mode) running a
 * synthetic workload at `--dirty-rate` pages per second while pre-copy
 * rounds, driven by the mode's log-dirty operations and the stop policy,
 * move its memory; the destination verifies the final digest.
 */
import { totalmem } from 'node:os';
import { createPolicy, policyNames } from '../../core/migration/policy/registry.ts';
import { linkModel } from '../../core/migration/link-model.ts';
import type { MigrationResult, RoundStats } from '../../core/migration/sender.ts';
import { Xoshiro128 } from '../../core/rng.ts';
import { createGuest } from '../../core/runner/guest.ts';
import { fillGuestRandom, MigratableDomain } from '../../core/runner/migratable-domain.ts';
import { GiB, PAGE_SIZE } from '../../core/units.ts';
import { AccessBatch } from '../../core/workload/access-batch.ts';
import { createSyntheticWorkload } from '../../core/workload/synthetic.ts';
import { LackeyReader } from '../../adapters/lackey-reader.ts';
import { migrateTo } from '../../adapters/migration/migrate-to.ts';
import { spawnReceiver, type SpawnedReceiver } from '../../adapters/migration/spawn-receiver.ts';
import { UsageError } from '../errors.ts';
import { claimReportFile, writeReportFile } from '../report-file.ts';
import { requireRecords } from '../source.ts';
import { choiceFlag, fileFlag, intFlag, ioTimeoutFlag, memFlag, modeFlag, numberFlag, sizeFlag, workloadFlag } from '../options.ts';
import { QEMU_DEFAULT_MAX_BANDWIDTH } from '../../core/migration/qemu-thread.ts';
import { AutoConverge } from '../../core/migration/auto-converge.ts';
import { formatSize, Progress, renderKeyValue, renderTable } from '../output.ts';
import { parseHostPort } from '../parse-size.ts';
import { modeOptionsFrom, type TraceFlags } from './trace.ts';
import { formatHostPort } from '../../adapters/migration/host-port.ts';

export interface MigrateFlags extends TraceFlags {
  trace?: string;
  workload?: string;
  policy?: string;
  bandwidth?: string;
  link?: string;
  latency?: string;
  wss?: string;
  skipUnchanged?: boolean;
  autoConverge?: boolean;
  dirtyRate?: string;
  downtimeLimit?: string;
  clock?: string;
  fill?: string;
  to?: string;
  tls?: boolean;
  tlsCa?: string;
  insecure?: boolean;
  token?: string;
  report?: string;
  ioTimeout?: string;
}

/** Records in the first batch of a trace (0: empty, or only comments); read errors and bad lines throw as usual. */
/**
 * Reads the whole trace once (streamed) and returns its record count: a line
 * that does not parse is the user's input error, reported with its file and
 * line before any receiver or migration starts (not as a failed migration).
 */
async function checkTrace(trace: string): Promise<number> {
  const reader = new LackeyReader(trace);
  try {
    const batch = new AccessBatch(8192);
    let records = 0;
    while (await reader.fill(batch)) records += batch.length;
    return records;
  } finally {
    reader.close();
  }
}

/** migrate's flags, each checked once (no file is read and nothing runs). */
export function parseMigrateFlags(f: MigrateFlags) {
  if (f.trace !== undefined && f.workload !== undefined) throw new UsageError('give --trace or --workload, not both');
  const traced = f.trace !== undefined;
  const workloadName = traced ? `trace ${f.trace}` : workloadFlag(f.workload ?? 'hotspot');
  // A trace's addresses are guest-virtual: the guest OS model maps them into a compact guest.
  // The source guest is populated and filled up front; without --to the receiver on this host holds a second copy.
  const memBytes = memFlag(f.mem, traced ? 64 * 1048576 : GiB, {
    synthetic: !traced,
    populated: { hostBytes: totalmem(), copies: f.to === undefined ? 2 : 1, why: f.to === undefined ? 'migrate fills every page of the source guest, and the receiver it starts here holds a copy' : 'migrate fills every page of the source guest' },
  });
  const vcpus = intFlag('--vcpus', f.vcpus, 1, 1, 256);
  const mode = modeFlag(f.mode, 'ept-pml');
  const policyName = choiceFlag('--policy', f.policy, policyNames(), 'xen');
  // --bandwidth is the saver's rate cap (QEMU max-bandwidth, default 128 MiB/s; the Xen savers have none
  // unless given, and then every pass is capped); --link is the pipe itself (default 10 GbE).
  const capMiBps = f.bandwidth === undefined ? (policyName === 'qemu' ? QEMU_DEFAULT_MAX_BANDWIDTH / 1048576 : null) : numberFlag('--bandwidth', f.bandwidth, 0, 0.001);
  const linkMiBps = numberFlag('--link', f.link, 1250, 0.001);
  const latencyMs = numberFlag('--latency', f.latency, 0.1, 0);
  // Synthetic workloads: page writes per virtual second; traces: records per virtual second.
  const dirtyRate = intFlag('--dirty-rate', f.dirtyRate, traced ? 1_000_000 : 20_000, 0, 0xffffffff);
  const downtimeLimitMs = numberFlag('--downtime-limit', f.downtimeLimit, 300, 0);
  const clock = choiceFlag('--clock', f.clock, ['virtual', 'real'] as const, 'virtual');
  const fill = choiceFlag('--fill', f.fill, ['random', 'zero'] as const, 'random');
  if (traced && f.wss !== undefined) throw new UsageError('--wss applies to synthetic workloads (--workload), not to a trace');
  const wssBytes = sizeFlag('--wss', f.wss, memBytes);
  if (wssBytes <= 0 || wssBytes > memBytes) throw new UsageError(`--wss: ${f.wss} must be more than 0 and at most --mem (${formatSize(memBytes)})`);
  const seed = intFlag('--seed', f.seed, 1, 0);
  const ioTimeoutMs = ioTimeoutFlag(f.ioTimeout);
  const pageSize = choiceFlag('--page-size', f.pageSize, ['4k', '2m'] as const, '4k');
  const target = f.to === undefined ? null : parseHostPort(f.to, { flag: '--to' });
  if (f.tls && target === null) throw new UsageError('--tls needs --to host:port: the receiver migrate starts on loopback listens without TLS');
  if (!f.tls && (f.tlsCa !== undefined || f.insecure)) throw new UsageError('--tls-ca and --insecure only apply with --tls');
  const tlsCa = f.tlsCa === undefined ? undefined : fileFlag('--tls-ca', f.tlsCa);
  if (f.autoConverge && policyName !== 'qemu') throw new UsageError(`--auto-converge is QEMU's: it needs --policy qemu (got --policy ${policyName})`);
  return { traced, workloadName, memBytes, vcpus, mode, policyName, capMiBps, linkMiBps, latencyMs, dirtyRate, downtimeLimitMs, clock, fill, wssBytes, seed, ioTimeoutMs, pageSize, target, tlsCa };
}

export async function migrateCommand(f: MigrateFlags): Promise<void> {
  const p = parseMigrateFlags(f);
  // The trace is read while the guest migrates; an empty or unreadable one is refused before any of that starts.
  if (p.traced && f.trace !== '-') requireRecords(f.trace, await checkTrace(f.trace!));
  claimReportFile(f.report);
  const progress = new Progress(!f.json);
  const { out, result } = await migrateResult(f, p, progress);
  if (f.json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else {
    const thr = f.autoConverge === true;
    const rows = out.rounds.map((r) => [r.round + (r.stop_and_copy ? ' (stop)' : ''), r.dirty, r.pending, r.pages_sent, r.zero, r.skipped_redirtied, r.skipped_unchanged, r.bitmap_syncs, ...(thr ? [`${r.throttle_pct ?? 0}%`] : []), (r.bytes / 1048576).toFixed(1), r.duration_ms.toFixed(1)]);
    process.stdout.write(`${renderTable(['round', 'dirty', 'pending', 'pages sent', 'zero', 'skip re-dirtied', 'skip unchanged', 'syncs', ...(thr ? ['throttle'] : []), 'MiB', 'ms'], rows)}\n`);
    process.stdout.write(
      `${renderKeyValue([
        ['policy / clock', `${out.policy} / ${out.clock}`],
        ['downtime (ms)', out.downtime_ms.toFixed(2)],
        ['total (ms)', out.total_ms.toFixed(1)],
        ['pages sent', out.pages_sent],
        ['MiB sent', (out.bytes_sent / 1048576).toFixed(1)],
        ['verified', out.verified ? 'yes (digests equal)' : 'NO'],
        ['digest', out.source_digest],
        ...(f.report !== undefined ? [['report', f.report] as [string, string]] : []),
      ])}\n`,
    );
  }
  if (f.report !== undefined) {
    const { renderReport } = await import('../../adapters/migration/report-html.ts');
    writeReportFile(f.report, renderReport(result, { mode: p.mode, workload: p.workloadName, dirtyRate: p.dirtyRate, memBytes: p.memBytes }));
  }
  if (!result.verified) process.exitCode = 1;
}


/** Runs the migration `migrate --json` describes; progress lines only, nothing on stdout. */
export async function migrateResult(f: MigrateFlags, p: ReturnType<typeof parseMigrateFlags>, progress: Progress) {
  const { traced, workloadName, memBytes, vcpus, mode, policyName, capMiBps, linkMiBps, latencyMs, dirtyRate, downtimeLimitMs, clock, fill, wssBytes, seed, ioTimeoutMs, pageSize, target, tlsCa } = p;

  // The source guest: memory populated up front and filled, the workload ready.
  progress.line(`preparing a ${formatSize(memBytes)} source guest (${fill} fill)`, true);
  const guest = createGuest({
    memBytes, vcpus, mode, addressing: traced ? 'paged' : 'identity', pageSize, modeOptions: modeOptionsFrom(f),
    populate: fill === 'random' ? 'up-front' : 'on-demand',
  });
  const rng = new Xoshiro128(seed);
  // --wss: the workload writes within the first wssBytes, and only they hold data (the rest was never written).
  const wssPages = wssBytes / PAGE_SIZE;
  if (fill === 'random') fillGuestRandom(guest.domain, rng, wssPages);
  const workload = traced ? new LackeyReader(f.trace!) : createSyntheticWorkload(workloadName, { pageCount: wssPages, rng: new Xoshiro128(seed + 1) });
  const source = new MigratableDomain({ domain: guest.domain, mode: guest.mode!, workload, accessesPerSecond: dirtyRate });

  let receiver: SpawnedReceiver | null = null;
  let host: string;
  let port: number;
  if (target === null) {
    progress.line('starting the receiver process on loopback', true);
    receiver = await spawnReceiver({ host: '127.0.0.1', once: true, ioTimeoutMs, preallocMiB: Math.ceil(memBytes / 1048576), ...(f.token !== undefined ? { token: f.token } : {}) });
    host = receiver.host;
    port = receiver.port;
  } else {
    host = target.host;
    port = target.port;
  }
  const wssNote = wssBytes < memBytes ? ` within the first ${formatSize(wssBytes)}` : '';
  const rateNote = `${capMiBps === null ? 'no rate cap' : `capped at ${capMiBps} MiB/s`}${clock === 'virtual' ? `, ${linkMiBps} MiB/s link` : ''}`;
  progress.line(`migrating the ${formatSize(memBytes)} guest (${workloadName} at ${dirtyRate} ${traced ? 'records' : 'pages'}/s${wssNote}, ${mode}, policy ${policyName}, ${rateNote}, ${clock} clock) to ${formatHostPort(host, port)}`, true);

  let lastRound: RoundStats | null = null;
  let barRound = -1;
  let result: MigrationResult;
  try {
    result = await migrateTo(source, {
      host,
      port,
      ...(f.tls ? { tls: { ...(tlsCa ? { ca: tlsCa } : {}), insecureSkipVerify: f.insecure === true } } : {}),
      ...(f.token !== undefined ? { token: f.token } : {}),
      policy: createPolicy(policyName, { downtimeLimitMs }),
      clock,
      ioTimeoutMs,
      link: linkModel(linkMiBps, latencyMs),
      ...(capMiBps !== null ? { capBytesPerSec: capMiBps * 1048576 } : {}),
      ...(f.skipUnchanged ? { skipUnchanged: true } : {}),
      ...(f.autoConverge ? { throttle: new AutoConverge(PAGE_SIZE) } : {}),
      observer: {
        progress(round, done, total) {
          if (round !== barRound) {
            barRound = round;
            progress.start(`round ${round}`, total);
          }
          progress.update(done, detailFor(lastRound, total, capMiBps ?? linkMiBps));
        },
        round(r) {
          progress.stop();
          progress.line(
            `round ${r.round}${r.stop_and_copy ? ' (stop-and-copy)' : ''}: ${r.pages_sent} pages sent of ${r.pending} pending (${r.dirty} dirty), ` +
              `${(r.bytes / 1048576).toFixed(1)} MiB in ${r.duration_ms.toFixed(1)} ms, ${r.zero} zero, ` +
              `${r.skipped_redirtied} skipped re-dirtied, ${r.skipped_unchanged} skipped unchanged, ${r.bitmap_syncs} bitmap sync${r.bitmap_syncs === 1 ? '' : 's'}` +
              (r.throttle_pct !== undefined ? `, vCPUs throttled ${r.throttle_pct}%` : ''),
            true,
          );
          lastRound = r;
        },
        phase(ph, round) {
          // Printed as it happens, so whoever watches (a person, a test) knows where a stall hit.
          if (ph === 'live') progress.line('round 0: sending every page', true);
          else if (ph === 'stop-and-copy') progress.line(`stop-and-copy: guest paused, sending the last dirty pages (round ${round})`, true);
          else if (ph === 'verify') progress.line("verify: sending the digest, waiting for the receiver's verdict", true);
        },
      },
    });
  } finally {
    progress.stop();
    if (receiver !== null) await receiver.reap(10_000);
  }
  const out = {
    policy: result.policy,
    clock: result.clock,
    mode,
    workload: workloadName,
    dirty_rate: dirtyRate,
    mem_bytes: memBytes,
    wss_bytes: wssBytes,
    rounds: result.rounds.map((r) => ({
      round: r.round, pages_sent: r.pages_sent, dirty: r.dirty, pending: r.pending, bytes: r.bytes, duration_ms: r.duration_ms,
      skipped: r.skipped, skipped_redirtied: r.skipped_redirtied, skipped_unchanged: r.skipped_unchanged, zero: r.zero,
      bitmap_syncs: r.bitmap_syncs, stop_and_copy: r.stop_and_copy,
      ...(r.throttle_pct !== undefined ? { throttle_pct: r.throttle_pct } : {}),
    })),
    downtime_ms: result.downtime_ms,
    downtime_split: result.downtime_split,
    total_ms: result.total_ms,
    pages_sent: result.pages_sent,
    bytes_sent: result.bytes_sent,
    skipped: result.skipped,
    skipped_redirtied: result.skipped_redirtied,
    skipped_unchanged: result.skipped_unchanged,
    zero_pages: result.zero_pages,
    bitmap_syncs: result.bitmap_syncs,
    peeks: result.peeks,
    ...(result.switchover !== undefined ? { switchover: result.switchover } : {}),
    source_digest: result.source_digest,
    dest_digest: result.dest_digest,
    verified: result.verified,
    bandwidth_mib_s: result.bandwidth_mib_s,
    link_mib_s: result.link_mib_s,
    guest_accesses: source.accessesRun,
  };
  return { out, result };
}


/**
 * Progress detail for a round: the dirty rate the CLEAN at its start measured
 * (pages it returned over the previous round's duration) and the downtime a
 * stop now would cost (those pages over the link).
 */
function detailFor(previous: RoundStats | null, dirtyNow: number, bandwidthMiBps: number): string {
  if (previous === null || previous.duration_ms <= 0) return '';
  const rate = dirtyNow / (previous.duration_ms / 1000);
  const estDowntimeMs = ((dirtyNow * PAGE_SIZE) / (bandwidthMiBps * 1048576)) * 1000;
  return `| dirty rate ${Math.round(rate)} pages/s | est. downtime ${estDowntimeMs.toFixed(1)} ms`;
}
