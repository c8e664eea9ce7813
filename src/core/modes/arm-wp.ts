/**
 * arm-wp: log-dirty on ARM stage-2 by write protection (Xen-on-ARM style, with
 * x86 HAP semantics for the toolstack ops). ram_logdirty entries lack S2AP
 * write; a write raises a stage-2 data abort (permission fault, WnR=1); the
 * lazy global change clears the valid bit of top-level entries, so the re-arm
 * shows as translation faults, one 512-entry table per abort.
 *
 * ModeOptions.armDirtySet chooses how the fault handler records the gfn:
 *  - 'bitmap' (default): mark the trie at fault time (paging_mark_pfn_dirty);
 *  - 'list': append the faulting IPA's frame to a growable array (as the
 *    Xen-on-ARM dirty-page-tracing proposals did: cheap at fault time), and
 *    copy the list into the trie under pause at PEEK/CLEAN, charged to the
 *    control plane at logdirtyMark per entry.
 * A page faults at most once per window (it is rw afterwards), so the list
 * holds no duplicates; trackingBytes counts its capacity.
 */
import type { Domain } from '../domain/domain.ts';
import { PAGE_SIZE } from '../units.ts';
import type { ModeFactory, ModeOptions } from './dirty-mode.ts';
import { HapLogDirtyMode } from './hap-log-dirty.ts';

/** First capacity of the list, in entries (one 4 KiB page of Float64 gfns). */
const LIST_INITIAL_ENTRIES = PAGE_SIZE / Float64Array.BYTES_PER_ELEMENT;

export class ArmWpMode extends HapLogDirtyMode {
  readonly dirtySet: 'bitmap' | 'list';
  /** Faulting gfns since the last flush into the trie ('list'): entries [0, listLength). */
  private list = new Float64Array(0);
  listLength = 0;

  constructor(domain: Domain, opts: ModeOptions = {}) {
    super(domain, 'arm-wp', 'arm', opts);
    this.dirtySet = opts.armDirtySet ?? 'bitmap';
  }

  protected override markDirty(gfn: number): void {
    if (this.dirtySet === 'bitmap') {
      super.markDirty(gfn);
      return;
    }
    if (!this.logDirty.isEnabled) return;
    if (this.listLength === this.list.length) {
      const grown = new Float64Array(Math.max(LIST_INITIAL_ENTRIES, this.list.length * 2));
      grown.set(this.list);
      this.list = grown;
    }
    this.list[this.listLength++] = gfn;
  }

  protected override faultMarkCost(): number {
    return this.dirtySet === 'list' ? this.domain.costs.dirtyListAppend : super.faultMarkCost();
  }

  protected override flushSoftwareCached(): void {
    const n = this.listLength;
    if (n === 0) return;
    const ld = this.logDirty;
    for (let k = 0; k < n; k++) ld.markPfnDirty(this.list[k]!);
    this.listLength = 0;
    this.controlCycles += n * this.domain.costs.logdirtyMark;
  }

  protected override dropSoftwareCached(): void {
    this.listLength = 0;
    this.list = new Float64Array(0);
  }

  protected override extraTrackingBytes(): number {
    return this.list.byteLength;
  }
}

export const createArmWp: ModeFactory = (domain, opts) => {
  const mode = new ArmWpMode(domain, opts);
  domain.setPagingMode(mode);
  return mode;
};
