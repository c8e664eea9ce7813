/**
 * scripts/slurm-sweep.sh against a real single-node Slurm (Debian's
 * slurm-wlm and munge): the test writes a minimal slurm.conf into a temp
 * directory, starts munged, slurmctld and slurmd on localhost (their own
 * socket, ports, spool and state dirs: nothing system-wide is touched),
 * submits a 4-task array over an 8-point grid with the script, waits for the
 * dependent merge job, and checks the merged files equal a local run's.
 * Skips, saying why, where Slurm or munge is not installed or the test does
 * not run as root (slurmd must). Bounded in time; every daemon it started is
 * stopped by pid.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/memvisor.js');
const SCRIPT = join(ROOT, 'scripts/slurm-sweep.sh');

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim() !== '') return r.stdout.trim();
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin']) if (existsSync(join(dir, cmd))) return join(dir, cmd);
  return null;
}

function skipReason(): string | false {
  const missing = ['sbatch', 'squeue', 'sinfo', 'slurmctld', 'slurmd', 'munged'].filter((c) => which(c) === null);
  if (missing.length > 0) return `Slurm not installed (missing ${missing.join(', ')}; apt-get install slurm-wlm munge)`;
  if (process.getuid?.() !== 0) return 'slurmd must run as root, and this test does not';
  return false;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function until(what: string, timeoutMs: number, check: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const skip = skipReason();

describe('scripts/slurm-sweep.sh on a single-node Slurm', { skip, timeout: 420_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'memvisor-slurm-'));
  chmodSync(dir, 0o755);
  const daemons: ChildProcess[] = [];
  let mungePid: number | undefined;
  const conf = join(dir, 'slurm.conf');
  const env = { ...process.env, SLURM_CONF: conf, MEMVISOR_DEBUG: '' };

  after(async () => {
    await Promise.all(daemons.map((d) => new Promise<void>((res) => {
      if (d.exitCode !== null || d.signalCode !== null) return res();
      const t = setTimeout(() => { d.kill('SIGKILL'); res(); }, 10_000);
      d.once('exit', () => { clearTimeout(t); res(); });
      d.kill('SIGTERM');
    })));
    if (mungePid !== undefined) {
      try {
        process.kill(mungePid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  });

  it('a 4-task array over an 8-point grid, merged by the dependent job, equals a local run', async () => {
    // munge: its own key and socket (munged refuses group/world-writable dirs, and root without --force).
    const mungeDir = join(dir, 'munge');
    mkdirSync(mungeDir, { mode: 0o700 });
    writeFileSync(join(mungeDir, 'munge.key'), randomBytes(1024), { mode: 0o600 });
    const socket = join(mungeDir, 'munge.socket');
    const m = spawnSync(which('munged')!, ['--force', `--socket=${socket}`, `--key-file=${join(mungeDir, 'munge.key')}`, `--log-file=${join(mungeDir, 'log')}`, `--pid-file=${join(mungeDir, 'pid')}`, `--seed-file=${join(mungeDir, 'seed')}`], { encoding: 'utf8' });
    assert.equal(m.status, 0, `munged: ${m.stderr}`);
    mungePid = Number(readFileSync(join(mungeDir, 'pid'), 'utf8').trim());

    const [ctldPort, dPort] = [await freePort(), await freePort()];
    for (const d of ['state', 'spool']) mkdirSync(join(dir, d));
    writeFileSync(conf, [
      'ClusterName=memvisortest',
      'SlurmctldHost=localhost(127.0.0.1)',
      'AuthType=auth/munge',
      `AuthInfo=socket=${socket}`,
      'CredType=cred/munge',
      'SlurmUser=root',
      'SlurmdUser=root',
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${dPort}`,
      `StateSaveLocation=${join(dir, 'state')}`,
      `SlurmdSpoolDir=${join(dir, 'spool')}`,
      `SlurmctldPidFile=${join(dir, 'slurmctld.pid')}`,
      `SlurmdPidFile=${join(dir, 'slurmd.pid')}`,
      `SlurmctldLogFile=${join(dir, 'slurmctld.log')}`,
      `SlurmdLogFile=${join(dir, 'slurmd.log')}`,
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      'SchedulerType=sched/builtin',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_CPU',
      'MpiDefault=none',
      'ReturnToService=2',
      'SlurmctldTimeout=30',
      'SlurmdTimeout=30',
      `NodeName=memvisor-node NodeHostname=${hostname()} NodeAddr=127.0.0.1 CPUs=${cpus().length} State=UNKNOWN`,
      'PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP',
      '',
    ].join('\n'));
    const ctld = spawn(which('slurmctld')!, ['-D', '-i', '-f', conf], { env, stdio: 'ignore' });
    daemons.push(ctld);
    const slurmd = spawn(which('slurmd')!, ['-D', '-f', conf, '-N', 'memvisor-node'], { env, stdio: 'ignore' });
    daemons.push(slurmd);
    const logs = (): string => ['slurmctld.log', 'slurmd.log'].map((f) => (existsSync(join(dir, f)) ? `${f}:\n${readFileSync(join(dir, f), 'utf8').slice(-1500)}` : '')).join('\n');
    try {
      await until('the node to be idle', 90_000, () => /idle/.test(spawnSync('sinfo', ['-h', '-o', '%T'], { env, encoding: 'utf8' }).stdout));
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${logs()}`);
    }

    const grid = join(dir, 'grid.json');
    writeFileSync(grid, JSON.stringify({ command: 'trace', base: { workload: 'uniform', count: 3000, mem: '16M' }, vary: { mode: ['ept-wp', 'kvm-ring'], 'clean-every': [500, 1500] }, seeds: [3, 4] }));
    const out = join(dir, 'out');
    const sub = spawnSync('bash', [SCRIPT, grid, out, '4', `--output=${join(dir, 'job-%A_%a.out')}`], { env, encoding: 'utf8', cwd: dir });
    assert.equal(sub.status, 0, sub.stderr);
    assert.match(sub.stdout, /submitted array job \d+ \(4 tasks\) and merge job \d+/);
    const merge = /merge job (\d+)/.exec(sub.stdout)![1]!;
    try {
      await until('the merge job to finish', 240_000, () => spawnSync('squeue', ['-h', '-j', merge], { env, encoding: 'utf8' }).stdout.trim() === '' && existsSync(join(out, 'report.html')));
    } catch (e) {
      const jobOut = spawnSync('sh', ['-c', `cat ${dir}/job-*.out 2>/dev/null | tail -40`], { encoding: 'utf8' }).stdout;
      throw new Error(`${(e as Error).message}\njobs:\n${jobOut}\n${logs()}`);
    }
    for (let k = 0; k < 4; k++) assert.ok(existsSync(join(out, `shard-${k}`, 'results.jsonl')), `shard ${k} ran`);

    const local = spawnSync(process.execPath, [BIN, 'sweep', grid, '--out', join(dir, 'local'), '--json'], { env, encoding: 'utf8', timeout: 120_000 });
    assert.equal(local.status, 0, local.stderr);
    assert.equal(readFileSync(join(out, 'results.csv'), 'utf8'), readFileSync(join(dir, 'local', 'results.csv'), 'utf8'));
    assert.equal(readFileSync(join(out, 'results.jsonl'), 'utf8'), readFileSync(join(dir, 'local', 'results.jsonl'), 'utf8'));
    assert.equal(readFileSync(join(out, 'results.csv'), 'utf8').trim().split('\n').length, 1 + 8);
  });
});
