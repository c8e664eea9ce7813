/**
 * A rate-limited link: inside a network namespace this test creates, the
 * loopback gets an MTU of 1500 and a tbf qdisc at 80 Mbit/s (this kernel has
 * tbf, not netem), and `memvisor migrate --clock real` runs to a receiver
 * across it. Checks: the migration's measured bandwidth (bytes sent over the
 * whole migration, verdict included) is the shaped rate within 10% — the
 * rate the payload can have, 1448 bytes of stream in each 1514-byte frame
 * (Ethernet 14 + IPv4 20 + TCP with timestamps 32) — and the rounds still
 * follow the law of a uniform writer, round i+1 dirty ≈ M(1 − e^(−D·Tᵢ/M)).
 * Skips, saying why, where namespaces or tc are not available.
 */
import { strict as assert } from 'node:assert';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { Netns, netnsUnavailable } from './netns.ts';
import { Proc } from './proc.ts';
import { CLI } from './cli-entry.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const RATE_BIT_S = 80e6;
const PAYLOAD_PER_FRAME = 1448 / 1514;
const M = 8192; // 32 MiB guest
const D = 2000; // pages/s

const skip = netnsUnavailable(['tc']);

describe('a tbf-shaped link under --clock real', { skip, timeout: 120_000 }, () => {
  it('measured bandwidth within 10% of the shaped rate, and the rounds follow the uniform-writer law', async () => {
    const ns = new Netns('s');
    const procs: Proc[] = [];
    try {
      ns.run('ip', 'link', 'set', 'lo', 'mtu', '1500');
      ns.run('tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', `${RATE_BIT_S / 1e6}mbit`, 'burst', '64kb', 'latency', '50ms');
      const rx = new Proc(ns.spawn(process.execPath, [...CLI, 'receive', '--listen', '127.0.0.1:0', '--json', '--io-timeout', '10']));
      procs.push(rx);
      const port = Number((await rx.waitFor(/"event":"listening"[^\n]*"port":(\d+)/, 30_000, 'stdout'))[1]);
      const tx = new Proc(
        ns.spawn(process.execPath, [...CLI, 'migrate', '--to', `127.0.0.1:${port}`, '--clock', 'real', '--mem', '32M',
          '--workload', 'uniform', '--dirty-rate', String(D), '--io-timeout', '10', '--json']),
      );
      procs.push(tx);
      const e = await tx.exit(90_000);
      assert.equal(e.code, 0, tx.stderr);
      const o = JSON.parse(tx.stdout) as { verified: boolean; bytes_sent: number; total_ms: number; rounds: { dirty: number; duration_ms: number; stop_and_copy: boolean }[] };
      assert.equal(o.verified, true);

      const expected = (RATE_BIT_S / 8) * PAYLOAD_PER_FRAME;
      const measured = o.bytes_sent / (o.total_ms / 1000);
      assert.ok(Math.abs(measured - expected) / expected <= 0.1, `measured ${(measured / 1e6).toFixed(2)} MB/s, shaped ${(expected / 1e6).toFixed(2)} MB/s of payload`);

      const live = o.rounds.filter((r) => !r.stop_and_copy);
      assert.ok(live.length >= 3, `${live.length} live rounds`);
      for (let i = 0; i + 1 < Math.min(live.length, 4); i++) {
        const T = live[i]!.duration_ms / 1000;
        const want = M * (1 - Math.exp((-D * T) / M));
        const got = o.rounds[i + 1]!.dirty;
        assert.ok(Math.abs(got - want) / want < 0.15, `round ${i + 1}: dirty ${got}, law ${want.toFixed(0)} (round ${i} lasted ${T.toFixed(2)} s)`);
      }
    } finally {
      for (const p of procs) p.kill();
      ns.destroy();
    }
  });
});
