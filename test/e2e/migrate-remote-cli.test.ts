/**
 * `memvisor receive` and `memvisor migrate --to` as two separate CLI
 * processes on loopback, the way two hosts would use them: shared token,
 * TLS with a self-signed certificate, refusals with one clear line, an
 * unreachable receiver, and a retry after a refused attempt. Bounded in time.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CLI, ROOT } from './cli-entry.ts';


function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((ok) => {
    const child = spawn(process.execPath, [...CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      ok({ code, stdout, stderr });
    });
  });
}

interface Receiver {
  port: number;
  child: ChildProcess;
  done: Promise<{ code: number | null; lines: Record<string, unknown>[]; stderr: string }>;
}

function startReceiver(extra: string[]): Promise<Receiver> {
  const child = spawn(process.execPath, [...CLI, 'receive', '--listen', '127.0.0.1:0', '--json', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const done = new Promise<{ code: number | null; lines: Record<string, unknown>[]; stderr: string }>((ok) => {
    child.on('close', (code) => ok({ code, lines: out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>), stderr: err }));
  });
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('receiver did not start')), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const m = /"event":"listening"[^\n]*"port":(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok({ port: Number(m[1]), child, done });
      }
    });
  });
}

const SMALL = ['--mem', '8M', '--workload', 'hotspot', '--dirty-rate', '5000', '--json'];

describe('receive and migrate --to, as two CLI processes', { timeout: 240_000 }, () => {
  it('a wrong token is refused with one line on the sender; the right one then verifies', async () => {
    const rx = await startReceiver(['--token', 's3cret', '--prealloc', '64M']); // destination memory built up front
    const bad = await run(['migrate', '--to', `127.0.0.1:${rx.port}`, '--token', 'nope', ...SMALL]);
    assert.notEqual(bad.code, 0);
    assert.equal(bad.stderr.trim().split('\n').filter((l) => l.startsWith('memvisor:')).length, 1, bad.stderr);
    assert.match(bad.stderr, /token/i);
    const good = await run(['migrate', '--to', `127.0.0.1:${rx.port}`, '--token', 's3cret', ...SMALL]);
    assert.equal(good.code, 0, good.stderr);
    const o = JSON.parse(good.stdout);
    assert.equal(o.verified, true);
    const r = await rx.done;
    assert.equal(r.code, 0);
    const result = r.lines.find((l) => l.event === 'result')!;
    assert.equal(result.verified, true);
    assert.equal(result.dest_digest, o.source_digest);
    // --json: the events on stdout say it all; no human lines on stderr (the refused attempt is in the result).
    assert.equal(r.stderr, '');
    // ...and the refused attempt was also told as it happened, as a warning event.
    assert.ok(r.lines.some((l) => l.event === 'warning' && /failed: .*token/i.test(String(l.message))), JSON.stringify(r.lines));
    assert.ok((result.attempts as { ok: boolean; message: string }[]).some((a) => !a.ok && /token/i.test(a.message)), JSON.stringify(result.attempts));
  });

  it('a TLS client at a plain receiver is told, in one line, that the receiver does not use TLS', async () => {
    const rx = await startReceiver(['--once']);
    try {
      const r = await run(['migrate', '--to', `127.0.0.1:${rx.port}`, '--tls', '--insecure', ...SMALL]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr, `memvisor: migration failed during handshake: the receiver at 127.0.0.1:${rx.port} does not use TLS (connect without --tls); the source guest is running and unchanged\n`);
    } finally {
      rx.child.kill();
    }
  });

  it('an IPv6 receiver names its address as --to takes it: [::1]:PORT', async (t) => {
    const child = spawn(process.execPath, [...CLI, 'receive', '--listen', '[::1]:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    const line = await new Promise<string>((ok) => {
      const timer = setTimeout(() => ok(err), 60_000);
      child.stderr.on('data', (d: Buffer) => {
        err += d;
        if (err.includes('\n')) {
          clearTimeout(timer);
          ok(err);
        }
      });
      child.on('close', () => ok(err));
    });
    child.kill();
    if (/not an address of this machine/.test(line)) return t.skip('no IPv6 loopback here');
    assert.match(line, /^receiver: listening on \[::1\]:\d+$/m);
  });

  it('TLS: a client trusting the certificate verifies; a plain client is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'memvisor-tls-'));
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert], { encoding: 'utf8' });
    assert.equal(gen.status, 0, gen.stderr);
    const rx = await startReceiver(['--tls-cert', cert, '--tls-key', key]);
    const plain = await run(['migrate', '--to', `127.0.0.1:${rx.port}`, ...SMALL]);
    assert.notEqual(plain.code, 0);
    assert.match(plain.stderr, /^memvisor: .*/m);
    // The hint names flags migrate has (--tls, --insecure), not ones it lacks.
    assert.match(plain.stderr, /use --tls with --tls-ca <cert\.pem>, or --tls --insecure/);
    const tls = await run(['migrate', '--to', `127.0.0.1:${rx.port}`, '--tls', '--tls-ca', cert, ...SMALL]);
    assert.equal(tls.code, 0, tls.stderr);
    assert.equal(JSON.parse(tls.stdout).verified, true);
    assert.equal((await rx.done).code, 0);
  });

  it('an unreachable receiver: one line naming the address, non-zero exit', async () => {
    const port = await new Promise<number>((ok) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => ok(p));
      });
    });
    const r = await run(['migrate', '--to', `127.0.0.1:${port}`, ...SMALL]);
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('memvisor:'));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, new RegExp(`127\\.0\\.0\\.1:${port}|ECONNREFUSED|refused`, 'i'));
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });
});
