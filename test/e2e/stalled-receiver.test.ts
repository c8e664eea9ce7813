/**
 * A receiver that stops (SIGSTOP) for 10 s mid-stream and then resumes, as
 * a host under memory pressure or a debugger would. The sender must not
 * buffer what the receiver does not take (its RSS is sampled while the
 * receiver is stopped), and must either complete once the receiver resumes
 * (--io-timeout longer than the stall) or give up cleanly, naming the round
 * (--io-timeout shorter): then the resumed receiver drops the partial attempt
 * and takes a retry that verifies. Loopback; bounded in time.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { Proc } from './proc.ts';
import { CLI } from './cli-entry.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const STALL_MS = 10_000;

function memvisor(args: readonly string[]): Proc {
  return new Proc(spawn(process.execPath, [...CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
}

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

/** Samples `pid`'s RSS every 100 ms for `ms`; returns the samples (MiB). */
async function sampleRss(pid: number, ms: number): Promise<number[]> {
  const out: number[] = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    try {
      out.push(rssMiB(pid));
    } catch {
      break; // exited
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return out;
}

async function startReceiver(ioTimeoutS: number): Promise<{ rx: Proc; port: number }> {
  const rx = memvisor(['receive', '--listen', '127.0.0.1:0', '--json', '--io-timeout', String(ioTimeoutS)]);
  const m = await rx.waitFor(/"event":"listening"[^\n]*"port":(\d+)/, 30_000, 'stdout');
  return { rx, port: Number(m[1]) };
}

/** A guest far larger than any buffer on the way (4 MiB transport high-water, socket buffers). */
const GUEST = ['--clock', 'real', '--mem', '256M', '--workload', 'hotspot', '--dirty-rate', '2000', '--bandwidth', '128'];
/** What the sender may grow by while nothing drains: transport high-water, a batch being built, slack. */
const BOUND_MIB = 48;

describe('a receiver stopped for 10 s mid-stream', { timeout: 180_000, concurrency: true }, () => {
  it('--io-timeout longer than the stall: the sender holds still with bounded memory and completes, verified', async () => {
    const { rx, port } = await startReceiver(30);
    const tx = memvisor(['migrate', '--to', `127.0.0.1:${port}`, '--io-timeout', '30', '--json', ...GUEST]);
    try {
      // --json silences the phase lines: wait until the receiver has taken a first stretch of the stream.
      await rx.waitFor(/"event":"info","message":"migration from [^"]* accepted/, 60_000, 'stdout');
      await new Promise((r) => setTimeout(r, 500));
      rx.signal('SIGSTOP');
      let samples: number[];
      try {
        samples = await sampleRss(tx.pid, STALL_MS);
      } finally {
        rx.signal('SIGCONT');
      }
      const grew = Math.max(...samples) - samples[0]!;
      assert.ok(samples.length > 20, 'the sender kept running through the stall');
      assert.ok(grew < BOUND_MIB, `the sender grew by ${grew.toFixed(1)} MiB while the receiver was stopped`);
      const e = await tx.exit(90_000);
      assert.equal(e.code, 0, tx.stderr);
      const o = JSON.parse(tx.stdout) as { verified: boolean; total_ms: number };
      assert.equal(o.verified, true);
      assert.ok(o.total_ms >= STALL_MS, 'the stall is inside the migration');
      assert.equal((await rx.exit(30_000)).code, 0, rx.stderr);
    } finally {
      tx.kill();
      rx.kill();
    }
  });

  it('--io-timeout shorter than the stall: the sender gives up cleanly naming the round; the resumed receiver drops the attempt and verifies a retry', async () => {
    const { rx, port } = await startReceiver(30);
    const tx = memvisor(['migrate', '--to', `127.0.0.1:${port}`, '--io-timeout', '3', ...GUEST]);
    const procs = [rx, tx];
    try {
      await tx.waitFor(/^round 0: sending every page/m, 60_000);
      await new Promise((r) => setTimeout(r, 500));
      rx.signal('SIGSTOP');
      const stoppedAt = performance.now();
      let samples: number[];
      try {
        const [s] = await Promise.all([sampleRss(tx.pid, STALL_MS), tx.exit(STALL_MS + 20_000)]);
        samples = s;
      } finally {
        rx.signal('SIGCONT');
      }
      const e = await tx.exited;
      const tookS = (e.atMs - stoppedAt) / 1000;
      assert.equal(e.code, 1, tx.stderr);
      const lines = tx.stderr.split('\n').filter((l) => l.startsWith('memvisor:'));
      assert.equal(lines.length, 1, tx.stderr);
      assert.match(lines[0]!, /^memvisor: no progress for 3 s during round 0: the link is down or the receiver is stalled; the source guest is running and unchanged/);
      assert.ok(tookS >= 2.5 && tookS < STALL_MS / 1000, `gave up ${tookS.toFixed(2)} s into the stall`);
      assert.ok(Math.max(...samples) - samples[0]! < BOUND_MIB, `the sender grew by ${(Math.max(...samples) - samples[0]!).toFixed(1)} MiB`);

      await rx.waitFor(/"event":"warning","message":"migration attempt from [^"]* failed/, 10_000, 'stdout');
      const retry = memvisor(['migrate', '--to', `127.0.0.1:${port}`, '--mem', '8M', '--json']);
      procs.push(retry);
      assert.equal((await retry.exit(60_000)).code, 0, retry.stderr);
      assert.equal((JSON.parse(retry.stdout) as { verified: boolean }).verified, true);
      assert.equal((await rx.exit(30_000)).code, 0, rx.stderr);
    } finally {
      for (const p of procs) p.kill();
    }
  });
});
