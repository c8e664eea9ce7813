/**
 * `memvisor walk` as a user runs it, on the sort trace under paged addressing:
 * a cold walk makes the references the structure implies (24 with 4 KiB
 * second-stage pages, 19 with 2 MiB ones) in the figure's order, decoded as the
 * manuals lay the entries out, and ends at the hpa the TLB-filled run itself
 * holds for the address (the warm walk of the same record, answered by the
 * TLB); identity addressing says it is a 1-D walk; bad input is one line.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { CLI, ROOT } from './cli-entry.ts';

const TRACE = join(ROOT, 'test/fixtures/sort-small.lackey.gz');

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, MEMVISOR_DEBUG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Ref {
  stage: string;
  level: number | null;
  table: string | null;
  index: number | null;
  entry: string | null;
  fields: Record<string, unknown>;
  set: string[];
  cached_by: string | null;
  gpa: string | null;
}
interface Walk {
  gva: string;
  gpa: string | null;
  hpa: string | null;
  references: Ref[];
  exit: unknown;
  walk: string;
  memory_references: number;
}

function walk(args: string[]): Walk {
  const r = cli(['walk', '--trace', TRACE, ...args, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Walk;
}

const bit = (v: bigint, n: number): boolean => ((v >> BigInt(n)) & 1n) === 1n;
const frameAddr = (v: bigint, top: number): bigint => ((v >> 12n) & ((1n << BigInt(top - 11)) - 1n)) << 12n;

describe('memvisor walk', { timeout: 300_000 }, () => {
  for (const format of ['ept', 'npt', 'arm'] as const) {
    it(`${format}: --page-size 4k --cold makes 24 references ending at the engine's hpa; the warm walk after it fewer; 2m pages 19`, () => {
      const cold = walk(['--record', '5000', '--addressing', 'paged', '--page-size', '4k', '--cold', '--format', format]);
      const refs = cold.references.filter((r) => r.cached_by === null);
      // 4 guest levels, each table translated by a 4-level second-stage walk, plus the data's: 4 × (4 + 1) + 4.
      assert.equal(refs.length, 4 * (4 + 1) + 4);
      assert.equal(cold.exit, null);
      assert.equal(refs.map((r) => (r.stage === 'guest' ? 'G' : 'S')).join(''), 'SSSSGSSSSGSSSSGSSSSGSSSS');
      // Raw bits, as the manuals place them: present/valid, rights, and the next table's address.
      for (let k = 0; k < refs.length; k++) {
        const r = refs[k]!;
        const v = BigInt(r.entry!);
        if (r.stage === 'guest') {
          assert.equal(r.fields.P, bit(v, 0));
          assert.equal(r.fields.A, bit(v, 5));
          assert.equal(r.fields['R/W'], bit(v, 1));
          assert.equal(r.fields.XD, bit(v, 63));
          // The next guest table read is the table this entry points at (the data gpa after the PTE).
          const nextGuest = refs.slice(k + 1).find((q) => q.stage === 'guest');
          const target = nextGuest ? BigInt(nextGuest.table!) : BigInt(cold.gpa!) & ~0xfffn;
          assert.equal(frameAddr(v, 51), target);
        } else if (format === 'ept') {
          assert.deepEqual([r.fields.R, r.fields.W, r.fields.X, r.fields.A], [bit(v, 0), bit(v, 1), bit(v, 2), bit(v, 8)]);
        } else if (format === 'npt') {
          assert.deepEqual([r.fields.P, r.fields.RW, r.fields.US, r.fields.A, r.fields.NX], [bit(v, 0), bit(v, 1), bit(v, 2), bit(v, 5), bit(v, 63)]);
        } else {
          assert.equal(r.fields.V, bit(v, 0));
          if (r.level === 3) assert.deepEqual([r.fields.AF, r.fields.S2AP], [bit(v, 10), ['none', 'RO', 'WO', 'RW'][Number((v >> 6n) & 3n)]]);
        }
      }
      // The last second-stage entry maps the data gpa's frame: its address plus the offset is the hpa.
      const leaf = BigInt(refs[refs.length - 1]!.entry!);
      assert.equal(frameAddr(leaf, format === 'arm' ? 47 : 51) + (BigInt(cold.gva) & 0xfffn), BigInt(cold.hpa!));
      // The warm walk of the same record, right after: the run's TLB holds it, so no reference at all,
      // and the host address is the one the engine itself cached.
      const warm = walk(['--record', '5000', '--addressing', 'paged', '--page-size', '4k', '--format', format]);
      assert.ok(warm.memory_references < refs.length);
      assert.equal(warm.references[0]!.cached_by, 'tlb');
      assert.equal(warm.hpa, cold.hpa);
      // 2 MiB second-stage mappings: each second-stage walk ends at the PDE: 4 × (3 + 1) + 3.
      const big = walk(['--record', '5000', '--addressing', 'paged', '--page-size', '2m', '--cold', '--format', format]);
      assert.equal(big.memory_references, 4 * (3 + 1) + 3);
      assert.equal(BigInt(big.hpa!) & 0xfffn, BigInt(big.gva) & 0xfffn);
    });
  }

  it('under a log-dirty mode right after a CLEAN: the walk ends at the lazy re-arm with the exit, as the hypervisor receives it', () => {
    // A CLEAN after every record: ept-wp marks the EPT root for recalc (memory type 7), so record 4's walk
    // stops at its first reference with an EPT misconfiguration.
    const r = cli(['walk', '--trace', TRACE, '--record', '4', '--addressing', 'paged', '--mode', 'ept-wp', '--clean-every', '1']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^1 memory reference$/m);
    assert.match(r.stdout, /VM exit ept_misconfig at gpa 0x0 \(on a guest paging-structure access, p2m level 4, recalc-marked entry\)/);
  });

  it('the vCPU whose turn it is walks (64-record quanta), unless --vcpu names one', () => {
    assert.equal((walk(['--record', '65', '--vcpus', '2', '--addressing', 'paged']) as unknown as { vcpu: number }).vcpu, 1);
    assert.equal((walk(['--record', '65', '--vcpus', '2', '--vcpu', '0', '--addressing', 'paged']) as unknown as { vcpu: number }).vcpu, 0);
  });

  it('identity addressing: one line says it is a 1-D walk, and the 1-D walk is shown', () => {
    const r = cli(['walk', '--trace', TRACE, '--record', '5000', '--cold', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /1-D walk/);
    const w = JSON.parse(r.stdout) as Walk;
    assert.equal(w.walk, '1-d');
    assert.equal(w.memory_references, 4);
    assert.ok(w.references.every((q) => q.stage === 'second'));
  });

  it('bad input: one line, non-zero exit, no stack', () => {
    for (const [args, pattern] of [
      [['--record', '999999999'], /--record 999999999 is past the end of .*sort-small\.lackey\.gz: it has 300000 records/],
      [['--record', '0'], /--record: 0 is out of range/],
      [[], /--record N is required/],
      [['--record', '5', '--vcpus', '2', '--vcpu', '2'], /--vcpu: 2 is out of range \(0\.\.1\)/],
    ] as const) {
      const r = cli(['walk', '--trace', TRACE, ...args]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, pattern);
      assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/);
    }
  });
});
