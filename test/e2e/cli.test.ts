/**
 * The command-line contract, as an outside test would parse it: `trace
 * --json` shape and round semantics, one-line errors with non-zero exits and
 * no stack trace, `run` on the shared trace. Bounded in time.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { CLI, ROOT } from './cli-entry.ts';

const SHARED_TRACE = resolve(ROOT, '../shared/traces/sort-2m.lackey.gz');

function cli(args: string[], input?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8', timeout: 120_000, input, env: { ...process.env, MEMVISOR_DEBUG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts the CLI, resolves with its stderr 1 s after it holds a whole line (or at exit, or after `boundMs`), then ends it. */
function firstStderrLine(args: string[], boundMs: number): Promise<string> {
  const child = spawn(process.execPath, [...CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      child.kill();
      resolve(err);
    };
    const timer = setTimeout(done, boundMs);
    child.stderr.on('data', (d: Buffer) => {
      const had = err.includes('\n');
      err += d.toString();
      if (!had && err.includes('\n')) setTimeout(done, 1000);
    });
    child.on('close', done);
  });
}

const dir = mkdtempSync(join(tmpdir(), 'memvisor-cli-'));
/** 3 distinct stores in window 1 (one crossing a page boundary), 1 in window 2. */
const small = join(dir, 'small.lackey');
writeFileSync(
  small,
  [
    '==1== Lackey, an example Valgrind tool',
    'I  04000000,4',
    ' S 10000000,8',
    ' S 10000000,8',
    ' M 10001ffc,8', // spans 0x10001000 and 0x10002000 pages
    ' L 10005000,4',
    ' S 10005000,4',
    'I  04000004,4',
    ' L 10000000,8',
    '',
  ].join('\n'),
);

const empty = join(dir, 'empty.lackey');
writeFileSync(empty, '');

/** 6,000 good records, then a line that does not parse (line 6002, after the first read batches). */
const badLate = join(dir, 'bad-late.lackey');
writeFileSync(badLate, ['==1== Lackey', ...Array.from({ length: 6000 }, (_, k) => ` S ${(0x10000000 + (k % 500) * 4096).toString(16)},8`), ' X zzz', ''].join('\n'));

describe('memvisor CLI contract', { timeout: 300_000 }, () => {
  it('trace --json prints the contract object, one CLEAN per window and one after the partial window', () => {
    for (const mode of ['ept-wp', 'ept-pml', 'npt-wp', 'arm-wp', 'kvm-bitmap', 'kvm-ring', 'shadow']) {
      const r = cli(['trace', small, '--mode', mode, '--clean-every', '4', '--json']);
      assert.equal(r.code, 0, `${mode}: ${r.stderr}`);
      const o = JSON.parse(r.stdout);
      assert.equal(o.mode, mode);
      assert.equal(o.records, 8);
      assert.deepEqual(o.rounds.map((x: { records: number }) => x.records), [4, 4]);
      // Window 1 writes 0x10000, 0x10001, 0x10002 (crossing store); window 2 writes 0x10005.
      assert.deepEqual(o.rounds.map((x: { dirty: number }) => x.dirty), [3, 1], mode);
      for (const round of o.rounds) {
        assert.equal(typeof round.fault_count, 'number');
        assert.equal(typeof round.cycles, 'number');
        assert.equal(typeof round.exits, 'object');
      }
      assert.equal(typeof o.totals, 'object');
    }
  });

  it('a malformed trace line gets one error line naming file and line, exit 1, no stack', () => {
    const bad = join(dir, 'bad.lackey');
    writeFileSync(bad, 'I  04000000,4\n S 10000000,8\nX 1234,5\n');
    const r = cli(['trace', bad, '--mode', 'ept-wp', '--json']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /bad\.lackey:3:/);
    assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/);
  });

  it('gzip traces and stdin are read', () => {
    const gz = join(dir, 'small.lackey.gz');
    writeFileSync(gz, gzipSync(Buffer.from(' S 10000000,8\n S 20000000,8\n')));
    const a = JSON.parse(cli(['trace', gz, '--mode', 'ept-wp', '--json']).stdout);
    assert.equal(a.rounds[0].dirty, 2);
    const b = JSON.parse(cli(['trace', '-', '--mode', 'kvm-ring', '--json'], ' S 10000000,8\n').stdout);
    assert.equal(b.rounds[0].dirty, 1);
  });

  it('trace and compare --report write a self-contained HTML report; an unwritable path fails before any work', () => {
    const tr = join(dir, 'trace.html');
    const r = cli(['trace', small, '--mode', 'ept-pml', '--clean-every', '4', '--report', tr, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const rounds = JSON.parse(r.stdout).rounds.length;
    const html = readFileSync(tr, 'utf8');
    assert.match(html, /^<!doctype html>/);
    assert.equal((html.match(/<title>dirty, round \d+: /g) ?? []).length, rounds, 'one bar per round');
    const cmp = join(dir, 'compare.html');
    const c = cli(['compare', small, '--modes', 'ept-wp,kvm-ring', '--report', cmp]);
    assert.equal(c.code, 0, c.stderr);
    assert.match(readFileSync(cmp, 'utf8'), /<title>tracking, mode kvm-ring: /);
    const bad = cli(['compare', small, '--modes', 'ept-wp', '--report', dir]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /^memvisor: --report: cannot write '.*': EISDIR\n$/);
    assert.equal(bad.stdout, '', 'nothing ran');
  });

  it('bad input: unknown mode, bad size, missing file — one line each, non-zero exit', () => {
    const cases = [
      { args: ['trace', small, '--mode', 'bogus'], re: /unknown value 'bogus'/ },
      { args: ['run', '--workload', 'uniform', '--mem', '12X'], re: /--mem: cannot parse size '12X'/ },
      { args: ['run', '--workload', 'uniform', '--mem', '2P'], re: /^memvisor: --mem: 2P is more than the 256 TiB a 4-level p2m maps/m },
      { args: ['trace', '--workload', 'uniform', '--mode', 'ept-wp', '--mem', '32T'], re: /^memvisor: --mem: 32T is more than the 16 TiB a synthetic workload addresses/m },
      { args: ['migrate', '--mem', '8T'], re: /^memvisor: --mem: 8T does not fit this machine's [\d.]+ GiB of memory: migrate fills every page/m },
      { args: ['trace', join(dir, 'nope.lackey'), '--mode', 'ept-wp'], re: /nope\.lackey.*no such file/ },
      { args: ['trace', small, '--mode', 'ept-wp', '--mem', '64M'], re: /small\.lackey:\d+: .*guest/ },
      { args: ['migrate', '--tls', '--mem', '8M'], re: /--tls needs --to/ },
      { args: ['migrate', '--insecure', '--mem', '8M'], re: /only apply with --tls/ },
      { args: ['migrate', '--to', '127.0.0.1:1', '--tls', '--tls-ca', join(dir, 'nope.pem')], re: /^memvisor: --tls-ca: cannot read '.*nope\.pem': ENOENT$/m },
      { args: ['migrate', '--mem', '4M', '--json', '--report', dir], re: /^memvisor: --report: cannot write '.*': EISDIR$/m },
      { args: ['trace', empty, '--mode', 'ept-wp'], re: /^memvisor: .*empty\.lackey: no I, L, S or M records/m },
      { args: ['run', '--trace', empty], re: /^memvisor: .*empty\.lackey: no I, L, S or M records/m },
      { args: ['compare', empty, '--modes', 'ept-wp'], re: /^memvisor: .*empty\.lackey: no I, L, S or M records/m },
      { args: ['compare', '-', '--modes', 'ept-wp'], re: /^memvisor: compare reads the trace once per mode, so it needs a file/m },
      { args: ['access', '--mode', 'write', '--trace', empty], re: /^memvisor: .*empty\.lackey: no I, L, S or M records/m },
      { args: ['migrate', '--trace', empty, '--mem', '8M'], re: /^memvisor: .*empty\.lackey: no I, L, S or M records/m },
      // A bad line anywhere in the trace is an input error named by file and line, found before the migration starts.
      { args: ['migrate', '--trace', badLate, '--mem', '8M'], re: /^memvisor: .*bad-late\.lackey:6002: (?!.*migration failed)/m },
      { args: ['run', '--trace', process.execPath], re: /^memvisor: .*:1: binary data, not a lackey trace/m },
      { args: ['run', '--workload', 'uniform', '--seed', '-1'], re: /^memvisor: --seed: -1 is out of range \(0\.\./m },
      { args: ['bogus'], re: /^memvisor: unknown command 'bogus' \(run with --help for usage\)$/m },
      { args: ['run', '--rounds', '1'], re: /^memvisor: unknown option '--rounds' \(Did you mean --count\?\)/m },
      { args: ['receive'], re: /^memvisor: required option '--listen <host:port>' not specified/m },
    ];
    for (const c of cases) {
      const r = cli(c.args);
      assert.notEqual(r.code, 0, c.args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, c.re);
    }
  });

  it('receive: an address in use, a bad certificate — one line each; listening is announced once', async () => {
    const busy = createServer();
    await new Promise<void>((res) => busy.listen(0, '127.0.0.1', res));
    const port = (busy.address() as AddressInfo).port;
    try {
      const inUse = cli(['receive', '--listen', `127.0.0.1:${port}`]);
      assert.equal(inUse.code, 1);
      assert.equal(inUse.stderr, `memvisor: --listen: 127.0.0.1:${port} is already in use (try port 0)\n`);
    } finally {
      busy.close();
    }
    const badCert = cli(['receive', '--listen', '127.0.0.1:0', '--tls-cert', small, '--tls-key', small]);
    assert.equal(badCert.code, 1);
    assert.equal(badCert.stderr.trim().split('\n').length, 1, badCert.stderr);
    assert.match(badCert.stderr, /^memvisor: --tls-cert\/--tls-key: not a usable PEM/);
    // Waits for the line itself (a loaded machine may take seconds to start the process), bounded generously.
    const stderr = await firstStderrLine(['receive', '--listen', '127.0.0.1:0'], 60_000);
    assert.match(stderr, /^receiver: listening on 127\.0\.0\.1:\d+\n$/);
  });

  it('run --trace on a real trace prints MMU statistics', () => {
    const [trace, records] = existsSync(SHARED_TRACE) ? [SHARED_TRACE, 2_000_000] : [join(ROOT, 'test/fixtures/sort-small.lackey.gz'), 300_000];
    const r = cli(['run', '--trace', trace, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.equal(o.records, records);
    assert.equal(o.stats.accesses, records);
    assert.equal(o.stats.tlb_hits + o.stats.tlb_misses >= records, true);
    assert.ok(o.exits.ept_violation > 0, 'populate-on-demand violations');
    assert.ok(o.host_bytes < 64 * 1024 * 1024, 'sparse 1 TiB guest stays small');
  });
});
