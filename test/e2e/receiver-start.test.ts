/**
 * How `migrate` and the dashboard start their receiver process
 * (spawnReceiver): start-up is bounded by silence, not by a fixed total, so a
 * long preallocation that keeps reporting progress is waited for; a failure
 * says what happened; and the child ends with its parent on Ctrl-C. The
 * receiver is stood in for by small scripts speaking its start-up protocol
 * (JSON lines on stdout: preparing…, then listening).
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { spawnReceiver } from '../../src/adapters/migration/spawn-receiver.ts';
import { ROOT } from './cli-entry.ts';

const dir = mkdtempSync(join(tmpdir(), 'memvisor-rxstart-'));
function script(name: string, body: string): string {
  const f = join(dir, name);
  writeFileSync(f, body);
  return f;
}

/** Reports 64 MiB more of 1920 MiB every 400 ms for 12 s, then listens. */
const slowButProgressing = script('progressing.mjs', `
let done = 0;
const t = setInterval(() => {
  done += 16384;
  process.stdout.write(JSON.stringify({ event: 'preparing', pages_done: done, pages: 491520 }) + '\\n');
  if (done === 491520) { clearInterval(t); process.stdout.write(JSON.stringify({ event: 'listening', host: '127.0.0.1', port: 4321 }) + '\\n'); setTimeout(() => {}, 1e6); }
}, 400);
`);
const stalls = script('stalls.mjs', `
process.stdout.write(JSON.stringify({ event: 'preparing', pages_done: 16384, pages: 65536 }) + '\\n');
process.stderr.write('receiver: allocating\\n');
setTimeout(() => {}, 1e6);
`);
const silent = script('silent.mjs', 'setTimeout(() => {}, 1e6);\n');
const dies = script('dies.mjs', "process.stderr.write('receiver: --prealloc-mib: cannot allocate\\n'); process.exit(3);\n");

describe('receiver start-up', { timeout: 120_000 }, () => {
  it('waits for a start-up that keeps reporting progress, well past the silence bound', async () => {
    const t0 = Date.now();
    const rx = await spawnReceiver({ entry: slowButProgressing, startTimeoutMs: 5000 });
    assert.ok(Date.now() - t0 >= 12_000, 'it took longer than twice the bound');
    assert.equal(rx.port, 4321);
    rx.kill();
  });

  it('gives up on silence and says how far it got, with the receiver\'s last message', async () => {
    await assert.rejects(spawnReceiver({ entry: stalls, startTimeoutMs: 5000 }), {
      message: 'the receiver process did not start: no progress for 5 s after building 64 MiB of 256 MiB of its memory (its last message: allocating)',
    });
    await assert.rejects(spawnReceiver({ entry: silent, startTimeoutMs: 2000 }), { message: 'the receiver process did not start: it printed nothing for 2 s' });
  });

  it('names the exit and the reason when the receiver dies before listening', async () => {
    await assert.rejects(spawnReceiver({ entry: dies }), {
      message: 'the receiver process did not start: it exited (code 3) before listening (its last message: --prealloc-mib: cannot allocate)',
    });
  });

  it('Ctrl-C on the parent ends the receiver child at once', async () => {
    // A parent that starts a receiver which never listens, prints the child's pid, and waits.
    const parent = script('parent.mts', `
import { spawnReceiver } from ${JSON.stringify(join(ROOT, 'src/adapters/migration/spawn-receiver.ts'))};
const p = spawnReceiver({ entry: ${JSON.stringify(silent)}, startTimeoutMs: 60_000 });
p.catch(() => {});
setTimeout(() => {}, 60_000);
`);
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), parent], { stdio: ['ignore', 'pipe', 'pipe'] });
    const pid = await new Promise<number>((resolve, reject) => {
      const t = setInterval(() => {
        try {
          // The receiver stand-in, not the loader's helper processes (esbuild).
          const kid = childPids(child.pid!).find((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('silent.mjs'));
          if (kid !== undefined) {
            clearInterval(t);
            resolve(kid);
          }
        } catch (e) {
          clearInterval(t);
          reject(e);
        }
      }, 100);
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, sig) => resolve(sig)));
    process.kill(child.pid!, 'SIGINT');
    assert.equal(await exited, 'SIGINT', 'the parent still dies of the signal');
    const gone = await waitGone(pid, 2000);
    if (!gone) process.kill(pid, 'SIGKILL');
    assert.ok(gone, `receiver child ${pid} outlived its parent`);
  });
});

/** Child pids of `pid` (Linux /proc). */
function childPids(pid: number): number[] {
  const kids: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    kids.push(...readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
  }
  return kids;
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // Gone, or a zombie waiting for whoever adopted it to reap it.
    let state: string;
    try {
      state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0]!;
    } catch {
      return true;
    }
    if (state === 'Z') return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
