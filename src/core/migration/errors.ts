/**
 * Migration failures as data. Whatever fails, the sender has already turned
 * log-dirty off and unpaused the guest if it had paused it; the error says
 * where (phase, round) and why (the cause).
 */

export type MigrationPhase = 'setup' | 'handshake' | 'live' | 'stop-and-copy' | 'verify';

/** The link to the receiver went away (closed, reset, timed out). */
export class LinkLostError extends Error {
  readonly code = 'link_lost';
  constructor(why: string) {
    super(`connection to the receiver lost: ${why}`);
    this.name = 'LinkLostError';
  }
}

/** The receiver refused the stream (checksum mismatch, bad record, …) and said why. */
export class ReceiverRejectedError extends Error {
  readonly code = 'receiver_rejected';
  constructor(
    readonly receiverCode: string,
    readonly receiverMessage: string,
  ) {
    super(`the receiver rejected the stream: ${receiverMessage}`);
    this.name = 'ReceiverRejectedError';
  }
}

/** The receiver refused the connection before any page moved (token, TLS, version). */
export class HandshakeRefusedError extends Error {
  readonly code = 'handshake_refused';
  constructor(why: string) {
    super(why);
    this.name = 'HandshakeRefusedError';
  }
}

/** A migration that did not complete; the source guest keeps running. */
export class MigrationFailedError extends Error {
  readonly code = 'migration_failed';
  constructor(
    readonly phase: MigrationPhase,
    /** Round in progress (0 = the full first pass), or -1 before round 0. */
    readonly round: number,
    override readonly cause: unknown,
  ) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(`migration failed during ${phase}${round >= 0 ? ` (round ${round})` : ''}: ${why}; the source guest is running and unchanged`);
    this.name = 'MigrationFailedError';
  }
}
