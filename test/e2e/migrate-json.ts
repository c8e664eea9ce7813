/**
 * `memvisor migrate --json` run as a separate process from the sources
 * (cli-entry), its one JSON object parsed; killed after `timeoutMs`.
 */
import { spawn } from 'node:child_process';
import { CLI, ROOT } from './cli-entry.ts';

export interface MigrateJson {
  policy: string;
  clock: string;
  rounds: { round: number; pages_sent: number; dirty: number; pending: number; bytes: number; duration_ms: number; zero: number; skipped_redirtied: number; bitmap_syncs: number; stop_and_copy: boolean }[];
  bitmap_syncs: number;
  zero_pages: number;
  bandwidth_mib_s: number | null;
  downtime_ms: number;
  total_ms: number;
  pages_sent: number;
  bytes_sent: number;
  source_digest: string;
  dest_digest: string;
  verified: boolean;
}

export function migrate(args: string[], cwd = ROOT, timeoutMs = 90_000): Promise<MigrateJson> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [...CLI, 'migrate', '--json', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) return fail(new Error(`migrate ${args.join(' ')} exited ${code}: ${err}`));
      try {
        ok(JSON.parse(out) as MigrateJson);
      } catch (e) {
        fail(new Error(`bad JSON from migrate ${args.join(' ')}: ${out}\n${err}`));
      }
    });
  });
}
