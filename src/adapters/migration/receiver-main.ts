/**
 * Standalone receiver process: `node --import tsx src/adapters/migration/receiver-main.ts
 *   --listen host:port [--json] [--tls-cert F --tls-key F] [--token T] [--once] [--io-timeout S]`.
 * With --prealloc-mib, {"event":"preparing","pages_done","pages"} lines while
 * memory is built; then {"event":"listening","host","port"} (so a parent can use
 * port 0 and learn the port); last line: {"event":"result",…} with --json,
 * else a one-line summary. Log lines go to stderr. Exit 0 iff verified.
 * The CLI's `memvisor receive` calls runReceiver the same way.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runReceiver, type ReceiverResult } from './receiver.ts';
import { formatHostPort } from './host-port.ts';

export function receiverResultJson(r: ReceiverResult): Record<string, unknown> {
  const o = r.outcome;
  return {
    event: 'result',
    listen: formatHostPort(r.host, r.port),
    tls: r.tls,
    verified: r.verified,
    source_digest: o?.sourceDigest ?? null,
    dest_digest: o?.destDigest ?? null,
    page_count: o?.pageCount ?? null,
    vcpu_count: o?.vcpuCount ?? null,
    policy: o?.policy ?? null,
    rounds: o?.rounds ?? null,
    batches: o?.batches ?? null,
    pages_applied: o?.pagesApplied ?? null,
    zero_pages: o?.zeroPages ?? null,
    bytes_received: o?.bytes ?? null,
    digest_ms: o?.digestMs ?? null,
    attempts: r.attempts,
  };
}

function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  if (!m || Number(m[3]) > 65535) throw new Error(`--listen expects host:port, got "${s}"`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      listen: { type: 'string', default: '127.0.0.1:0' },
      json: { type: 'boolean', default: false },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      token: { type: 'string' },
      once: { type: 'boolean', default: false },
      'prealloc-mib': { type: 'string' },
      'io-timeout': { type: 'string' },
      migrations: { type: 'string' },
    },
  });
  const { host, port } = parseListen(values.listen!);
  if (!!values['tls-cert'] !== !!values['tls-key']) throw new Error('--tls-cert and --tls-key go together');
  const ioTimeoutS = values['io-timeout'] === undefined ? undefined : Number(values['io-timeout']);
  if (ioTimeoutS !== undefined && !(ioTimeoutS > 0)) throw new Error(`--io-timeout expects seconds > 0, got "${values['io-timeout']}"`);
  const tlsOpts = values['tls-cert'] ? { cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']!) } : undefined;
  const r = await runReceiver(
    {
      host,
      port,
      tls: tlsOpts,
      token: values.token,
      once: values.once,
      preallocPages: values['prealloc-mib'] ? Number(values['prealloc-mib']) * 256 : undefined,
      ...(ioTimeoutS !== undefined ? { ioTimeoutMs: ioTimeoutS * 1000 } : {}),
      ...(values.migrations !== undefined ? { migrations: Number(values.migrations) } : {}),
    },
    {
      logger: {
        info: (m) => process.stderr.write(`receiver: ${m}\n`),
        warn: (m) => process.stderr.write(`receiver: ${m}\n`),
      },
      // Written synchronously (stdout is a pipe): the parent sees progress while the prefault loop runs.
      onPrealloc: (done, pages) => process.stdout.write(JSON.stringify({ event: 'preparing', pages_done: done, pages }) + '\n'),
      onListening: (a) => process.stdout.write(JSON.stringify({ event: 'listening', host: a.host, port: a.port }) + '\n'),
    },
  );
  if (values.json) process.stdout.write(JSON.stringify(receiverResultJson(r)) + '\n');
  else
    process.stdout.write(
      r.verified
        ? `verified: ${r.outcome!.pageCount} pages, digest ${r.outcome!.destDigest}\n`
        : `not verified${r.attempts.length ? `: ${r.attempts[r.attempts.length - 1]!.message}` : ''}\n`,
    );
  return r.verified ? 0 : 1;
}

// Run as a script (not imported, e.g. by `memvisor receive` for receiverResultJson): the whole path, since src/cli/main.ts ends in main.ts too.
const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === resolve(process.argv[1]);
if (isMain) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`receiver: ${(e as Error).message}\n`);
      process.exit(2);
    },
  );
}
