/**
 * Starts the receiver as a separate process on loopback (what `migrate`
 * without --to does, and what the e2e tests and the bench use), and reads the
 * port it chose from its first stdout line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The receiver's entry beside this module: receiver-main.js in the compiled
 * package (dist/, run by plain node), receiver-main.ts when memvisor runs from
 * its TypeScript sources (tests, `node --import tsx`), which then needs the
 * loader too, resolved from this package (not from the caller's directory).
 */
const FROM_SOURCE = import.meta.url.endsWith('.ts');
export const RECEIVER_ENTRY = fileURLToPath(new URL(FROM_SOURCE ? './receiver-main.ts' : './receiver-main.js', import.meta.url));
const LOADER_ARGS: readonly string[] = FROM_SOURCE ? ['--import', import.meta.resolve('tsx')] : [];

export interface SpawnedReceiver {
  readonly host: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** The receiver's final JSON line and exit code. */
  readonly done: Promise<{ code: number | null; result: Record<string, unknown> | undefined; stderr: string }>;
  kill(): void;
  /** Waits up to `graceMs` for the receiver to exit on its own, then kills it. */
  reap(graceMs: number): Promise<void>;
}

export interface SpawnReceiverOptions {
  readonly host?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly token?: string;
  readonly once?: boolean;
  /** Populate this much destination memory before listening (MiB). */
  readonly preallocMiB?: number;
  readonly startTimeoutMs?: number;
  /** Extra node flags for the receiver process (e.g. `--cpu-prof`, which NODE_OPTIONS refuses). */
  readonly execArgv?: readonly string[];
}

export function spawnReceiver(o: SpawnReceiverOptions = {}): Promise<SpawnedReceiver> {
  const host = o.host ?? '127.0.0.1';
  const args = [...(o.execArgv ?? []), ...LOADER_ARGS, RECEIVER_ENTRY, '--listen', `${host}:0`, '--json'];
  if (o.tlsCert) args.push('--tls-cert', o.tlsCert, '--tls-key', o.tlsKey!);
  if (o.token !== undefined) args.push('--token', o.token);
  if (o.once) args.push('--once');
  if (o.preallocMiB) args.push('--prealloc-mib', String(o.preallocMiB));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; result: Record<string, unknown> | undefined; stderr: string }>((resolve) => {
    child.on('close', (code) => {
      const lines = stdout.trim().split('\n').filter(Boolean).map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return undefined;
        }
      });
      resolve({ code, result: lines.find((l) => l?.event === 'result'), stderr });
    });
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`receiver did not start within ${o.startTimeoutMs ?? 20_000} ms: ${stderr}`));
    }, o.startTimeoutMs ?? 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      const before = stdout;
      stdout += d.toString();
      if (!before.includes('\n') && stdout.includes('\n')) {
        clearTimeout(timer);
        const first = JSON.parse(stdout.split('\n')[0]!) as { host: string; port: number };
        const reap = async (graceMs: number): Promise<void> => {
          let t: NodeJS.Timeout | undefined;
          const exited = await Promise.race([done, new Promise<null>((res) => (t = setTimeout(() => res(null), graceMs)))]);
          clearTimeout(t);
          if (exited === null) child.kill();
        };
        resolve({ host: first.host, port: first.port, child, done, kill: () => child.kill(), reap });
      }
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (!stdout.includes('\n')) reject(new Error(`receiver exited (${code}) before listening: ${stderr.trim()}`));
    });
  });
}
