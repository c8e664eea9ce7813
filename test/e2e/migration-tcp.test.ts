/**
 * Sender in this process (fake guest), receiver in a separate process on
 * 127.0.0.1, port 0: plain TCP, TLS with a self-signed certificate, tokens,
 * and the refusals a user can meet, with their messages on both sides.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnReceiver } from '../../src/adapters/migration/spawn-receiver.ts';
import { migrateTo } from '../../src/adapters/migration/migrate-to.ts';
import { FakeGuest } from '../../src/core/migration/testing/fake-guest.ts';
import { createPolicy } from '../../src/core/migration/policy/registry.ts';
import { linkModel } from '../../src/core/migration/link-model.ts';
import { MigrationFailedError } from '../../src/core/migration/errors.ts';

const T = { timeout: 60_000 };
const guest = (seed: number) => new FakeGuest({ pageCount: 8192, dirtyRatePagesPerSec: 20_000, seed });

function selfSigned(): { dir: string; cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mv-tls-'));
  const cert = join(dir, 'c'), key = join(dir, 'k');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { dir, cert, key };
}

test('plain TCP, real clock: verified by a separate receiver process', T, async () => {
  const rx = await spawnReceiver();
  const g = guest(1);
  const r = await migrateTo(g, { host: rx.host, port: rx.port, policy: createPolicy('xen'), clock: 'real', link: linkModel(Infinity) });
  assert.equal(r.verified, true);
  assert.equal(r.clock, 'real');
  const done = await rx.done;
  assert.equal(done.code, 0);
  assert.equal(done.result!.verified, true);
  assert.equal(done.result!.dest_digest, r.source_digest);
  assert.equal(done.result!.page_count, 8192);
});

test('plain TCP, virtual clock: deterministic rounds, same as in-process', T, async () => {
  const rx = await spawnReceiver();
  const r = await migrateTo(guest(2), { host: rx.host, port: rx.port, policy: createPolicy('qemu'), clock: 'virtual', link: linkModel(64, 1) });
  assert.equal(r.verified, true);
  const rx2 = await spawnReceiver();
  const r2 = await migrateTo(guest(2), { host: rx2.host, port: rx2.port, policy: createPolicy('qemu'), clock: 'virtual', link: linkModel(64, 1) });
  assert.deepEqual(r2.rounds, r.rounds);
  await Promise.all([rx.done, rx2.done]);
});

test('TLS with a self-signed certificate and a token', T, async (t) => {
  const { dir, cert, key } = selfSigned();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const rx = await spawnReceiver({ tlsCert: cert, tlsKey: key, token: 's3cret' });
  // A plain client is refused, with a message on each side.
  const plain = await migrateTo(guest(3), { host: rx.host, port: rx.port, token: 's3cret', policy: createPolicy('xen'), clock: 'real', link: linkModel(Infinity) }).catch((e: unknown) => e);
  assert.ok(plain instanceof MigrationFailedError && plain.phase === 'handshake', String(plain));
  assert.match(plain.message, /TLS/);
  // An untrusted certificate is refused by the sender.
  const untrusted = await migrateTo(guest(3), { host: rx.host, port: rx.port, tls: {}, token: 's3cret', policy: createPolicy('xen'), clock: 'real', link: linkModel(Infinity) }).catch((e: unknown) => e);
  assert.ok(untrusted instanceof MigrationFailedError);
  assert.match(untrusted.message, /not trusted.*--tls-ca <cert\.pem>, or --insecure /);
  // A wrong token is refused by the receiver.
  const wrong = await migrateTo(guest(3), { host: rx.host, port: rx.port, tls: { ca: readFileSync(cert), servername: 'localhost' }, token: 'nope', policy: createPolicy('xen'), clock: 'real', link: linkModel(Infinity) }).catch((e: unknown) => e);
  assert.ok(wrong instanceof MigrationFailedError);
  assert.match(wrong.message, /refused the migration: wrong token/);
  // The right CA and token: verified.
  const g = guest(3);
  const r = await migrateTo(g, { host: rx.host, port: rx.port, tls: { ca: readFileSync(cert), servername: 'localhost' }, token: 's3cret', policy: createPolicy('xen'), clock: 'real', link: linkModel(Infinity) });
  assert.equal(r.verified, true);
  const done = await rx.done;
  assert.equal(done.result!.verified, true);
  assert.equal(done.result!.tls, true);
  const attempts = done.result!.attempts as { code?: string; message?: string }[];
  assert.ok(attempts.some((a) => a.code === 'tls' && /without TLS/.test(a.message ?? '')), JSON.stringify(attempts));
  assert.ok(attempts.some((a) => a.code === 'bad_token'));
  assert.match(done.stderr, /wrong token/);
});

test('TLS with --tls-insecure (skip verification) works; a plain receiver refuses a TLS client', T, async (t) => {
  const { dir, cert, key } = selfSigned();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const rx = await spawnReceiver({ tlsCert: cert, tlsKey: key });
  const r = await migrateTo(guest(4), { host: rx.host, port: rx.port, tls: { insecureSkipVerify: true }, policy: createPolicy('adaptive'), clock: 'real', link: linkModel(Infinity) });
  assert.equal(r.verified, true);
  await rx.done;
  const plainRx = await spawnReceiver();
  const e = await migrateTo(guest(4), { host: plainRx.host, port: plainRx.port, tls: { insecureSkipVerify: true }, policy: createPolicy('xen'), clock: 'real', link: linkModel(Infinity) }).catch((x: unknown) => x);
  assert.ok(e instanceof MigrationFailedError && e.phase === 'handshake', String(e));
  assert.match(e.message, /TLS/);
  const ok = await migrateTo(guest(4), { host: plainRx.host, port: plainRx.port, policy: createPolicy('xen'), clock: 'real', link: linkModel(Infinity) });
  assert.equal(ok.verified, true);
  const d = await plainRx.done;
  assert.match(d.stderr, /TLS/);
});
