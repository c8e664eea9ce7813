/**
 * A child process as the fault tests watch it: its output collected, a wait
 * for a line on stderr (bounded), its exit with the time it happened, and a
 * kill that is safe to call at any point (used in `finally`).
 */
import type { ChildProcess } from 'node:child_process';

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** performance.now() when the process was seen to exit. */
  readonly atMs: number;
}

export class Proc {
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  private watchers: { re: RegExp; stream: 'stdout' | 'stderr'; ok: (m: RegExpMatchArray) => void }[] = [];
  private done = false;

  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (d: Buffer) => {
      this.stdout += d.toString();
      this.poke();
    });
    child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      this.poke();
    });
    this.exited = new Promise((ok) =>
      child.on('close', (code, signal) => {
        this.done = true;
        ok({ code, signal, atMs: performance.now() });
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  private poke(): void {
    this.watchers = this.watchers.filter((w) => {
      const m = this[w.stream].match(w.re);
      if (m) w.ok(m);
      return !m;
    });
  }

  /** Resolves with the first match of `re` in the stream's text so far or to come; rejects after `timeoutMs` or at exit. */
  waitFor(re: RegExp, timeoutMs: number, stream: 'stdout' | 'stderr' = 'stderr'): Promise<RegExpMatchArray> {
    const now = this[stream].match(re);
    if (now) return Promise.resolve(now);
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`no ${re} on ${stream} within ${timeoutMs} ms; stderr so far:\n${this.stderr}`)), timeoutMs);
      this.watchers.push({ re, stream, ok: (m) => (clearTimeout(timer), ok(m)) });
      void this.exited.then(() => setTimeout(() => (clearTimeout(timer), fail(new Error(`exited before ${re} on ${stream}; stderr:\n${this.stderr}`))), 50));
    });
  }

  /** The exit, or a kill after `timeoutMs` (then the test fails on the signal). */
  async exit(timeoutMs: number): Promise<Exit> {
    const t = setTimeout(() => this.kill(), timeoutMs);
    const e = await this.exited;
    clearTimeout(t);
    return e;
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.done) process.kill(this.pid, sig);
  }

  kill(): void {
    if (this.done) return;
    try {
      process.kill(this.pid, 'SIGCONT');
      process.kill(this.pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
}
