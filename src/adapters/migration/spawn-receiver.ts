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
  /** The receiver's --io-timeout (ms; default its own, 30 s). */
  readonly ioTimeoutMs?: number;
  /** Exit after this many verified migrations (default 1). */
  readonly migrations?: number;
  readonly startTimeoutMs?: number;
  /** Extra node flags for the receiver process (e.g. `--cpu-prof`, which NODE_OPTIONS refuses). */
  readonly execArgv?: readonly string[];
  /** The script to run instead of the receiver (tests of the start-up protocol); it gets the same arguments. */
  readonly entry?: string;
}

/** Signals on which the receiver child is ended with its parent (Ctrl-C, kill, a closed terminal). */
const PARENT_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Ends the child when this process ends or is interrupted: on exit, and on
 * SIGINT/SIGTERM/SIGHUP — after which, if nothing else listens for that
 * signal, the signal's default action is restored and re-raised, so the
 * parent still dies of it. Returns the function that removes the handlers.
 */
function endWithParent(child: ChildProcess): () => void {
  const onExit = (): void => void child.kill('SIGKILL');
  // Runs first (prepended), so the count of other listeners is taken before any of them removes itself
  // (the dashboard's SIGTERM handler does): with another listener the process is theirs to end.
  const onSignal = (sig: NodeJS.Signals): void => {
    child.kill('SIGKILL');
    const others = process.listenerCount(sig) - 1;
    process.removeListener(sig, onSignal);
    if (others === 0) process.kill(process.pid, sig);
  };
  process.on('exit', onExit);
  for (const sig of PARENT_SIGNALS) process.prependListener(sig, onSignal);
  return () => {
    process.removeListener('exit', onExit);
    for (const sig of PARENT_SIGNALS) process.removeListener(sig, onSignal);
  };
}

/**
 * Starts the receiver process and resolves once it listens. Its start-up is
 * bounded by silence, not by a fixed total: each progress line it prints while
 * building its memory (`preparing`) restarts the `startTimeoutMs` bound
 * (default 20 s), so a large preallocation that keeps progressing is waited
 * for. Failing to start rejects with what happened (exit code and its stderr,
 * or how far it got before it went silent). The child ends with this process.
 */
export function spawnReceiver(o: SpawnReceiverOptions = {}): Promise<SpawnedReceiver> {
  const host = o.host ?? '127.0.0.1';
  const silenceMs = o.startTimeoutMs ?? 20_000;
  const args = [...(o.execArgv ?? []), ...LOADER_ARGS, o.entry ?? RECEIVER_ENTRY, '--listen', `${host}:0`, '--json'];
  if (o.tlsCert) args.push('--tls-cert', o.tlsCert, '--tls-key', o.tlsKey!);
  if (o.token !== undefined) args.push('--token', o.token);
  if (o.once) args.push('--once');
  if (o.preallocMiB) args.push('--prealloc-mib', String(o.preallocMiB));
  if (o.ioTimeoutMs !== undefined) args.push('--io-timeout', String(o.ioTimeoutMs / 1000));
  if (o.migrations !== undefined) args.push('--migrations', String(o.migrations));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const release = endWithParent(child);
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; result: Record<string, unknown> | undefined; stderr: string }>((resolve) => {
    child.on('close', (code) => {
      release();
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
    let started = false;
    let scanned = 0;
    let progress = '';
    let timer: NodeJS.Timeout | undefined;
    const fail = (why: string): void => {
      clearTimeout(timer);
      if (started) return;
      started = true;
      child.kill('SIGKILL');
      const detail = stderr.trim().split('\n').filter(Boolean).pop();
      reject(new Error(`the receiver process did not start: ${why}${detail ? ` (its last message: ${detail.replace(/^receiver: /, '')})` : ''}`));
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(
        () => fail(progress === '' ? `it printed nothing for ${silenceMs / 1000} s` : `no progress for ${silenceMs / 1000} s after building ${progress} of its memory`),
        silenceMs,
      );
    };
    arm();
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (started) return;
      for (let nl = stdout.indexOf('\n', scanned); nl >= 0; nl = stdout.indexOf('\n', scanned)) {
        const line = stdout.slice(scanned, nl);
        scanned = nl + 1;
        let ev: { event?: string; host?: string; port?: number; pages_done?: number; pages?: number };
        try {
          ev = JSON.parse(line) as typeof ev;
        } catch {
          continue;
        }
        if (ev.event === 'preparing') {
          progress = `${Math.round((ev.pages_done! * 4096) / 1048576)} MiB of ${Math.round((ev.pages! * 4096) / 1048576)} MiB`;
          arm();
        } else if (ev.event === 'listening') {
          clearTimeout(timer);
          started = true;
          const reap = async (graceMs: number): Promise<void> => {
            let t: NodeJS.Timeout | undefined;
            const exited = await Promise.race([done, new Promise<null>((res) => (t = setTimeout(() => res(null), graceMs)))]);
            clearTimeout(t);
            if (exited === null) child.kill();
          };
          resolve({ host: ev.host!, port: ev.port!, child, done, kill: () => child.kill(), reap });
          return;
        }
      }
    });
    child.on('error', (e) => fail(e.message));
    child.on('close', (code, signal) => fail(`it exited (${signal ?? `code ${code}`}) before listening`));
  });
}
