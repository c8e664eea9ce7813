/**
 * Runs a guest with a xen-access listener attached, in one thread,
 * deterministically: the domain's run loop and the listener take turns.
 *
 * ```
 *  listener.start()
 *  for each batch of the source:
 *    run the domain until the batch ends or the vCPU whose turn it is pauses
 *    (a sync mem_access event, a throttle, a wait for a ring slot)
 *    ─► listener.poll(): consume requests, respond, kick Xen (vm_event_resume unpauses)
 *    ─► run again from the record that paused (it re-executes)
 *  listener.poll(); listener.shutdown()
 * ```
 * A turn in which neither the guest advanced nor the listener consumed
 * anything while a vCPU stays paused is a stall (nothing can ever unpause it):
 * reported as an AccessSessionError naming the record.
 */
import type { Domain } from '../domain/domain.ts';
import { AccessBatch, type AccessSource } from '../workload/access-batch.ts';
import type { MemAccessLayer } from './mem-access-layer.ts';
import type { XenAccess } from './xen-access.ts';

export class AccessSessionError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'AccessSessionError';
  }
}

export interface AccessSessionResult {
  /** Records executed. */
  readonly records: number;
  /** Times the guest stopped on a paused vCPU and the listener ran. */
  readonly stops: number;
}

export interface AccessSessionOptions {
  readonly batchCapacity?: number;
  readonly onProgress?: (records: number) => void;
}

export async function runAccessSession(domain: Domain, layer: MemAccessLayer, listener: XenAccess, source: AccessSource,
  opts: AccessSessionOptions = {}): Promise<AccessSessionResult> {
  if (domain.pagingMode !== layer) throw new AccessSessionError('the mem_access layer is not the domain\'s paging mode');
  const batch = new AccessBatch(opts.batchCapacity ?? 4096);
  let records = 0;
  let stops = 0;
  if (!listener.attached) listener.start();
  for (;;) {
    const more = await source.fill(batch);
    if (!more || batch.length === 0) break;
    let pos = 0;
    while (pos < batch.length) {
      const next = domain.run(batch, pos, batch.length);
      records += next - pos;
      if (domain.crashed) {
        throw new AccessSessionError(`${source.name}: record ${batch.line[Math.min(next, batch.length - 1)]}: guest crashed: ${domain.crashReason}`);
      }
      if (next === batch.length) {
        pos = next;
        break;
      }
      stops++;
      const handled = listener.poll();
      if (next === pos && handled === 0 && domain.vcpus.some((v) => v.pauseCount > 0)) {
        throw new AccessSessionError(`${source.name}: record ${batch.line[next]}: the guest is stalled (a vCPU stays paused and the listener has nothing to answer)`);
      }
      pos = next;
    }
    listener.poll();
    opts.onProgress?.(records);
  }
  listener.poll();
  listener.shutdown();
  return { records, stops };
}
