/**
 * The walk explainer against oracles written here: reference counts derived
 * from the paging structure (guest levels × (second-stage levels + 1) +
 * second-stage levels), entries decoded bit by bit from the manuals' layouts
 * with BigInt (not through the formats' constants), the table chain followed
 * from the raw entries, the host address the engine itself then uses, and a
 * run continued after an explanation compared with the same run without one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createGuest, type Guest } from '../runner/guest.ts';
import { replay, type NextRecord } from '../runner/replay.ts';
import { AccessBatch, AccessKind, type AccessSource } from '../workload/access-batch.ts';
import { explainWalk, permOfRecordKind, type WalkExplanation, type WalkReference } from './walk-explainer.ts';

type Rec = [AccessKind, number];

/** A source over a fixed list of records (kind, address), 4-byte accesses. */
function listSource(recs: readonly Rec[]): AccessSource {
  let done = false;
  return {
    name: 'list',
    fill(b: AccessBatch): boolean {
      b.clear();
      if (done) return false;
      done = true;
      recs.forEach(([k, a], n) => b.push(k, a, 4, n + 1));
      return b.length > 0;
    },
  };
}

const MB = 1 << 20;
const GVA = 0x7f12_3456_7000; // an address in the high half of the 48-bit space: all four indices non-zero
/** Records: touch GVA and a page beside it, then a write elsewhere, then GVA again (the explained record). */
function recordsFor(): Rec[] {
  return [
    [AccessKind.Load, GVA + 0x10],
    [AccessKind.Store, GVA + 0x1008],
    [AccessKind.Store, GVA + 0x40_0000],
    [AccessKind.Load, GVA + 0x20],
  ];
}

interface Setup {
  readonly guest: Guest;
  readonly next: NextRecord;
}

async function runTo(mode: string | null, format: 'ept' | 'npt' | 'arm', pageSize: '4k' | '2m', recs: Rec[], n: number, cleanEvery = Infinity): Promise<Setup> {
  const guest = createGuest({ memBytes: 64 * MB, vcpus: 1, mode, format, addressing: 'paged', pageSize });
  const r = await replay(guest, listSource(recs), { cleanEvery, stopBefore: n });
  assert.ok(r.next, 'record exists');
  return { guest, next: r.next };
}

const bits = (v: bigint, lo: number, n = 1): number => Number((v >> BigInt(lo)) & ((1n << BigInt(n)) - 1n));
const frameOf = (v: bigint, top = 51): bigint => (v >> 12n) & ((1n << BigInt(top - 11)) - 1n);

/** Manual layouts, written out bit by bit (SDM Vol. 3A Table 4-19/4-20, Vol. 3C Table 29-6, APM Vol. 2 §5.3.3, Arm ARM D8.3). */
function oracleFields(fmt: string, ref: WalkReference): Record<string, boolean | number | string> {
  const v = BigInt(ref.entry!);
  if (ref.stage === 'guest' || fmt === 'npt') {
    const o: Record<string, boolean | number | string> = { P: bits(v, 0) === 1, A: bits(v, 5) === 1 };
    o[ref.stage === 'guest' ? 'R/W' : 'RW'] = bits(v, 1) === 1;
    o[ref.stage === 'guest' ? 'U/S' : 'US'] = bits(v, 2) === 1;
    o[ref.stage === 'guest' ? 'XD' : 'NX'] = bits(v, 63) === 1;
    o[ref.stage === 'guest' ? 'gfn' : 'mfn'] = `0x${frameOf(v).toString(16)}`;
    return o;
  }
  if (fmt === 'ept') {
    const leaf = ref.level === 1 || bits(v, 7) === 1;
    const o: Record<string, boolean | number | string> = {
      R: bits(v, 0) === 1, W: bits(v, 1) === 1, X: bits(v, 2) === 1, A: bits(v, 8) === 1, SVE: bits(v, 63) === 1,
      mfn: `0x${frameOf(v).toString(16)}`,
    };
    if (leaf) {
      o.memtype = `${bits(v, 3, 3)} ${['UC', 'WC', 'reserved', 'reserved', 'WT', 'WP', 'WB', 'invalid (misconfig)'][bits(v, 3, 3)]}`;
      o.D = bits(v, 9) === 1;
      o.IPAT = bits(v, 6) === 1;
    }
    return o;
  }
  // ARM stage 2: levels 0..3; a page at level 3, a block at 1-2 when bit 1 is clear.
  const leaf = ref.level === 3 || bits(v, 1) === 0;
  const o: Record<string, boolean | number | string> = { V: bits(v, 0) === 1, OA: `0x${(frameOf(v, 47) << 12n).toString(16)}` };
  if (leaf) {
    o.S2AP = ['none', 'RO', 'WO', 'RW'][bits(v, 6, 2)]!;
    o.AF = bits(v, 10) === 1;
    o.MemAttr = bits(v, 2, 4);
    o.XN = bits(v, 54) === 1;
  }
  return o;
}

/** The next table's address a row's entry points at, read from the raw bits. */
function nextTable(fmt: string, ref: WalkReference): bigint {
  const v = BigInt(ref.entry!);
  return (fmt === 'arm' && ref.stage === 'second' ? frameOf(v, 47) : frameOf(v)) << 12n;
}

function memoryRefs(x: WalkExplanation): WalkReference[] {
  return x.references.filter((r) => r.cached_by === null);
}

// No dirty tracking here: log-dirty splits a 2 MiB mapping on its first write (the guest OS writing its
// tables is one), and write-protection ends walks in exits (tested below).
for (const format of ['ept', 'npt', 'arm'] as const) {
  for (const pageSize of ['4k', '2m'] as const) {
    const mode = null;
    test(`${format}, ${pageSize} second-stage pages: a cold 2-D walk makes guest × (p2m + 1) + p2m references, decoded as the manual lays them out, ending at the engine's hpa`, async () => {
      const recs = recordsFor();
      const { guest, next } = await runTo(mode, format, pageSize, recs, 4);
      const vcpu = guest.domain.currentVcpu;
      const x = explainWalk(vcpu, next.addr, permOfRecordKind(next.kind), true);
      // Derived: four guest levels, each table gpa translated through the p2m (4 levels with 4 KiB
      // mappings, 3 with 2 MiB ones: the PDE is the leaf), plus the data gpa's translation.
      const p2mLevels = pageSize === '4k' ? 4 : 3;
      const expected = 4 * (p2mLevels + 1) + p2mLevels;
      assert.equal(expected, pageSize === '4k' ? 24 : 19);
      const refs = memoryRefs(x);
      assert.equal(x.memory_references, expected);
      assert.equal(refs.length, expected);
      assert.equal(x.exit, null);
      // Order: for each guest level, its table's p2m walk then the guest entry; then the data's p2m walk.
      const stages = refs.map((r) => (r.stage === 'guest' ? 'G' : 'S')).join('');
      const col = 'S'.repeat(p2mLevels);
      assert.equal(stages, `${col}G${col}G${col}G${col}G${col}`);
      assert.deepEqual(refs.filter((r) => r.stage === 'guest').map((r) => r.level), [4, 3, 2, 1]);
      const secondLevels = refs.slice(0, p2mLevels).map((r) => r.level);
      assert.deepEqual(secondLevels, format === 'arm' ? [0, 1, 2, 3].slice(0, p2mLevels) : [4, 3, 2, 1].slice(0, p2mLevels));
      assert.deepEqual(refs.map((r) => r.column), [0, 1, 2, 3, 4].flatMap((c) => Array(c < 4 ? p2mLevels + 1 : p2mLevels).fill(c)));
      // Every entry decoded as the manual lays it out.
      for (const r of refs) {
        const want = oracleFields(format, r);
        for (const [k, v] of Object.entries(want)) assert.equal(r.fields[k], v, `${r.name} field ${k} of ${r.entry}`);
      }
      // The chain: each p2m walk starts at the same root, each entry points at the next row's table,
      // the guest entries at the next guest table, and the last p2m leaf at the hpa.
      const rootHpa = refs[0]!.table;
      for (let c = 0; c < 5; c++) {
        const start = c * (p2mLevels + 1);
        assert.equal(refs[start]!.table, rootHpa);
        for (let k = start; k < start + p2mLevels - 1; k++) assert.equal(BigInt(refs[k + 1]!.table!), nextTable(format, refs[k]!));
        if (c < 4) {
          const g = refs[start + p2mLevels]!;
          // The guest table read is the gpa the column's p2m rows translated…
          assert.equal(refs[start]!.gpa, g.table);
          if (c < 3) assert.equal(BigInt(refs[start + p2mLevels + 1]!.gpa!), nextTable(format, g));
          else assert.equal(BigInt(x.gpa!) - (BigInt(x.gpa!) % 4096n), nextTable(format, g));
        }
      }
      const dataLeaf = refs[refs.length - 1]!;
      const span = pageSize === '4k' ? 4096n : 2n * BigInt(MB);
      assert.equal(BigInt(x.hpa!), nextTable(format, dataLeaf) + (BigInt(x.gpa!) % span));
      assert.equal(BigInt(x.gva!), BigInt(next.addr));
      // The engine then runs the record: the host frame it caches is the one explained.
      const before = BigInt(x.hpa!);
      const b = new AccessBatch(1);
      b.push(next.kind as AccessKind, next.addr, next.size, next.line);
      assert.equal(guest.domain.run(b), 1);
      const page = Math.floor(next.addr / 4096);
      const mfn = vcpu.mmu.tlb.lookup(page, 1);
      assert.ok(mfn >= 0);
      assert.equal(BigInt(mfn) * 4096n + BigInt(next.addr % 4096), before);
    });
  }
}

test('a warm walk right after a cold one makes fewer references: the TLB answers, or the PDE cache and nested TLB cut it to the PTE read', async () => {
  const recs = recordsFor();
  const { guest, next } = await runTo(null, 'ept', '4k', recs, 4);
  const vcpu = guest.domain.currentVcpu;
  const need = PERM_W;
  const cold = explainWalk(vcpu, next.addr, need, true);
  const warm = explainWalk(vcpu, next.addr, need, false);
  assert.equal(cold.memory_references, 24);
  // GVA was walked by records 1 and 4 and is still in the TLB, but only with read rights: the store needs
  // write-done, so the TLB cannot answer and the walk runs on the caches: the PDE cache gives the
  // page table (guest L4..L2 skipped), the nested TLB the PT's and the data's frames: one read, the PTE.
  assert.equal(warm.memory_references, 1);
  assert.deepEqual(warm.references.map((r) => r.cached_by), ['pde_cache', 'pde_cache', 'pde_cache', 'nested_tlb', null, 'nested_tlb', 'nested_tlb']);
  // The store's walk sets D in the guest PTE: a write to the page table, translated again (the nested TLB answers).
  assert.deepEqual(warm.references.map((r) => r.purpose), ['walk', 'walk', 'walk', 'walk', 'walk', 'guest A/D write', 'data']);
  assert.deepEqual(warm.references[4]!.set, ['D']);
  assert.equal(warm.hpa, cold.hpa);
  // A read of the same page hits the TLB: no reference at all.
  const read = explainWalk(vcpu, next.addr, permOfRecordKind(AccessKind.Load), false);
  assert.equal(read.memory_references, 0);
  assert.equal(read.references[0]!.cached_by, 'tlb');
  assert.equal(read.hpa, cold.hpa);
  // The walk right after the cold one sees what the cold one filled: the TLB answers.
  const pair = explainWalk(vcpu, next.addr, need, true, true);
  assert.equal(pair.memory_references, 24);
  assert.equal(pair.next?.memory_references, 0);
  assert.equal(pair.next?.references[0]!.cached_by, 'tlb');
  assert.equal(pair.next?.hpa, cold.hpa);
  // …and both are undone: the run's own caches still give the warm walk above.
  assert.equal(explainWalk(vcpu, next.addr, need, false).memory_references, 1);
});

/**
 * Two loads, a CLEAN, a load (which takes the exits that re-arm tracking lazily: EPT misconfig,
 * NPT recalc), then the explained record 4: the first write to GVA's page, now logdirty.
 */
const AFTER_CLEAN: Rec[] = [[AccessKind.Load, GVA], [AccessKind.Load, GVA + 4], [AccessKind.Load, GVA + 16], [AccessKind.Store, GVA + 8]];

test('a walk right after a CLEAN meets the lazy re-arm first: an EPT misconfiguration at the root', async () => {
  const { guest, next } = await runTo('ept-wp', 'ept', '4k', AFTER_CLEAN, 3, 2);
  const x = explainWalk(guest.domain.currentVcpu, next.addr, permOfRecordKind(next.kind), true);
  assert.equal(x.exit?.reason, 'ept_misconfig');
  assert.equal(x.exit?.recalc, true);
  assert.equal(x.memory_references, 1);
  // The EPT PML4E carries memory type 7 in its reserved bits 5:3: Xen's misconfig mark.
  assert.equal(bits(BigInt(x.references[0]!.entry!), 3, 3), 7);
});

test('A/D bits set by the walk are reported: the guest PTE gets D on the first write, the EPT leaf of a logdirty page D (and a PML entry)', async () => {
  const { guest, next } = await runTo('ept-pml', 'ept', '4k', AFTER_CLEAN, 4, 2);
  const x = explainWalk(guest.domain.currentVcpu, next.addr, permOfRecordKind(next.kind), true);
  const refs = memoryRefs(x);
  const pte = refs.find((r) => r.stage === 'guest' && r.level === 1)!;
  assert.deepEqual(pte.set, ['D']);
  assert.equal(pte.fields.D, false);
  const dataLeaf = refs[refs.length - 1]!;
  assert.deepEqual(dataLeaf.set, ['D']);
  assert.equal(dataLeaf.fields.sa_p2mt, 'ram_logdirty');
  assert.ok(x.pml !== null);
  assert.ok(x.pml.logged.includes(`0x${(BigInt(x.gpa!) & ~0xfffn).toString(16)}`), JSON.stringify(x.pml));
});

test('write protection ends the walk with the exit the hypervisor receives: EPT violation, #NPF, stage-2 abort', async () => {
  // Record 4 is the first write to GVA's page: the walk first writes D into the guest PTE. Under ept-wp and
  // arm-wp the page-table page is write-protected since the CLEAN (EPT without A/D and ARM read guest tables
  // as reads, so record 3 did not unprotect it): the exit is on that write-back, a paging-structure access.
  // Under npt-wp record 3 already wrote the table pages (APM §15.25.5: guest table accesses are writes for
  // the nested walk), so the exit is on the data page itself.
  for (const [mode, format, reason, onTable] of [['ept-wp', 'ept', 'ept_violation', true], ['npt-wp', 'npt', 'npf', false], ['arm-wp', 'arm', 'stage2_abort', true]] as const) {
    const { guest, next } = await runTo(mode, format, '4k', AFTER_CLEAN, 4, 2);
    const x = explainWalk(guest.domain.currentVcpu, next.addr, permOfRecordKind(next.kind), false);
    assert.ok(x.exit, `${mode}: an exit`);
    assert.equal(x.exit.reason, reason, mode);
    assert.equal(x.exit.to, 'hypervisor');
    assert.equal(x.hpa, null);
    assert.equal(x.exit.table_access, onTable, mode);
    // Write-protected and read-only entries decoded as the manual lays them out too (W, RW, S2AP clear).
    for (const r of memoryRefs(x)) {
      for (const [k, v] of Object.entries(oracleFields(format, r))) assert.equal(r.fields[k], v, `${mode}: ${r.name} field ${k} of ${r.entry}`);
    }
    const pte = memoryRefs(x).find((r) => r.stage === 'guest' && r.level === 1)!;
    const pteGpa = BigInt(pte.table!) + BigInt(pte.index! * 8);
    assert.equal(BigInt(x.exit.gpa!), onTable ? pteGpa : BigInt(next.addr % 4096) + nextTable(format, pte), mode);
    const code = BigInt(x.exit.code!);
    if (format === 'ept') {
      // SDM Table 28-7: bit 1 write, bit 3 readable, bit 4 writable (clear), bit 7 GLA valid, bit 8 clear: not the final translation.
      assert.deepEqual([bits(code, 1), bits(code, 3), bits(code, 4), bits(code, 7), bits(code, 8)], [1, 1, 0, 1, 0]);
    } else if (format === 'npt') {
      // APM §15.25.6 EXITINFO1: bit 0 present, bit 1 write, bit 2 user, bit 32 final gpa, bit 33 clear.
      assert.deepEqual([bits(code, 0), bits(code, 1), bits(code, 2), bits(code, 32), bits(code, 33)], [1, 1, 1, 1, 0]);
    } else {
      // ESR ISS: DFSC 0b0011LL permission fault at level 3, WnR bit 6, S1PTW bit 7 (during the stage-1 walk).
      assert.deepEqual([bits(code, 2, 4), bits(code, 0, 2), bits(code, 6), bits(code, 7)], [0b0011, 3, 1, 1]);
    }
  }
});

test('a page the guest never touched ends the walk with a guest #PF (the guest handles it, no VM exit)', async () => {
  const recs: Rec[] = [[AccessKind.Load, GVA], [AccessKind.Load, GVA + 0x20_0000]];
  const { guest, next } = await runTo(null, 'npt', '4k', recs, 2);
  const x = explainWalk(guest.domain.currentVcpu, next.addr, permOfRecordKind(next.kind), true);
  assert.equal(x.exit?.reason, 'guest_pf');
  assert.equal(x.exit?.to, 'guest');
  // The PD entry for the new 2 MiB region is not present: the walk read PML4E, PDPTE, PDE and stopped.
  const guestRefs = memoryRefs(x).filter((r) => r.stage === 'guest');
  assert.deepEqual(guestRefs.map((r) => r.level), [4, 3, 2]);
  assert.equal(guestRefs[2]!.fields.P, false);
});

test('identity addressing: a 1-D walk of the gpa through the p2m, four references', async () => {
  const guest = createGuest({ memBytes: 64 * MB, vcpus: 1, mode: null, format: 'ept', addressing: 'identity', pageSize: '4k' });
  const r = await replay(guest, listSource([[AccessKind.Load, 0x123_4000], [AccessKind.Load, 0x123_4010]]), { cleanEvery: Infinity, stopBefore: 2 });
  const x = explainWalk(guest.domain.currentVcpu, r.next!.addr, PERM_R_FOR_TEST, true);
  assert.equal(x.walk, '1-d');
  assert.equal(x.gva, null);
  assert.equal(x.gpa, '0x1234010');
  assert.equal(x.memory_references, 4);
  assert.deepEqual(x.references.map((q) => q.stage), ['second', 'second', 'second', 'second']);
});
const PERM_R_FOR_TEST = permOfRecordKind(AccessKind.Load);
const PERM_W = permOfRecordKind(AccessKind.Store);

/** One record per batch; before handing out record `at` (1-based), calls `before()`: records 1..at-1 have run, in the same replay. */
function steppingSource(recs: readonly Rec[], at: number, before: (() => void) | null): AccessSource {
  let n = 0;
  return {
    name: 'stepping',
    fill(b: AccessBatch): boolean {
      b.clear();
      if (n >= recs.length) return false;
      if (n + 1 === at && before !== null) before();
      const [k, a] = recs[n]!;
      b.push(k, a, 4, ++n);
      return true;
    },
  };
}

/** Everything observable of a guest: host memory bytes, counters, TLBs, PML state. */
function fingerprint(guest: Guest): string {
  const d = guest.domain;
  const parts: string[] = [];
  for (const chunk of d.pool.bytes) {
    let h = 0x811c9dc5;
    for (let k = 0; k < chunk.length; k += 4) h = Math.imul(h ^ (chunk[k]! | (chunk[k + 1]! << 8) | (chunk[k + 2]! << 16) | (chunk[k + 3]! << 24)), 16777619);
    parts.push((h >>> 0).toString(16));
  }
  for (const v of d.vcpus) {
    const m = v.mmu;
    parts.push(Array.from(v.stats).join(','), Array.from(v.exits).join(','));
    for (const t of [m.tlb, m.ntlb]) parts.push(Array.from(t.tag).join(','), Array.from(t.mfn).join(','), Array.from(t.flags).join(','), String(t.flushes));
    parts.push(Array.from(m.pde.tag).join(','), Array.from(m.pde.ptGfn).join(','), Array.from(m.pde.flags).join(','));
    parts.push(JSON.stringify({ ...m.exit }), String(m.resMfn), String(m.resFlags), String(m.pml.index), String(m.pml.logged));
  }
  return parts.join('|');
}

test('explaining leaves the run unchanged: same state right after, and the run continued gives the same rounds and final state as without it', async () => {
  for (const [mode, format] of [['ept-pml', 'ept'], ['npt-wp', 'npt'], ['arm-wp', 'arm']] as const) {
    // Writes and reads over a few pages on 2 vCPUs, CLEAN every 3 records, so the explained walks
    // set A/D bits, log to PML or fault on write-protected entries.
    const recs: Rec[] = [];
    for (let k = 0; k < 40; k++) recs.push([k % 3 === 0 ? AccessKind.Load : AccessKind.Store, GVA + ((k * 7) % 9) * 4096 + k * 8]);
    const setup = { memBytes: 64 * MB, vcpus: 2, mode, format, addressing: 'paged', pageSize: '4k' } as const;
    const plain = createGuest(setup);
    const want = await replay(plain, steppingSource(recs, 0, null), { cleanEvery: 3 });

    const guest = createGuest(setup);
    const outcomes = new Set<string>();
    let setBits = 0;
    const explain = (): void => {
      const before = fingerprint(guest);
      const addr = recs[19]![1];
      for (const cold of [true, false]) {
        for (const v of guest.domain.vcpus) {
          for (const need of [1, 2, 4]) {
            const x = explainWalk(v, addr, need, cold, cold);
            outcomes.add(x.exit?.reason ?? 'ok');
            setBits += x.references.reduce((s, r) => s + r.set.length, 0);
          }
        }
      }
      assert.equal(fingerprint(guest), before, `${mode}: state right after the explanations`);
    };
    const got = await replay(guest, steppingSource(recs, 20, explain), { cleanEvery: 3 });
    assert.ok(outcomes.size > 0);
    // The explanations did change entries while they ran (A/D bits), or raised exits: there was something to undo.
    assert.ok(setBits > 0 || [...outcomes].some((o) => o !== 'ok'), `${mode}: ${[...outcomes].join()} ${setBits}`);
    assert.deepEqual(got.rounds, want.rounds, `${mode}: rounds`);
    assert.equal(fingerprint(guest), fingerprint(plain), `${mode}: final state`);
  }
});

test('the walk runs on the vCPU whose turn it is: with 2 vCPUs and 64-record quanta, record 65 is vCPU 1\'s', async () => {
  const recs: Rec[] = [];
  for (let k = 0; k < 70; k++) recs.push([AccessKind.Load, GVA + (k % 4) * 4096]);
  const guest = createGuest({ memBytes: 64 * MB, vcpus: 2, mode: null, format: 'ept', addressing: 'paged', pageSize: '4k' });
  await replay(guest, listSource(recs), { cleanEvery: Infinity, stopBefore: 65 });
  assert.equal(guest.domain.currentVcpu.id, 1);
  // vCPU 1 has run nothing yet: its TLB is empty, so even a warm walk reads memory; vCPU 0's TLB answers.
  assert.ok(explainWalk(guest.domain.currentVcpu, GVA, PERM_R_FOR_TEST, false).memory_references > 0);
  assert.equal(explainWalk(guest.domain.vcpus[0]!, GVA, PERM_R_FOR_TEST, false).references[0]!.cached_by, 'tlb');
});
