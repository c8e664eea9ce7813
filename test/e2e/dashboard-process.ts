/**
 * Test helper: `memvisor dashboard --port 0 …` as a child process, its URL
 * read from the first stdout line, and an SSE reader over fetch that waits
 * (bounded) for the events a test needs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { CLI, ROOT } from './cli-entry.ts';


export interface DashboardProcess {
  readonly url: string;
  readonly child: ChildProcess;
  stderr(): string;
  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  stop(): Promise<number | null>;
}

export function startDashboardProcess(args: string[], timeoutMs = 20_000): Promise<DashboardProcess> {
  const child = spawn(process.execPath, [...CLI, 'dashboard', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MEMVISOR_DEBUG: '' } });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  const stop = async (): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`dashboard did not print its URL within ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      const had = out.includes('\n');
      out += d.toString();
      if (!had && out.includes('\n')) {
        clearTimeout(timer);
        res({ url: out.split('\n')[0]!, child, stderr: () => err, stop });
      }
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (!out.includes('\n')) rej(new Error(`dashboard exited (${code}) before printing its URL: ${err}`));
    });
  });
}

export interface SseEvent {
  readonly event: string;
  readonly data: any;
}

/**
 * Reads /api/events until `until(events)` is true; rejects after timeoutMs.
 * Returns every event seen.
 */
export async function readEvents(url: string, until: (seen: SseEvent[]) => boolean, timeoutMs: number): Promise<SseEvent[]> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  const seen: SseEvent[] = [];
  try {
    const res = await fetch(new URL('api/events', url), { signal: ac.signal });
    if (res.status !== 200 || !res.headers.get('content-type')?.startsWith('text/event-stream')) throw new Error(`events: HTTP ${res.status}`);
    const dec = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const ev = /^event: (.*)$/m.exec(frame)?.[1];
        const data = /^data: (.*)$/m.exec(frame)?.[1];
        if (ev !== undefined && data !== undefined) seen.push({ event: ev, data: JSON.parse(data) });
      }
      if (until(seen)) return seen;
    }
    throw new Error('event stream ended');
  } catch (e) {
    if (ac.signal.aborted) throw new Error(`timed out after ${timeoutMs} ms waiting for events; saw ${seen.map((s) => s.event).join(', ')}`);
    throw e;
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}

export async function postJson(url: string, path: string, body: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(new URL(path, url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}
