/**
 * The memvisor command line. Each command parses its flags once (options.ts)
 * and runs the engine; errors end as one line on stderr (errors.ts).
 */
import { Command, Option } from 'commander';
import { reportAndExit } from './errors.ts';

// A reader that stops early (`| head`) closes the pipe: that ends the command quietly, as in any Unix tool.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    reportAndExit(e);
  });
}

const program = new Command();
program
  .name('memvisor')
  .description('Hypervisor memory virtualization and live migration: EPT/NPT/ARM stage-2, walker, TLB, VM exits, log-dirty, migration over TCP.')
  // Commander's own parse errors (unknown command or option, missing
  // argument) end like every other error: one `memvisor: ...` line.
  .configureOutput({ outputError: (str, write) => write(`memvisor: ${commanderErrorLine(str)}\n`) });

/** `error: unknown option '--x'\n(Did you mean --y?)\n` as one line, with the usage hint. */
function commanderErrorLine(str: string): string {
  const parts = str.replace(/^error: /, '').split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return `${parts.join(' ')} (run with --help for usage)`;
}

const modeHelp = "dirty-tracking mode: ept-wp, ept-pml, npt-wp, arm-wp, kvm-bitmap, kvm-ring, shadow, or a --plugin's";

/** --plugin is repeatable: each occurrence adds a file. */
const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Options shared by trace and compare, and (kind 'migrate') those of them migrate takes: it has no rounds of its own to count. */
function traceLikeOptions(c: Command, kind: 'trace' | 'migrate' = 'trace'): Command {
  c.option('--plugin <file>', 'load a module that registers dirty-tracking modes or stop policies (repeatable)', collect, []);
  if (kind === 'trace') {
    c.option('--clean-every <n>', 'records per log-dirty round (CLEAN after each)', undefined)
      .option('--addressing <how>', 'identity (trace address = gpa) or paged (guest OS page tables: the guest shadow mode shadows); default identity')
      .option('--count <n>', 'accesses a synthetic workload makes')
      .option('--mem <size>', 'guest memory (default 1T for traces, sparse; 1G for workloads)');
  } else {
    c.option('--mem <size>', 'guest memory, populated and filled up front (default 1G; 64M with --trace, whose addresses a guest OS maps: paged addressing)');
  }
  return c
    .option('--vcpus <n>', 'vCPUs (records are interleaved in quanta)')
    .option('--page-size <size>', 'guest RAM mapped with 4k or 2m pages')
    .option('--workload <name>', 'synthetic workload instead of a trace: uniform, hotspot, zipf, sequential, read-mostly')
    .option('--seed <n>', 'seed for synthetic workloads')
    .option('--pml-flush <when>', 'ept-pml: on-demand (Xen) or every-exit')
    .option('--arm-dirty-set <how>', 'arm-wp: bitmap or list')
    .option('--kvm-pml <on|off>', 'kvm-bitmap, kvm-ring: KVM with Intel PML (on, the default, as KVM runs on Intel) or without (off: write protection, as kvm_intel.pml=0 or AMD)')
    .option('--kvm-manual-protect', "kvm-bitmap: GET, then CLEAR chunk by chunk as QEMU does (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)")
    .option('--kvm-initially-set', 'kvm-bitmap: manual protect with the bitmap initially all set')
    .option('--kvm-clear-shift <n>', "kvm-bitmap with manual protect: QEMU's clear chunk, 2^n pages, n in 6..31 (default 18: 1 GiB)")
    .option('--ring-entries <n>', 'kvm-ring: entries per vCPU ring (at least 1024 with PML)')
    .option('--shadow-pool <kind>', "shadow: xen (Xen's pool, pin/LRU recycling) or prealloc (XI-style, backlinks)")
    .option('--shadow-pool-pages <n>', "shadow: pool size in 4 KiB pages (default libxl's; Xen raises it to its minimum)")
    .option('--json', 'print one JSON object')
    .option('--report <file.html>', 'also write a self-contained HTML report (charts per round, or per mode for compare)');
}

program
  .command('run')
  .description('run a workload or trace with no dirty tracking and print MMU statistics')
  .option('--trace <file>', 'Valgrind lackey trace (plain or gzip, or - for stdin)')
  .option('--workload <name>', 'uniform, hotspot, zipf, sequential, read-mostly')
  .option('--mode <mode>', `optional ${modeHelp} (one round)`)
  .option('--format <fmt>', 'p2m format when no mode is given: ept, npt, arm')
  .option('--mem <size>', 'guest memory (default 1T for traces, 1G for workloads)')
  .option('--vcpus <n>', 'vCPUs')
  .option('--count <n>', 'accesses a synthetic workload makes (default 1,000,000)')
  .option('--seed <n>', 'seed')
  .option('--addressing <how>', 'identity or paged')
  .option('--page-size <size>', '4k or 2m')
  .option('--json', 'print one JSON object')
  .action(async (opts) => (await import('./commands/run.ts')).runCommand(opts));

traceLikeOptions(
  program
    .command('trace')
    .description('replay a trace under one dirty-tracking mode, CLEAN every N records, print each round')
    .argument('[file]', 'lackey trace (plain or gzip), or - for stdin', '')
    .option('--mode <mode>', modeHelp),
).action(async (file, opts) => (await import('./commands/trace.ts')).traceCommand(file, opts));


traceLikeOptions(
  program
    .command('compare')
    .description('replay the same trace (or workload) under several modes and compare exits, hypervisor cycles and tracking memory')
    .argument('[file]', 'lackey trace (plain or gzip)', '')
    .option('--modes <list>', 'comma-separated modes (default: all)')
    .option('--jobs <n>', 'worker threads running modes in parallel (default: the number of cores)'),
).action(async (file, opts) => (await import('./commands/compare.ts')).compareCommand(file, opts));

traceLikeOptions(
  program
    .command('migrate')
    .description('live-migrate a running guest to a receiver (started on loopback unless --to is given)')
    .option('--trace <file>', 'drive the guest with a lackey trace')
    .option('--mode <mode>', `${modeHelp} (default ept-pml)`)
    .option('--policy <name>', 'stop policy: xen, xen-legacy, qemu, clark, adaptive (default xen)')
    .option('--bandwidth <MiB/s>', "the saver's rate cap: QEMU max-bandwidth (default 128), lifted at switchover; on the other savers a cap on every pass (default none)")
    .option('--link <MiB/s>', 'modelled link capacity under the virtual clock (default 1250, 10 GbE): the speed wherever no cap applies')
    .option('--latency <ms>', 'modelled one-way link latency (virtual clock); default 0.1')
    .option('--dirty-rate <pages/s>', 'pages a workload writes per (virtual) second, default 20000; with --trace, records per second, default 1000000')
    .option('--downtime-limit <ms>', 'qemu and adaptive policies: downtime limit (default 300)')
    .option('--clock <clock>', 'virtual (modelled link, deterministic) or real (wall clock, real socket)')
    .option('--fill <how>', 'random (a guest that has been running; default) or zero (freshly booted); with --wss only the working set holds data')
    .option('--wss <size>', 'working set: the workload writes within the first SIZE of guest memory (default all of it)')
    .option('--skip-unchanged', 'skip dirty pages whose content hash is unchanged since their last send (on by default only for adaptive)')
    .option('--auto-converge', "qemu policy: QEMU's auto-converge — throttle the vCPUs (20%, +10% per step, at most 99%) when a period dirties more than half of what it sent, twice")
    .option('--to <host:port>', 'a receiver already listening (memvisor receive)')
    .option('--tls', 'connect with TLS')
    .option('--tls-ca <file>', 'CA certificate that signed the receiver\'s certificate')
    .option('--insecure', 'with --tls: accept a self-signed receiver certificate without checking it')
    .option('--token <secret>', 'shared token the receiver requires')
    .option('--io-timeout <seconds>', 'end the attempt when the link makes no progress for this long (default 30); the source keeps running'),
  'migrate',
).action(async (opts) => (await import('./commands/migrate.ts')).migrateCommand(opts));

traceLikeOptions(
  program
    .command('dirty-rate')
    .description("estimate a running guest's dirty rate as QEMU's calc-dirty-rate does: sample (hash random pages), ring (count KVM dirty-ring entries), bitmap (count a log-dirty CLEAN)")
    .option('--trace <file>', 'drive the guest with a lackey trace')
    .option('--seconds <s>', 'virtual seconds the guest runs while measured')
    .option('--method <m>', 'sample (default), ring (needs --mode kvm-ring) or bitmap')
    .option('--mode <mode>', `${modeHelp} (default ept-pml; kvm-ring for --method ring)`)
    .option('--dirty-rate <pages/s>', 'pages the workload writes per virtual second (default 20000)')
    .option('--wss <size>', 'working set: the workload writes within the first SIZE')
    .option('--fill <how>', 'random (default) or zero'),
  'migrate',
).action(async (opts) => (await import('./commands/dirty-rate.ts')).dirtyRateCommand(opts));

traceLikeOptions(
  program
    .command('predict')
    .description("predict a migration without running it: measure the dirty rate for a short window, then run the saver's loop on the pre-copy law")
    .option('--trace <file>', 'drive the guest with a lackey trace')
    .option('--mode <mode>', `${modeHelp} (default ept-pml)`)
    .option('--policy <name>', 'stop policy: xen, xen-legacy, qemu, clark, adaptive (default xen)')
    .option('--bandwidth <MiB/s>', "the saver's rate cap (as migrate)")
    .option('--link <MiB/s>', 'modelled link capacity (default 1250)')
    .option('--latency <ms>', 'one-way link latency (default 0.1)')
    .option('--dirty-rate <pages/s>', 'pages the workload writes per virtual second (default 20000)')
    .option('--downtime-limit <ms>', 'qemu: downtime limit (default 300)')
    .option('--clock <clock>', 'accepted for migrate compatibility; the prediction is of the virtual-clock run')
    .option('--fill <how>', 'random (default) or zero')
    .option('--wss <size>', 'working set (as migrate)')
    .option('--skip-unchanged', 'accepted as migrate takes it (not modelled)')
    .option('--auto-converge', 'refused: not modelled')
    .option('--measure-seconds <s>', 'virtual seconds the dirty rate is measured for (default 1)')
    .option('--method <m>', 'dirty-rate method: bitmap (default), sample or ring'),
  'migrate',
).action(async (opts) => (await import('./commands/predict.ts')).predictCommand(opts));

const sweep = program
  .command('sweep')
  .description('run a grid of experiments (GRID.json: command, base flags, varied flags, seeds) on every core; results.csv, results.jsonl, report.html')
  .argument('<grid>', 'grid file: {"command": "migrate"|"trace"|"compare"|"access", "base": {flag: value}, "vary": {flag: [values]}, "seeds": [..]}')
  .option('--jobs <n>', 'points run in parallel on worker threads (default: the number of cores)')
  .option('--shard <k/n>', 'run only the k-th of n deterministic slices of the points (Slurm job arrays: scripts/slurm-sweep.sh)')
  // Not requiredOption: commander would then ask `sweep merge` for it too (sweepCommand checks it).
  .option('--out <dir>', 'output directory (required)')
  .option('--resume', 'skip the points DIR already holds (an interrupted sweep)')
  .option('--json', 'print one JSON object (what ran, where the files are)')
  .action(async (grid, opts) => (await import('./commands/sweep.ts')).sweepCommand(grid, opts, program));
sweep
  .command('merge')
  .description('join the output directories of a sweep\'s shards into the files one run would write')
  .argument('<dirs...>', 'shard output directories')
  .option('--out <dir>', 'output directory (required)')
  .option('--json', 'print one JSON object')
  // commander hands `--out` (and --json) to the parent sweep command, which defines them too.
  .action(async (dirs, opts) => (await import('./commands/sweep.ts')).sweepMergeCommand(dirs, { ...sweep.opts(), ...opts }));

program
  .command('receive')
  .description('receive a migration: listen, apply page batches, verify the final digest')
  .requiredOption('--listen <host:port>', 'address to listen on (port 0 picks one)')
  .option('--tls-cert <file>', 'TLS certificate (with --tls-key)')
  .option('--tls-key <file>', 'TLS private key')
  .option('--token <secret>', 'require this shared token from the sender')
  .option('--once', 'exit after one migration (verified or not)')
  .option('--io-timeout <seconds>', 'drop a connection that sends nothing for this long, or less than 1 KiB/s over that window (default 30)')
  .option('--max-mem <size>', 'refuse a migration of a guest larger than this, before allocating anything (default: this host\'s memory)')
  .option('--prealloc <size>', 'allocate and touch this much destination memory before listening (a guest up to that size then migrates with no page faults in the stream)')
  .option('--json', 'print one JSON object per event')
  .action(async (opts) => (await import('./commands/receive.ts')).receiveCommand(opts));

program
  .command('dashboard')
  .description('local web dashboard: a guest under a dirty-tracking mode, live charts per round, a memory heatmap, live migration')
  .option('--port <n>', 'port on 127.0.0.1 (0 picks one; the URL is the first line printed)', '7070')
  .option('--mode <mode>', `${modeHelp} (default ept-pml)`)
  .option('--workload <name>', 'uniform, hotspot, zipf, sequential, read-mostly (default hotspot)')
  .option('--mem <size>', 'guest memory, up to 4G (default 256M)')
  .option('--vcpus <n>', 'vCPUs')
  .option('--dirty-rate <pages/s>', 'accesses (page writes) per virtual second; default 20000')
  .option('--clean-every <n>', 'accesses per round (default: a quarter of a virtual second)')
  .option('--seed <n>', 'seed')
  .option('--addressing <how>', 'identity (workload address = gpa; default) or paged (a guest OS maps gvas: the walk view shows 2-D walks)')
  .option('--no-start', 'wait for the page to start a run')
  .option('--json', 'print one JSON object {url, mode, workload, dirty_rate, mem_bytes} instead of the URL line')
  .action(async (opts) => (await import('./commands/dashboard.ts')).dashboardCommand(opts));

program
  .command('access')
  .description('run a guest with a xen-access style mem_access listener and print every event in the order raised')
  .option('--mode <mode>', 'write (default rx, then rwx after the first event) or exec (default rw, then rwx)')
  .option('--trace <file>', 'Valgrind lackey trace (plain or gzip, or - for stdin)')
  .option('--workload <name>', 'uniform, hotspot, zipf, sequential, read-mostly')
  .option('--vcpus <n>', 'vCPUs')
  .option('--mem <size>', 'guest memory (default 64M; 1T, sparse, for a trace under identity addressing)')
  .option('--populate <how>', 'up-front (default for workloads) or on-demand (default for traces)')
  .option('--count <n>', 'accesses a synthetic workload makes (default 100,000)')
  .option('--seed <n>', 'seed')
  .option('--addressing <how>', 'identity or paged')
  .option('--dirty-mode <mode>', `${modeHelp}, run under mem_access with log-dirty on`)
  .option('--required', 'access_required: a violation with no listener crashes the domain')
  .option('--json', 'print one JSON object')
  .action(async (opts) => (await import('./commands/access.ts')).accessCommand(opts));

program
  .command('walk')
  .description('run a guest up to record N, then show that record\'s 2-D walk reference by reference: entries decoded, A/D set, caches, the exit')
  .option('--trace <file>', 'Valgrind lackey trace (plain or gzip, or - for stdin)')
  .option('--workload <name>', 'uniform, hotspot, zipf, sequential, read-mostly')
  .option('--record <n>', 'the record whose walk to show (1 = the first I/L/S/M record)')
  .option('--mode <mode>', `optional ${modeHelp}`)
  .option('--format <fmt>', 'p2m format when no mode is given: ept, npt, arm (default ept)')
  .option('--addressing <how>', 'identity (a 1-D walk: trace address = gpa) or paged (guest page tables: the 2-D walk); default identity')
  .option('--page-size <size>', 'guest RAM mapped in the p2m with 4k or 2m pages')
  .option('--vcpus <n>', 'vCPUs running the guest')
  .option('--vcpu <k>', 'the vCPU whose MMU walks (default: the one that runs record N)')
  .option('--cold', 'flush the TLB, nested TLB and PDE cache first (for the explanation only)')
  .option('--mem <size>', 'guest memory (default 1T for traces under identity addressing, else 1G)')
  .option('--clean-every <n>', 'with --mode: records per log-dirty round (CLEAN after each), as trace')
  .option('--count <n>', 'accesses a synthetic workload makes (default: N)')
  .option('--seed <n>', 'seed for synthetic workloads')
  .option('--pml-flush <when>', 'ept-pml: on-demand (Xen) or every-exit')
  .option('--shadow-pool <kind>', "shadow: xen or prealloc")
  .option('--json', 'print one JSON object')
  .action(async (opts) => (await import('./commands/walk.ts')).walkCommand(opts));

program.addOption(new Option('--debug').hideHelp());

// Plugins register their modes and policies before the command reads --mode, --modes or --policy.
program.hook('preAction', async (_program, command) => {
  const files = (command.opts() as { plugin?: string[] }).plugin;
  if (files !== undefined && files.length > 0) await (await import('./plugins.ts')).loadPlugins(files);
});

program.parseAsync(process.argv).catch(reportAndExit);
