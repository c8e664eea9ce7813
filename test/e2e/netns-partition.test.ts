/**
 * A real network partition, as a user meets it: `memvisor receive` and
 * `memvisor migrate --to` run as two processes inside a network namespace
 * this test creates, and an nftables rule drops every packet of the
 * migration's port in both directions (no reset, no ICMP) at one phase:
 * the handshake, round 0, a later round, stop-and-copy, and while the sender
 * waits for the verdict. The sender must end within --io-timeout plus slack
 * with one line naming the phase, exit non-zero; after the rule is removed,
 * the receiver (which dropped the partial attempt) takes a retry that
 * verifies. Skips, saying why, where namespaces or nft are not available.
 *
 * To hit a phase exactly, the test waits for the sender's phase line, stops
 * the sender (SIGSTOP), installs the rule and lets it continue. For the
 * verdict, the guest writes little: its last pass, vCPU state and END all fit
 * in the sender's socket buffer, so the sender gets as far as waiting for the
 * verdict while the receiver never sees END (and so never verifies).
 */
import { strict as assert } from 'node:assert';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { Netns, netnsUnavailable } from './netns.ts';
import { Proc } from './proc.ts';
import { CLI } from './cli-entry.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const SENDER_TIMEOUT_S = 3;
const RECEIVER_TIMEOUT_S = 2;
/** Process exit, a tick of the watchdog, a busy shared machine. */
const SLACK_S = 6;

const skip = netnsUnavailable(['nft']);

function memvisor(ns: Netns, args: readonly string[]): Proc {
  return new Proc(ns.spawn(process.execPath, [...CLI, ...args]));
}

async function startReceiver(ns: Netns): Promise<{ rx: Proc; port: number }> {
  const rx = memvisor(ns, ['receive', '--listen', '127.0.0.1:0', '--json', '--io-timeout', String(RECEIVER_TIMEOUT_S)]);
  const m = await rx.waitFor(/"event":"listening"[^\n]*"port":(\d+)/, 30_000, 'stdout');
  return { rx, port: Number(m[1]) };
}

/** Real clock, capped so each round lasts long enough to be caught; uniform writes keep later rounds large. */
const busyGuest = ['--clock', 'real', '--mem', '32M', '--workload', 'uniform', '--dirty-rate', '20000', '--bandwidth', '32'];
/** Few writes: the last pass is small and fits in the socket buffers, so the sender reaches the verdict wait. */
const quietGuest = ['--clock', 'real', '--mem', '32M', '--workload', 'uniform', '--dirty-rate', '100', '--bandwidth', '64'];

interface Case {
  readonly name: string;
  readonly guest: readonly string[];
  /** The sender's stderr line after which the partition lands (none: before the sender starts). */
  readonly trigger?: RegExp;
  readonly expect: RegExp;
}

const CASES: readonly Case[] = [
  { name: 'handshake', guest: busyGuest, expect: /during the handshake/ },
  { name: 'round 0', guest: busyGuest, trigger: /^round 0: sending every page/m, expect: /during round 0:/ },
  { name: 'a later round', guest: busyGuest, trigger: /^round 1: /m, expect: /during round 2:/ },
  { name: 'stop-and-copy', guest: busyGuest, trigger: /^stop-and-copy:/m, expect: /during stop-and-copy \(round \d+\):/ },
  { name: 'waiting for the verdict', guest: quietGuest, trigger: /^stop-and-copy:/m, expect: /during verification \(waiting for the receiver's verdict\):/ },
];

describe('a partition (nftables drops both directions) at each phase', { skip, timeout: 180_000, concurrency: true }, () => {
  for (const c of CASES) {
    it(`${c.name}: the sender gives up within --io-timeout and names the phase; a retry after healing verifies`, async () => {
      const ns = new Netns('p');
      const procs: Proc[] = [];
      try {
        const { rx, port } = await startReceiver(ns);
        procs.push(rx);
        const args = ['migrate', '--to', `127.0.0.1:${port}`, '--io-timeout', String(SENDER_TIMEOUT_S), ...c.guest];
        let partitionAt: number;
        let tx: Proc;
        if (!c.trigger) {
          ns.partition(port);
          tx = memvisor(ns, args);
          procs.push(tx);
          // Timed from the connect (the line before it), not from the guest's preparation.
          await tx.waitFor(/^migrating the /m, 60_000);
          partitionAt = performance.now();
        } else {
          tx = memvisor(ns, args);
          procs.push(tx);
          await tx.waitFor(c.trigger, 60_000);
          tx.signal('SIGSTOP');
          try {
            ns.partition(port);
          } finally {
            tx.signal('SIGCONT');
          }
          partitionAt = performance.now();
        }
        const e = await tx.exit(60_000);
        const tookS = (e.atMs - partitionAt) / 1000;
        const lines = tx.stderr.split('\n').filter((l) => l.startsWith('memvisor:'));
        assert.equal(e.code, 1, tx.stderr);
        assert.equal(lines.length, 1, tx.stderr);
        assert.match(lines[0]!, new RegExp(`^memvisor: no progress for ${SENDER_TIMEOUT_S} s ${c.expect.source}.*the link is down or the receiver is stalled; the source guest is running and unchanged`));
        assert.ok(!/\n\s+at /.test(tx.stderr), 'no stack trace');
        assert.ok(tookS >= SENDER_TIMEOUT_S - 0.5 && tookS <= SENDER_TIMEOUT_S + SLACK_S, `gave up ${tookS.toFixed(2)} s after the partition`);

        ns.heal();
        // The receiver drops the partial attempt on its own timeout (the handshake never reached it).
        if (c.trigger) await rx.waitFor(/"event":"warning","message":"migration attempt from [^"]* failed/, (RECEIVER_TIMEOUT_S + SLACK_S) * 1000, 'stdout');
        const retry = memvisor(ns, ['migrate', '--to', `127.0.0.1:${port}`, '--io-timeout', String(SENDER_TIMEOUT_S), '--mem', '8M', '--json']);
        procs.push(retry);
        const re = await retry.exit(60_000);
        assert.equal(re.signal, null, 'the retry finished on its own');
        assert.equal(re.code, 0, retry.stderr);
        const out = JSON.parse(retry.stdout) as { verified: boolean; source_digest: string };
        assert.equal(out.verified, true);
        const rxe = await rx.exit(30_000);
        assert.equal(rxe.code, 0, rx.stderr);
        const result = rx.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'result')!;
        assert.equal(result.verified, true);
        assert.equal(result.dest_digest, out.source_digest);
      } finally {
        for (const p of procs) p.kill();
        ns.destroy();
      }
    });
  }
});
