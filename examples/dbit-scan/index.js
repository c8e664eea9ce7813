/**
 * dbit-scan: dirty tracking with no write protection at all. ENABLE turns on
 * EPT accessed/dirty flags (Intel SDM Vol. 3C §29.3.5), splits superpages (as
 * KVM's eager page splitting does for dirty logging) and leaves every 4 KiB
 * page writable with D=0; a guest write sets D in its EPT entry and takes no
 * VM exit. Each CLEAN pauses the domain, scans every leaf entry, reports the
 * pages whose D is set, clears it and invalidates the TLBs (INVEPT), so the
 * next write to a reported page sets D again. The entries are those PML mode
 * uses (4K ram_logdirty, writable, D=0), but nothing is logged: the D bits are
 * the record, and the price is a scan of the whole p2m at every harvest.
 *
 * A superpage populated while tracking comes in write-protected (ram_logdirty
 * at 2 MiB); its first write takes the ordinary HAP fault, which splits it and
 * leaves that page ram_rw — the scan reports a ram_rw leaf as dirty and
 * turns it back into a clean ram_logdirty entry.
 *
 * Load it with `memvisor compare --plugin examples/dbit-scan/index.js`.
 */
import { DefaultPagingMode, EPT_D, HW_EPT_AD, HW_PML, LEVEL_SPANS, P2M_ROOT_LEVEL, P2mType } from 'memvisor';

export class DbitScanMode extends DefaultPagingMode {
  name = 'dbit-scan';
  format = 'ept';
  controlCycles = 0;
  enabled = false;
  /** DirtyMode.writesLogged: a page's D bit is its record (set by the CPU at its first write), counted as each CLEAN finds it. */
  writesLogged = 0;

  constructor(domain) { super(); this.domain = domain; }

  enable() {
    const dom = this.domain;
    const p2m = dom.p2m;
    this.pause();
    p2m.hwFlags |= HW_EPT_AD | HW_PML; // A/D on; 4K ram_logdirty entries writable with D=0
    p2m.globalLogdirty = true; // frames populated from now on come in as ram_logdirty
    for (const gfn of this.walk(false, null).superpages) p2m.splitSuperpage(gfn);
    this.walk(true, null); // every leaf becomes a clean ram_logdirty entry
    this.enabled = true;
    this.flushAndUnpause();
  }

  /** PEEK: report without clearing. */
  peek(bitmap) { return this.harvestOp(false, bitmap); }

  /** CLEAN: report, clear the D bits, invalidate the TLBs. */
  harvest(bitmap) { return this.harvestOp(true, bitmap); }

  disable() {
    if (!this.enabled) return;
    const p2m = this.domain.p2m;
    this.pause();
    this.walk(true, null, P2mType.RamRw);
    p2m.hwFlags &= ~(HW_EPT_AD | HW_PML);
    p2m.globalLogdirty = false;
    this.enabled = false;
    this.flushAndUnpause();
  }

  /** A write the guest OS model made through its software view: the page turns ram_rw, which the scan reports. */
  markGuestWrite(_vcpu, gfn) {
    if (this.enabled) this.domain.p2m.changeTypeOne(gfn, P2mType.RamLogdirty, P2mType.RamRw);
  }

  trackingBytes() {
    return 0; // the D bits live in the p2m entries themselves
  }

  harvestOp(clear, bitmap) {
    if (!this.enabled) throw new Error(`dbit-scan: ${clear ? 'CLEAN' : 'PEEK'} before ENABLE`);
    const pages = this.domain.memory.pageCount;
    if (bitmap !== null) bitmap.fill(0, 0, Math.ceil(pages / 32));
    this.pause();
    const dirty = this.walk(clear, bitmap).dirty;
    if (clear) this.writesLogged += dirty;
    clear ? this.flushAndUnpause() : this.unpause();
    return { dirtyCount: dirty, faultCount: 0 };
  }

  /**
   * Visits every present leaf of the p2m. A 4K leaf is dirty if D is set
   * (ram_logdirty) or it is ram_rw (a split superpage's first write); with
   * `clear` it is rewritten as a clean entry of type `type`. Superpage leaves
   * are returned (they are write-protected: clean until a write splits them).
   */
  walk(clear, bitmap, type = P2mType.RamLogdirty) {
    const p2m = this.domain.p2m;
    const { pool, fmt } = p2m;
    const out = { dirty: 0, entries: 0, superpages: [] };
    const visit = (table, level, base) => {
      const w = pool.wordsOf(table);
      const o = pool.wordOffset(table);
      for (let k = 0; k < 512; k++) {
        const lo = w[o + 2 * k];
        const hi = w[o + 2 * k + 1];
        if ((lo | hi) === 0) continue;
        const gfn = base + k * LEVEL_SPANS[level];
        if (!fmt.isLeaf(lo, hi, level)) {
          visit(fmt.mfn(lo, hi), level - 1, gfn);
          continue;
        }
        out.entries++;
        if (level > 0) {
          out.superpages.push(gfn);
          continue;
        }
        const t = fmt.type(lo, hi);
        if (t !== P2mType.RamRw && t !== P2mType.RamLogdirty) continue;
        if (t === P2mType.RamRw || (lo & EPT_D) !== 0) {
          out.dirty++;
          if (bitmap !== null) bitmap[gfn >>> 5] |= 1 << (gfn & 31);
        }
        if (clear) fmt.writeLeaf(w, o + 2 * k, 0, fmt.mfn(lo, hi), type, fmt.access(lo, hi), p2m.hwFlags);
      }
    };
    visit(p2m.rootMfn, P2M_ROOT_LEVEL, 0);
    // Reading, testing and (with clear) rewriting one entry costs what resolve_misconfig pays per entry.
    this.controlCycles += out.entries * this.domain.costs.recalcPerEntry;
    return out;
  }

  pause() { this.controlCycles += this.domain.costs.domainPause; this.domain.pause(); }

  unpause() { this.controlCycles += this.domain.costs.domainUnpause; this.domain.unpause(); }

  /** INVEPT on every vCPU, so a write after the scan walks the p2m and sets D again. */
  flushAndUnpause() {
    this.domain.flushTlbs();
    this.controlCycles += this.domain.vcpus.length * this.domain.costs.tlbFlush;
    this.unpause();
  }
}

/** The registry entry: what registerMode takes and what the contract suite runs. */
export const dbitScan = {
  name: 'dbit-scan',
  format: 'ept',
  summary: 'EPT D-bit scan: no write protection; every CLEAN scans the p2m, reports and clears the D bits',
  create(domain) {
    const mode = new DbitScanMode(domain);
    domain.setPagingMode(mode);
    return mode;
  },
};

/** A memvisor plugin: `--plugin examples/dbit-scan/index.js`. */
export default function plugin(memvisor) {
  memvisor.registerMode(dbitScan);
}
