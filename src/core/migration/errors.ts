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

/**
 * Nothing moved on the link for `seconds`: no byte written to the kernel, none
 * acknowledged by a read, none read, while the sender was waiting on it. A
 * partition (packets silently dropped, no reset) or a stalled receiver looks
 * like this; TCP alone would retransmit for ~15 minutes (tcp_retries2).
 */
export class IoTimeoutError extends Error {
  readonly code = 'io_timeout';
  constructor(readonly seconds: number) {
    super(`no progress for ${seconds} s: the link is down or the receiver is stalled`);
    this.name = 'IoTimeoutError';
  }
}

/** Where a failed migration was, as a person reads it: "round 3", "stop-and-copy (round 5)". */
export function describePhase(phase: MigrationPhase, round: number): string {
  switch (phase) {
    case 'setup': return 'setup';
    case 'handshake': return 'the handshake';
    case 'live': return round >= 0 ? `round ${round}` : 'the live phase';
    case 'stop-and-copy': return round >= 0 ? `stop-and-copy (round ${round})` : 'stop-and-copy';
    case 'verify': return "verification (waiting for the receiver's verdict)";
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
    super(
      cause instanceof IoTimeoutError
        ? `no progress for ${cause.seconds} s during ${describePhase(phase, round)}: the link is down or the receiver is stalled; the source guest is running and unchanged, log-dirty off`
        : `migration failed during ${phase}${round >= 0 ? ` (round ${round})` : ''}: ${why}; the source guest is running and unchanged`,
    );
    this.name = 'MigrationFailedError';
  }
}
