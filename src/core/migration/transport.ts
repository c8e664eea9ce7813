/**
 * StreamTransport: what the sender writes the stream into. Adapters implement
 * it over TCP/TLS (src/adapters/migration/tcp-transport.ts); tests over an
 * in-process receiver (testing/loopback-transport.ts).
 */

/** The receiver's answer after END. */
export interface Verdict {
  readonly verified: boolean;
  readonly destDigest: string;
  readonly sourceDigest: string;
  /** Receiver-side timings, ms of its wall clock (0 when not measured). */
  readonly receiverDigestMs: number;
  readonly receiverSetupMs: number;
  readonly pagesApplied: number;
}

export interface StreamTransport {
  /**
   * Queues `chunks` as one write (corked); false ⇒ await `drain()` before
   * writing more. `onReleased` (if given) is called once the transport no
   * longer holds the chunks, so their buffers may be reused.
   */
  write(chunks: readonly Uint8Array[], onReleased?: () => void): boolean;
  /** Resolves when the write queue is below its high-water mark; rejects if the link failed. */
  drain(): Promise<void>;
  /** Resolves when every queued byte has been handed to the OS; rejects if the link failed. */
  flush(): Promise<void>;
  /** After END: the receiver's verdict; rejects with LinkLostError / ReceiverRejectedError. */
  verdict(): Promise<Verdict>;
  /** Set once the link has failed (checked by the sender between batches). */
  readonly failure: Error | undefined;
  close(): void;
}
