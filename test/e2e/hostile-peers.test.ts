/**
 * `memvisor receive` against peers that do not play fair, on loopback: one
 * that connects and says nothing, one that trickles a byte at a time, a
 * second sender while the first holds the receiver, and HEADERs claiming a
 * guest larger than --max-mem or than the host. Each is dropped or refused
 * within --io-timeout plus slack, with a named reason, nothing allocated for
 * the lie; the same receiver process then takes a real migration that
 * verifies. Bounded in time.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ControlReader, encodeControl, type ControlMessage } from '../../src/core/migration/control.ts';
import { encodeHeader, encodePreamble } from '../../src/core/migration/stream/encoder.ts';
import { Proc } from './proc.ts';
import { CLI } from './cli-entry.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const IO_TIMEOUT_S = 2;
const SLACK_S = 5;

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

/** A raw client: connects, and resolves `closed` with the seconds from connect to the receiver hanging up. */
function rawClient(port: number) {
  const sock = net.connect(port, '127.0.0.1');
  const reader = new ControlReader();
  const messages: ControlMessage[] = [];
  let t0 = 0;
  const connected = new Promise<void>((ok) => sock.once('connect', () => ((t0 = performance.now()), ok())));
  const closed = new Promise<number>((ok) => sock.once('close', () => ok((performance.now() - t0) / 1000)));
  sock.on('error', () => {});
  sock.on('data', (d: Buffer) => {
    reader.push(d);
    for (let m = reader.next(); m; m = reader.next()) messages.push(m);
  });
  return { sock, connected, closed, messages };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('receive against hostile peers', { timeout: 120_000 }, () => {
  let rx: Proc;
  let port = 0;
  before(async () => {
    rx = new Proc(spawn(process.execPath, [...CLI, 'receive', '--listen', '127.0.0.1:0', '--json', '--io-timeout', String(IO_TIMEOUT_S), '--max-mem', '16M'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    port = Number((await rx.waitFor(/"event":"listening"[^\n]*"port":(\d+)/, 30_000, 'stdout'))[1]);
  });
  after(() => rx.kill());

  it('a peer that connects and sends nothing is dropped after --io-timeout (TCP keepalive armed meanwhile); a second sender is told "busy" at once', async () => {
    const silent = rawClient(port);
    await silent.connected;
    await sleep(200);
    // The receiver's end of this connection: keepalive armed (ss prints its timer), where ss exists.
    const ss = spawnSync('ss', ['-tnoH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
    if (ss.status === 0) assert.match(ss.stdout, /timer:\(keepalive/, ss.stdout);

    const second = rawClient(port);
    await second.connected;
    second.sock.write(encodeControl({ t: 'hello', v: 1 }));
    const refusedIn = await second.closed;
    assert.ok(refusedIn < 1, `the second connection waited ${refusedIn.toFixed(2)} s`);
    assert.equal(second.messages[0]?.t, 'refuse');
    assert.match((second.messages[0] as { reason: string }).reason, /busy/);

    const droppedAfter = await silent.closed;
    assert.ok(droppedAfter >= IO_TIMEOUT_S - 0.3 && droppedAfter <= IO_TIMEOUT_S + SLACK_S, `dropped after ${droppedAfter.toFixed(2)} s`);
    await rx.waitFor(/"event":"warning","message":"migration attempt from [^"]* failed: no data for 2 s/, 5_000, 'stdout');
  });

  it('a peer trickling a byte every 400 ms (never silent for the timeout) is dropped for its rate', async () => {
    const t = rawClient(port);
    await t.connected;
    const hello = encodeControl({ t: 'hello', v: 1 });
    const stream = Buffer.concat([hello, encodePreamble()]);
    let i = 0;
    const timer = setInterval(() => {
      if (i < stream.length && !t.sock.destroyed) t.sock.write(stream.subarray(i, ++i));
    }, 400);
    try {
      const droppedAfter = await t.closed;
      assert.ok(droppedAfter >= IO_TIMEOUT_S - 0.3 && droppedAfter <= IO_TIMEOUT_S + SLACK_S, `dropped after ${droppedAfter.toFixed(2)} s`);
    } finally {
      clearInterval(timer);
    }
    await rx.waitFor(/"event":"warning","message":"migration attempt from [^"]* failed: only \d+ bytes in 2 s, below the minimum of 1024 bytes\/s/, 5_000, 'stdout');
  });

  for (const claim of [
    { what: 'than --max-mem (64 MiB against 16 MiB)', pages: 16384, own: false },
    { what: 'than this host holds (256 GiB; no --max-mem)', pages: 2 ** 26, own: true },
  ]) {
    it(`a HEADER claiming a guest larger ${claim.what} is refused before anything is allocated`, async () => {
      // The host's limit is the default: a receiver of its own, without --max-mem.
      const r = claim.own
        ? new Proc(spawn(process.execPath, [...CLI, 'receive', '--listen', '127.0.0.1:0', '--json', '--io-timeout', String(IO_TIMEOUT_S)], { stdio: ['ignore', 'pipe', 'pipe'] }))
        : rx;
      const p = claim.own ? Number((await r.waitFor(/"event":"listening"[^\n]*"port":(\d+)/, 30_000, 'stdout'))[1]) : port;
      try {
        await claimed(r, p, claim.pages);
      } finally {
        if (claim.own) r.kill();
      }
    });
  }

  /** Sends hello, preamble and a HEADER claiming `pages`; expects a bad_header refusal and no growth of the receiver. */
  async function claimed(r: Proc, p: number, pages: number): Promise<void> {
    const before = rssKiB(r.pid);
    const c = rawClient(p);
    await c.connected;
    c.sock.write(encodeControl({ t: 'hello', v: 1 }));
    c.sock.write(encodePreamble());
    c.sock.write(encodeHeader({ pageCount: pages, vcpuCount: 1, policyId: 0, flags: 0 }));
    await c.closed;
    const err = c.messages.find((m) => m.t === 'error') as { code: string; message: string } | undefined;
    assert.equal(err?.code, 'bad_header', JSON.stringify(c.messages));
    assert.match(err!.message, new RegExp(`guest of ${pages} pages`));
    const grewMiB = (rssKiB(r.pid) - before) / 1024;
    assert.ok(grewMiB < 32, `the receiver grew by ${grewMiB.toFixed(0)} MiB for a guest it refused`);
  }

  it('after all that, the same receiver takes a real migration that verifies', async () => {
    const tx = new Proc(spawn(process.execPath, [...CLI, 'migrate', '--to', `127.0.0.1:${port}`, '--mem', '8M', '--io-timeout', '5', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const e = await tx.exit(60_000);
    assert.equal(e.code, 0, tx.stderr);
    assert.equal((JSON.parse(tx.stdout) as { verified: boolean }).verified, true);
    const re = await rx.exit(30_000);
    assert.equal(re.code, 0, rx.stderr);
    const result = rx.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event: string; attempts?: { code?: string; ok: boolean }[] }).find((l) => l.event === 'result')!;
    assert.deepEqual(result.attempts!.map((a) => a.code ?? 'ok'), ['io_timeout', 'too_slow', 'bad_header', 'ok']);
  });
});
