/**
 * One call for the CLI: connect (TCP or TLS, token), run the sender with the
 * right clock and allocator, return its result. Handshake failures come back
 * as MigrationFailedError (phase 'handshake') like every other failure.
 */
import { MigrationFailedError } from '../../core/migration/errors.ts';
import type { LinkModel } from '../../core/migration/link-model.ts';
import type { MigratableGuest } from '../../core/migration/migratable-guest.ts';
import type { GuestThrottle } from '../../core/migration/auto-converge.ts';
import type { StopPolicy } from '../../core/migration/policy/stop-policy.ts';
import { migrate, type ClockMode, type MigrationResult, type SenderObserver } from '../../core/migration/sender.ts';
import { WorkerPageHashPool } from '../pagehash/worker-pool.ts';
import { connectTransport, type TlsClientOptions } from './tcp-transport.ts';
import { sleepNs, wallClock } from './wall-clock.ts';

export interface MigrateToOptions {
  readonly host: string;
  readonly port: number;
  readonly tls?: TlsClientOptions;
  readonly token?: string;
  readonly policy: StopPolicy;
  readonly clock: ClockMode;
  readonly link: LinkModel;
  /** The saver's rate cap, bytes/s (QEMU max-bandwidth); absent: none. */
  readonly capBytesPerSec?: number;
  readonly skipUnchanged?: boolean;
  /** QEMU saver: auto-converge's throttle. */
  readonly throttle?: GuestThrottle;
  readonly resumeSourceAfter?: boolean;
  readonly observer?: SenderObserver;
  readonly verdictTimeoutMs?: number;
  /** No progress on the link for this long ends the attempt (default 30 s). */
  readonly ioTimeoutMs?: number;
}

const allocUnsafe = (n: number): Uint8Array => Buffer.allocUnsafe(n);

export async function migrateTo(guest: MigratableGuest, o: MigrateToOptions): Promise<MigrationResult> {
  let transport;
  try {
    transport = await connectTransport({ host: o.host, port: o.port, tls: o.tls, token: o.token, verdictTimeoutMs: o.verdictTimeoutMs, ioTimeoutMs: o.ioTimeoutMs });
  } catch (e) {
    throw new MigrationFailedError('handshake', -1, e);
  }
  // A second thread for the final digest of a large guest (its memory is shared WebAssembly memory).
  const pool = guest.pageCount >= 16384 ? WorkerPageHashPool.start() : undefined;
  try {
    return await migrate(
      guest,
      transport,
      {
        policy: o.policy, clock: o.clock, link: o.link, resumeSourceAfter: o.resumeSourceAfter,
        ...(o.capBytesPerSec !== undefined ? { capBytesPerSec: o.capBytesPerSec } : {}),
        ...(o.skipUnchanged !== undefined ? { skipUnchanged: o.skipUnchanged } : {}),
        ...(o.throttle !== undefined ? { throttle: o.throttle } : {}),
      },
      { wallClock, sleep: sleepNs, alloc: allocUnsafe, observer: o.observer, ...(pool ? { pageHashPool: pool } : {}) },
    );
  } finally {
    void pool?.close();
  }
}
