/**
 * Network namespaces for the fault tests: each test makes its own (a unique
 * name per process and call, so test files running in parallel never share
 * one), brings its loopback up, runs processes inside it with `ip netns exec`,
 * and changes the link with nftables (a partition: packets dropped, no reset)
 * or tc (a tbf rate limit). `destroy()` removes the namespace, and with it
 * every nft table, qdisc and socket in it; it is safe to call twice and is
 * also run at process exit, so a failing test leaves nothing behind.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';

let serial = 0;
const live = new Set<string>();
process.on('exit', () => {
  for (const name of live) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
});

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Why namespace tests cannot run here (undefined: they can). `needs` lists
 * the tools the test uses beyond `ip` (e.g. 'nft', 'tc').
 */
export function netnsUnavailable(needs: readonly string[] = []): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  for (const t of ['ip', ...needs]) if (!has(t)) return `${t} is not installed (apt-get install ${t === 'nft' ? 'nftables' : 'iproute2'})`;
  const probe = `mvprobe${process.pid}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.status !== 0) return `cannot create a network namespace: ${(r.stderr || '').trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return undefined;
}

export class Netns {
  readonly name: string;
  private readonly table: string;
  private gone = false;

  constructor(tag: string) {
    this.name = `mv${tag}${process.pid}x${serial++}`;
    this.table = `mvpart${process.pid}`;
    execFileSync('ip', ['netns', 'add', this.name]);
    live.add(this.name);
    this.run('ip', 'link', 'set', 'lo', 'up');
  }

  /** Runs a command inside the namespace to completion (throws on failure). */
  run(cmd: string, ...args: string[]): string {
    return execFileSync('ip', ['netns', 'exec', this.name, cmd, ...args], { encoding: 'utf8', input: '' });
  }

  /** Starts a process inside the namespace; its pid is the program's own (ip execs it). */
  spawn(cmd: string, args: readonly string[]): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /**
   * A partition of TCP port `port` in both directions: every packet to or
   * from it is dropped where it would be delivered (the input hook: on
   * loopback each packet passes it once, at the receiving end). Nothing is
   * sent back, no reset, no ICMP: the sockets see silence. (Dropping in the
   * output hook instead would fail the sender's own send with EPERM — not
   * what a broken switch does.)
   */
  partition(port: number): void {
    const rules = `table inet ${this.table} {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport ${port} drop
    tcp sport ${port} drop
  }
}
`;
    execFileSync('ip', ['netns', 'exec', this.name, 'nft', '-f', '-'], { input: rules });
  }

  heal(): void {
    this.run('nft', 'delete', 'table', 'inet', this.table);
  }

  destroy(): void {
    if (this.gone) return;
    this.gone = true;
    live.delete(this.name);
    spawnSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
  }
}
