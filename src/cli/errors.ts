/**
 * Errors the user caused (bad flag, bad trace line, unreachable peer) and how
 * the CLI reports them: one line on stderr, a non-zero exit, no stack trace.
 * Engine errors that carry a user-actionable message are reported the same
 * way; anything else is a bug and says so (stack only with MEMVISOR_DEBUG=1).
 */
import { abandonReportClaims } from './report-file.ts';
import { formatHostPort } from '../adapters/migration/host-port.ts';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Exit codes: 1 for bad input or a refused operation, 2 for an internal error. */
export const EXIT_BAD_INPUT = 1;
export const EXIT_INTERNAL = 2;

/** Error classes whose message is written for users. */
const USER_FACING = new Set([
  'UsageError', 'ArgParseError', 'TraceParseError', 'TraceReadError', 'SizeParseError', 'HostPortParseError',
  'UnknownModeError', 'UnknownWorkloadError', 'UnknownPolicyError', 'DomainStateError', 'ReplayError',
  'GuestCrashedError', 'OutOfFramesError', 'GuestAddressError', 'GuestMemoryError', 'LogDirtyRefusedError',
  'MigrationFailedError', 'LinkLostError', 'IoTimeoutError', 'ReceiverRejectedError', 'HandshakeRefusedError', 'StreamDecodeError',
  'TransportError',
]);

export function isUserFacing(err: Error): boolean {
  let proto: object | null = Object.getPrototypeOf(err);
  while (proto && proto !== Error.prototype) {
    const ctorName = (proto as { constructor?: { name?: string } }).constructor?.name;
    if (ctorName && USER_FACING.has(ctorName)) return true;
    proto = Object.getPrototypeOf(proto);
  }
  return USER_FACING.has(err.name) || (err as { userFacing?: boolean }).userFacing === true;
}

/**
 * A failure to listen on `host:port` named for `flag` as a UsageError the user
 * can act on (address in use, not local, not allowed, unknown host); any
 * other error is returned unchanged.
 */
export function listenError(flag: string, host: string, port: number, e: unknown): unknown {
  const where = formatHostPort(host, port);
  switch ((e as NodeJS.ErrnoException).code) {
    case 'EADDRINUSE': return new UsageError(`${flag}: ${where} is already in use (try port 0)`);
    case 'EADDRNOTAVAIL': return new UsageError(`${flag}: ${host} is not an address of this machine`);
    case 'EACCES': return new UsageError(`${flag}: not allowed to listen on ${where}`);
    case 'ENOTFOUND': case 'EAI_AGAIN': return new UsageError(`${flag}: cannot resolve host '${host}'`);
    default: return e;
  }
}

/** Prints `memvisor: <message>` and exits. Never returns. */
export function reportAndExit(err: unknown): never {
  abandonReportClaims();
  const debug = process.env.MEMVISOR_DEBUG === '1';
  if (err instanceof Error) {
    const code = isUserFacing(err) ? EXIT_BAD_INPUT : EXIT_INTERNAL;
    const prefix = code === EXIT_INTERNAL ? 'internal error: ' : '';
    process.stderr.write(`memvisor: ${prefix}${err.message.split('\n')[0]}\n`);
    if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exit(code);
  }
  process.stderr.write(`memvisor: ${String(err)}\n`);
  process.exit(EXIT_INTERNAL);
}
