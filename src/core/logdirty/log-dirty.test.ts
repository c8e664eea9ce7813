import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PFNS_PER_L3_SLOT, PFNS_PER_L4_SLOT, LOGDIRTY_MAX_PFNS } from './dirty-trie.ts';
import {
  LogDirty,
  SHADOW_LOGDIRTY_FINAL,
  SHADOW_OP_CLEAN,
  SHADOW_OP_ENABLE,
  SHADOW_OP_ENABLE_LOGDIRTY,
  SHADOW_OP_OFF,
  SHADOW_OP_PEEK,
  SHADOW_ENABLE_LOG_DIRTY,
  type LogDirtyMechanism,
  type PausableDomain,
  type ShadowOpResult,
} from './log-dirty.ts';
import { BoundedPageAllocator } from './page-allocator.ts';

/** Records every call, in order, into a shared log. */
class FakeDomain implements PausableDomain {
  pauseCount = 0;
  constructor(private readonly log: string[]) {}
  pause(): void {
    this.pauseCount++;
    this.log.push('pause');
  }
  unpause(): void {
    assert.ok(this.pauseCount > 0, 'unpause without pause');
    this.pauseCount--;
    this.log.push('unpause');
  }
}

/**
 * HAP-like write protection with an optional PML-like buffer: a write to a
 * write-protected page faults (marks dirty, opens the page); with `pml`, a
 * first write is logged in a buffer instead and reaches the tree on flush.
 */
class FakeMechanism implements LogDirtyMechanism {
  ld!: LogDirty;
  readonly writable = new Set<number>();
  readonly pmlBuffer: number[] = [];
  armed = false;
  constructor(
    private readonly log: string[],
    private readonly domain: FakeDomain,
    private readonly pml = false,
  ) {}
  enable(): void {
    this.log.push('enable');
    this.armed = true;
    this.writable.clear();
  }
  disable(): void {
    this.log.push('disable');
    this.armed = false;
  }
  clean(): void {
    assert.ok(this.domain.pauseCount > 0, 're-arm must happen while paused');
    this.log.push('clean');
    this.writable.clear();
  }
  flushHardwareCached(): void {
    assert.ok(this.domain.pauseCount > 0, 'flush must happen while paused');
    this.log.push('flush');
    for (const pfn of this.pmlBuffer) this.ld.markPfnDirty(pfn);
    this.pmlBuffer.length = 0;
  }
  markWriteMappedFrames(): void {
    this.log.push('mark-mapped');
  }
  /** A guest write. The guest cannot run while paused. */
  guestWrite(pfn: number): void {
    assert.equal(this.domain.pauseCount, 0, 'guest wrote while paused');
    if (!this.armed || this.writable.has(pfn)) return;
    if (this.pml) this.pmlBuffer.push(pfn);
    else this.ld.markPfnDirty(pfn);
    this.writable.add(pfn);
  }
}

function setup(opts: { pml?: boolean; limitPages?: number; budget?: number } = {}) {
  const log: string[] = [];
  const domain = new FakeDomain(log);
  const mech = new FakeMechanism(log, domain, opts.pml ?? false);
  const ld = new LogDirty({
    domain,
    mechanism: mech,
    allocator: new BoundedPageAllocator(opts.limitPages ?? Infinity),
    preemptAfterL3Slots: opts.budget ?? Infinity,
  });
  mech.ld = ld;
  return { log, domain, mech, ld };
}

function ok(r: ShadowOpResult): { pages: number; stats: { faultCount: number; dirtyCount: number } } {
  if (!r.ok) assert.fail(`expected success, got ${r.errno}: ${r.message}`);
  return r;
}

function errno(r: ShadowOpResult): string {
  assert.equal(r.ok, false, 'expected an error');
  return r.ok ? '' : r.errno;
}

function bit(bm: Uint8Array, pfn: number): number {
  return ((bm[pfn >> 3] as number) >> (pfn & 7)) & 1;
}

const GUEST_PAGES = 1 << 20; // 4 GiB guest

test('§9.1: write G twice, CLEAN ⇒ bit G, dirty_count 1, fault_count 0; second CLEAN ⇒ all 0', () => {
  const { ld, mech } = setup();
  ok(ld.enableLogDirty());
  const G = 12345;
  mech.guestWrite(G);
  mech.guestWrite(G);
  const bm = new Uint8Array(GUEST_PAGES / 8);
  const r1 = ok(ld.clean(bm, GUEST_PAGES));
  assert.equal(bit(bm, G), 1);
  assert.deepEqual(r1.stats, { faultCount: 0, dirtyCount: 1 });
  assert.equal(r1.pages, GUEST_PAGES);
  assert.equal(bm.reduce((n, b) => n + (b === 0 ? 0 : 1), 0), 1);
  const r2 = ok(ld.clean(bm, GUEST_PAGES));
  assert.deepEqual(r2.stats, { faultCount: 0, dirtyCount: 0 });
  assert.ok(bm.every((b) => b === 0));
});

test('§9.2: PEEK does not reset bits or dirty_count', () => {
  const { ld, mech } = setup();
  ok(ld.enableLogDirty());
  for (const p of [1, 70000, 2 ** 24 + 3]) mech.guestWrite(p);
  const pages = 2 ** 25;
  for (let round = 0; round < 2; round++) {
    const bm = new Uint32Array(pages / 32);
    const r = ok(ld.peek(bm, pages));
    assert.equal(r.stats.dirtyCount, 3);
    const b = new Uint8Array(bm.buffer);
    assert.equal(bit(b, 1) + bit(b, 70000) + bit(b, 2 ** 24 + 3), 3);
  }
});

test('§9.3: CLEAN with a null bitmap clears tree and counters without copying', () => {
  const { ld, mech, log } = setup();
  ok(ld.enableLogDirty());
  mech.guestWrite(5);
  mech.guestWrite(6);
  const r = ok(ld.clean(null, GUEST_PAGES));
  assert.equal(r.stats.dirtyCount, 2);
  assert.equal(r.pages, GUEST_PAGES);
  assert.equal(ld.dirtyCount, 0);
  assert.equal(ld.trie.countDirty(), 0);
  assert.ok(log.includes('clean'));
  const bm = new Uint8Array(GUEST_PAGES / 8);
  const p = ok(ld.peek(bm));
  assert.equal(p.stats.dirtyCount, 0);
  assert.ok(bm.every((b) => b === 0));
});

test('CLEAN orders pause → flush → read/clear → re-arm → unpause; PEEK does not re-arm', () => {
  const { ld, mech, log } = setup({ pml: true });
  ok(ld.enableLogDirty());
  mech.guestWrite(9); // sits in the PML buffer, not yet in the tree
  assert.equal(ld.trie.test(9), false);
  log.length = 0;
  const bm = new Uint8Array(GUEST_PAGES / 8);
  const r = ok(ld.clean(bm, GUEST_PAGES));
  assert.deepEqual(log, ['pause', 'flush', 'clean', 'unpause']);
  assert.equal(bit(bm, 9), 1, 'PML-buffered write is visible in the CLEAN');
  assert.equal(r.stats.dirtyCount, 1, 'stats are taken after the flush');
  // Re-armed: the next write is logged again.
  mech.guestWrite(9);
  log.length = 0;
  const p = ok(ld.peek(bm, GUEST_PAGES));
  assert.deepEqual(log, ['pause', 'flush', 'unpause']);
  assert.equal(bit(bm, 9), 1);
  assert.equal(p.stats.dirtyCount, 1);
});

test('re-arm sees an already-cleared bitmap (no write lost between read and re-arm)', () => {
  const { ld, mech } = setup();
  ok(ld.enableLogDirty());
  mech.guestWrite(77);
  let sawBitAtReArm: boolean | null = null;
  const origClean = mech.clean.bind(mech);
  mech.clean = () => {
    sawBitAtReArm = ld.trie.test(77);
    origClean();
  };
  ok(ld.clean(null, GUEST_PAGES));
  assert.equal(sawBitAtReArm, false);
});

test('§9.8: ENABLE_LOGDIRTY while enabled ⇒ EINVAL; OFF + ENABLE recovers', () => {
  const { ld, mech, domain } = setup();
  ok(ld.enableLogDirty());
  const r = ld.domctl({ op: SHADOW_OP_ENABLE_LOGDIRTY });
  assert.equal(errno(r), 'EINVAL');
  assert.match((r as { message: string }).message, /already enabled.*OFF/);
  assert.equal(domain.pauseCount, 0);
  ok(ld.off());
  assert.equal(ld.isEnabled, false);
  ok(ld.domctl({ op: SHADOW_OP_ENABLE, mode: SHADOW_ENABLE_LOG_DIRTY }));
  mech.guestWrite(3);
  assert.equal(ld.trie.test(3), true);
});

test('§9.9: allocation failure ⇒ every PEEK/CLEAN is ENOMEM until OFF', () => {
  const { ld, mech, domain } = setup({ limitPages: 4 });
  ok(ld.enableLogDirty());
  mech.guestWrite(1); // 4 pages: top, L3, L2, leaf
  mech.guestWrite(PFNS_PER_L3_SLOT + 1); // needs an L2 node: pool is dry
  assert.equal(ld.trie.failedAllocs, 1);
  const bm = new Uint8Array(GUEST_PAGES / 8);
  for (let i = 0; i < 3; i++) {
    const r1 = ld.peek(bm);
    assert.equal(errno(r1), 'ENOMEM');
    assert.match((r1 as { message: string }).message, /OFF/);
    assert.equal(errno(ld.clean(null, GUEST_PAGES)), 'ENOMEM');
    assert.equal(domain.pauseCount, 0, 'never left paused on a real error');
    assert.equal(ld.preempt.dom, null);
  }
  ok(ld.off());
  assert.equal(ld.trie.failedAllocs, 0);
  assert.equal(ld.trie.allocatedPages, 0);
  ok(ld.enableLogDirty());
  mech.guestWrite(2);
  ok(ld.peek(bm));
  assert.equal(bit(bm, 2), 1);
});

test('§9.10: preempted CLEAN ⇒ other ops EBUSY, domain paused until the continuation completes', () => {
  const { ld, mech, domain, log } = setup({ budget: 1 });
  ok(ld.enableLogDirty());
  const pages = 3 * PFNS_PER_L3_SLOT;
  const dirty = [5, PFNS_PER_L3_SLOT + 6, 2 * PFNS_PER_L3_SLOT + 7];
  for (const p of dirty) mech.guestWrite(p);
  const bm = new Uint8Array(pages / 8);
  const req = { op: SHADOW_OP_CLEAN, dirtyBitmap: bm, pages };
  const r1 = ld.domctl(req);
  assert.equal(errno(r1), 'ERESTART');
  assert.equal(domain.pauseCount, 1, 'stays paused across the continuation');
  assert.deepEqual(ld.preempt, { dom: 0, op: SHADOW_OP_CLEAN, done: PFNS_PER_L3_SLOT, i4: 0, i3: 1 });
  assert.equal(ld.trie.test(5), false, 'first L3 slot already cleaned');
  assert.equal(ld.trie.test(PFNS_PER_L3_SLOT + 6), true);

  for (const other of [
    { op: SHADOW_OP_PEEK, dirtyBitmap: bm, pages },
    { op: SHADOW_OP_OFF },
    { op: SHADOW_OP_ENABLE_LOGDIRTY },
    { op: SHADOW_OP_CLEAN, dirtyBitmap: bm, pages }, // even the same op, fresh
  ]) {
    const r = ld.domctl(other);
    assert.equal(errno(r), 'EBUSY');
    assert.match((r as { message: string }).message, /unfinished CLEAN/);
    assert.equal(domain.pauseCount, 1);
  }
  assert.equal(errno(ld.continueOp({ ...req, op: SHADOW_OP_PEEK })), 'EBUSY');
  assert.equal(errno(ld.continueOp({ ...req, callerDomId: 7 })), 'EBUSY');
  assert.equal(domain.pauseCount, 1);
  assert.ok(!log.includes('clean'), 'no re-arm before completion');

  let r = ld.continueOp(req);
  let continuations = 1;
  while (!r.ok && r.errno === 'ERESTART') {
    assert.equal(domain.pauseCount, 1);
    r = ld.continueOp(req);
    continuations++;
  }
  const done = ok(r);
  assert.ok(continuations >= 2);
  assert.equal(domain.pauseCount, 0);
  assert.equal(done.pages, pages);
  assert.equal(done.stats.dirtyCount, 3, 'continuation re-snapshots before the reset');
  for (const p of dirty) assert.equal(bit(bm, p), 1);
  assert.equal(ld.trie.countDirty(), 0);
  assert.equal(log.filter((e) => e === 'clean').length, 1);
  assert.equal(log.filter((e) => e === 'flush').length, 1, 'continuations do not flush again');
  assert.equal(ld.preempt.dom, null);
  ok(ld.peek(bm, pages)); // not busy any more
});

test('preemption points: after each L3 slot and each L4 slot, never after the last', () => {
  const { ld } = setup({ budget: 1 });
  ok(ld.enableLogDirty());
  // 2 L4 slots' worth: 512 L3 slots in slot 0, then 1 more.
  const pages = PFNS_PER_L4_SLOT + PFNS_PER_L3_SLOT;
  const req = { op: SHADOW_OP_PEEK, pages, dirtyBitmap: null };
  let r = ld.domctl(req);
  let calls = 1;
  while (!r.ok) {
    assert.equal(r.errno, 'ERESTART');
    r = ld.continueOp(req);
    calls++;
  }
  // 511 stops inside L4 slot 0 (after i3 = 0..510, none after 511), one at
  // its end (L4 check), one after L3 slot (1, 0) although that finished the
  // walk (Xen checks before looking at `pages`), then the final call.
  assert.equal(calls, 511 + 1 + 1 + 1);
  assert.equal(ok(r).pages, pages);
});

test('OFF is preemptible, keeps the domain paused, frees everything', () => {
  const { ld, mech, domain, log } = setup({ budget: 1 });
  ok(ld.enableLogDirty());
  for (let i = 0; i < 4; i++) mech.guestWrite(i * PFNS_PER_L3_SLOT);
  mech.guestWrite(PFNS_PER_L4_SLOT * 2);
  assert.ok(ld.trie.allocatedPages > 0);
  const r = ld.domctl({ op: SHADOW_OP_OFF });
  assert.equal(errno(r), 'ERESTART');
  assert.equal(domain.pauseCount, 1);
  assert.equal(ld.isEnabled, false);
  assert.equal(errno(ld.domctl({ op: SHADOW_OP_PEEK, pages: 8 })), 'EBUSY');
  assert.equal(errno(ld.run({ op: SHADOW_OP_OFF })), 'EBUSY', 'a fresh OFF is busy too');
  assert.ok(!log.includes('unpause') || log.lastIndexOf('pause') > log.lastIndexOf('unpause'));
  let c = ld.continueOp({ op: SHADOW_OP_OFF });
  while (!c.ok && c.errno === 'ERESTART') c = ld.continueOp({ op: SHADOW_OP_OFF });
  ok(c);
  assert.equal(domain.pauseCount, 0);
  assert.equal(ld.trie.allocatedPages, 0);
});

test('OFF continuation completes and frees every page', () => {
  const { ld, mech, domain } = setup({ budget: 1 });
  ok(ld.enableLogDirty());
  for (let i = 0; i < 4; i++) mech.guestWrite(i * PFNS_PER_L3_SLOT);
  const req = { op: SHADOW_OP_OFF };
  let r = ld.domctl(req);
  while (!r.ok && r.errno === 'ERESTART') r = ld.continueOp(req);
  ok(r);
  assert.equal(domain.pauseCount, 0);
  assert.equal(ld.trie.allocatedPages, 0);
  assert.equal(ld.trie.top, null);
});

test('stats: fault_count counts shadow faults, snapshot clamps to 2^32 − 1', () => {
  const { ld } = setup();
  ok(ld.enableLogDirty());
  ld.incrementFaultCount();
  ld.incrementFaultCount();
  ld.dirtyCount = 2 ** 33;
  const r = ok(ld.clean(null, 64));
  assert.deepEqual(r.stats, { faultCount: 2, dirtyCount: 0xffffffff });
  assert.equal(ld.faultCount, 0);
  // A mark-clean after a partial CLEAN wraps Xen's unsigned long: reported as 2^32 − 1.
  ld.markPfnDirty(100000);
  ok(ld.clean(null, 64)); // covers only leaf 0 ... pfn 100000 is in leaf 3, not cleaned
  assert.equal(ld.markPfnClean(100000), true);
  assert.equal(ok(ld.peek(null, 8)).stats.dirtyCount, 0xffffffff);
});

test('sc->pages = min(requested, pages walked); FINAL marks write-mapped frames before the pause', () => {
  const { ld, log } = setup();
  ok(ld.enableLogDirty());
  const bm = new Uint8Array(3);
  assert.equal(ok(ld.peek(bm, 17)).pages, 17);
  assert.equal(ok(ld.clean(null, LOGDIRTY_MAX_PFNS + 1000)).pages, LOGDIRTY_MAX_PFNS);
  log.length = 0;
  ok(ld.peek(bm, 17, SHADOW_LOGDIRTY_FINAL));
  assert.deepEqual(log, ['mark-mapped', 'pause', 'flush', 'unpause']);
  assert.equal(errno(ld.domctl({ op: SHADOW_OP_PEEK, mode: 2, pages: 8 })), 'EINVAL');
});

test('marks are no-ops while log-dirty is off', () => {
  const { ld } = setup();
  assert.equal(ld.markPfnDirty(3), false);
  assert.equal(ld.trie.allocatedPages, 0);
  ok(ld.enableLogDirty());
  assert.equal(ld.markPfnDirty(3), true);
  assert.equal(ld.markPfnDirty(3), false);
  assert.equal(ld.dirtyCount, 1);
  ok(ld.off());
  assert.equal(ld.markPfnDirty(4), false);
});

test('bad calls are errors with actionable messages, and leave nothing paused', () => {
  const { ld, domain } = setup();
  ok(ld.enableLogDirty());
  const short = ld.peek(new Uint8Array(4), 64);
  assert.equal(errno(short), 'EFAULT');
  assert.match((short as { message: string }).message, /holds 4 bytes.*needs 8/);
  assert.equal(errno(ld.domctl({ op: SHADOW_OP_PEEK, pages: 8, callerDomId: ld.domId })), 'EINVAL');
  assert.equal(errno(ld.domctl({ op: 99 })), 'EINVAL');
  assert.equal(errno(ld.continueOp({ op: SHADOW_OP_PEEK, pages: 8 })), 'EBUSY');
  assert.equal(domain.pauseCount, 0);
});
