/**
 * `memvisor receive --listen host:port`: waits for a migration, applies its
 * page batches (checking every checksum), verifies the final digest, and
 * exits 0 once a migration verified (a failed attempt is reported and the
 * receiver keeps listening for the sender's retry, unless --once).
 * `--prealloc SIZE` builds the destination memory up front, as a destination
 * domain is built before the stream (and as `migrate` does for the receiver
 * it starts): a guest up to that size then costs no page faults in the stream.
 * `--io-timeout S` drops a silent or trickling sender (the attempt fails, the
 * receiver listens on); `--max-mem SIZE` refuses a larger guest before allocating.
 */
import { runReceiver } from '../../adapters/migration/receiver.ts';
import { receiverResultJson } from '../../adapters/migration/receiver-main.ts';
import { listenError, UsageError } from '../errors.ts';
import { fileFlag, ioTimeoutFlag, sizeFlag } from '../options.ts';
import { parseHostPort } from '../parse-size.ts';

export interface ReceiveFlags {
  listen: string;
  tlsCert?: string;
  tlsKey?: string;
  token?: string;
  once?: boolean;
  prealloc?: string;
  json?: boolean;
  ioTimeout?: string;
  maxMem?: string;
}

export async function receiveCommand(f: ReceiveFlags): Promise<void> {
  const { host, port } = parseHostPort(f.listen, { flag: '--listen', allowPortZero: true });
  if ((f.tlsCert === undefined) !== (f.tlsKey === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  const preallocBytes = sizeFlag('--prealloc', f.prealloc, 0);
  const ioTimeoutMs = ioTimeoutFlag(f.ioTimeout);
  const maxMemBytes = f.maxMem === undefined ? undefined : sizeFlag('--max-mem', f.maxMem, 0);
  if (maxMemBytes === 0) throw new UsageError('--max-mem: must be more than 0');
  const tls = f.tlsCert !== undefined ? { cert: fileFlag('--tls-cert', f.tlsCert), key: fileFlag('--tls-key', f.tlsKey!) } : undefined;
  let r;
  try {
    r = await runReceiver(
      {
        host, port, tls, token: f.token, once: f.once === true, ioTimeoutMs,
        ...(preallocBytes > 0 ? { preallocPages: preallocBytes / 4096 } : {}),
        ...(maxMemBytes !== undefined ? { maxPageCount: maxMemBytes / 4096 } : {}),
      },
      {
        // The logger prints 'listening on host:port' and each attempt to stderr; with --json each
        // becomes an event line on stdout ({"event":"info"|"warning","message",...}), so a
        // long-running receiver says what happens as it happens and stderr stays for errors.
        logger: f.json
          ? {
            info: (m: string, fields?: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ event: 'info', message: m, ...fields })}\n`),
            warn: (m: string, fields?: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ event: 'warning', message: m, ...fields })}\n`),
          }
          : {
            info: (m: string) => process.stderr.write(`receiver: ${m}\n`),
            warn: (m: string) => process.stderr.write(`receiver: ${m}\n`),
          },
        onListening: (a) => {
          if (f.json) process.stdout.write(`${JSON.stringify({ event: 'listening', host: a.host, port: a.port })}\n`);
        },
      },
    );
  } catch (e) {
    // tls.createServer refuses a certificate or key that is not PEM (OpenSSL's 'error:...' text).
    if (tls && /^error:[0-9A-F]+:/.test((e as Error).message ?? '')) throw new UsageError(`--tls-cert/--tls-key: not a usable PEM certificate and key (${(e as Error).message})`);
    throw listenError('--listen', host, port, e);
  }
  if (f.json) process.stdout.write(`${JSON.stringify(receiverResultJson(r))}\n`);
  else if (r.verified) process.stdout.write(`verified: ${r.outcome!.pageCount} pages, digest ${r.outcome!.destDigest}\n`);
  else process.stdout.write(`not verified${r.attempts.length ? `: ${r.attempts[r.attempts.length - 1]!.message}` : ''}\n`);
  if (!r.verified) process.exitCode = 1;
}
