/**
 * ept-pml: Xen HAP log-dirty with Intel Page-Modification Logging
 * (SDM Vol. 3C §29.3.6; xen/arch/x86/mm/p2m-ept.c, hvm/vmx/vmcs.c).
 *
 * ENABLE turns on EPT A/D and a 512-entry log per vCPU (index 511 down), then
 * the global rw → logdirty change: 4K ram_logdirty entries become writable with
 * D=0, so the CPU logs the gpa on the D 0→1 of the first write instead of
 * exiting; superpages stay write-protected and split on their first write (the
 * HAP write fault). The 513th logging attempt raises a PML-full exit (62):
 * that vCPU's log is drained into the trie (logdirty → rw, mark) and the access
 * retried. Logs are drained on PML-full, under pause at PEEK/CLEAN, and at OFF —
 * never on other exits (Xen does not flush on context switch).
 *
 * ModeOptions.pmlFlush 'every-exit' instead drains the exiting vCPU's log on
 * every VM exit of any reason, charged to that vCPU, to measure what it costs.
 */
import type { Domain } from '../domain/domain.ts';
import type { Vcpu } from '../domain/vcpu.ts';
import type { ExitAction, ExitInfo } from '../mmu/exit-info.ts';
import { ExitReason } from '../vm-exit.ts';
import type { ModeFactory, ModeOptions } from './dirty-mode.ts';
import { HapLogDirtyMode } from './hap-log-dirty.ts';

export class EptPmlMode extends HapLogDirtyMode {
  protected override readonly usesPml = true;
  /** pmlFlush === 'every-exit'. */
  readonly flushEveryExit: boolean;

  constructor(domain: Domain, opts: ModeOptions = {}) {
    super(domain, 'ept-pml', 'ept', opts);
    this.flushEveryExit = opts.pmlFlush === 'every-exit';
  }

  override handleExit(vcpu: Vcpu, exit: ExitInfo): ExitAction {
    if (this.flushEveryExit && exit.reason !== ExitReason.PmlFull) this.flushPml(vcpu);
    return super.handleExit(vcpu, exit);
  }
}

export const createEptPml: ModeFactory = (domain, opts) => {
  const mode = new EptPmlMode(domain, opts);
  domain.setPagingMode(mode);
  return mode;
};
