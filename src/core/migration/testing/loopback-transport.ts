/**
 * A StreamTransport straight into an in-process ReceiverSession, for tests:
 * no socket, no copies. Faults can be injected: cut the link after N bytes,
 * or flip one byte at offset K (the receiver then refuses the record, as a
 * remote receiver would, and the sender sees ReceiverRejectedError).
 */
import { LinkLostError, ReceiverRejectedError } from '../errors.ts';
import { ReceiverSession, type ReceiverSessionOptions } from '../receiver-session.ts';
import { StreamError } from '../stream/errors.ts';
import type { StreamTransport, Verdict } from '../transport.ts';

export interface LoopbackFaults {
  /** The link dies once this many stream bytes have been delivered. */
  readonly cutAfterBytes?: number;
  /** XOR 0x01 into the stream byte at this offset. */
  readonly flipByteAt?: number;
}

export class LoopbackTransport implements StreamTransport {
  readonly session: ReceiverSession;
  private delivered = 0;
  private failed: Error | undefined;
  private closed = false;

  constructor(
    sessionOpts: ReceiverSessionOptions = {},
    private readonly faults: LoopbackFaults = {},
  ) {
    this.session = new ReceiverSession(sessionOpts);
  }

  get failure(): Error | undefined {
    return this.failed;
  }

  get bytesDelivered(): number {
    return this.delivered;
  }

  write(chunks: readonly Uint8Array[], onReleased?: () => void): boolean {
    this.writeInner(chunks);
    onReleased?.(); // the session has copied what it needs
    return true;
  }

  private writeInner(chunks: readonly Uint8Array[]): boolean {
    if (this.failed) return true;
    if (this.closed) {
      this.failed = new LinkLostError('write after close');
      return true;
    }
    for (let c of chunks) {
      const cut = this.faults.cutAfterBytes;
      if (cut !== undefined && this.delivered + c.length > cut) {
        c = c.subarray(0, Math.max(0, cut - this.delivered));
        this.deliver(c);
        if (!this.failed) this.failed = new LinkLostError(`connection reset after ${cut} bytes`);
        return true;
      }
      const flip = this.faults.flipByteAt;
      if (flip !== undefined && flip >= this.delivered && flip < this.delivered + c.length) {
        c = c.slice();
        c[flip - this.delivered]! ^= 0x01;
      }
      this.deliver(c);
      if (this.failed) return true;
    }
    return true;
  }

  private deliver(c: Uint8Array): void {
    try {
      this.session.push(c);
      this.delivered += c.length;
    } catch (e) {
      if (e instanceof StreamError) this.failed = new ReceiverRejectedError(e.code, e.message);
      else this.failed = e as Error;
    }
  }

  async drain(): Promise<void> {
    if (this.failed) throw this.failed;
  }

  async flush(): Promise<void> {
    if (this.failed) throw this.failed;
  }

  async verdict(): Promise<Verdict> {
    if (this.failed) throw this.failed;
    const o = this.session.outcome;
    if (!o) throw new LinkLostError('the stream ended without END');
    return {
      verified: o.verified,
      destDigest: o.destDigest,
      sourceDigest: o.sourceDigest,
      receiverDigestMs: o.digestMs,
      receiverSetupMs: o.setupMs,
      pagesApplied: o.pagesApplied,
    };
  }

  close(): void {
    this.closed = true;
  }
}
