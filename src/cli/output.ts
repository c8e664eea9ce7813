/**
 * Terminal output: tables, progress bars, and plain lines when stderr is not
 * a terminal. Progress goes to stderr so that stdout carries only the result
 * (a table, or one JSON object with --json).
 */
import Table from 'cli-table3';
import cliProgress from 'cli-progress';

/** Renders rows under headers as a boxed table string. */
export function renderTable(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const table = new Table({ head: [...headers], style: { head: [], border: [], compact: true } });
  for (const row of rows) table.push(row.map((c) => (typeof c === 'number' ? formatNumber(c) : c)));
  return table.toString();
}

/** Renders label/value pairs as a boxed two-column table with no header row. */
export function renderKeyValue(rows: readonly (readonly [string, string | number])[]): string {
  const table = new Table({ style: { head: [], border: [], compact: true } });
  for (const [k, v] of rows) table.push([k, typeof v === 'number' ? formatNumber(v) : v]);
  return table.toString();
}

/** A byte count in binary units: 512 MiB, 1 GiB, 23.5 GiB. */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = bytes;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number(v.toFixed(1))} ${units[i]}`;
}

/** Integers with thousands separators; fractions with 3 significant decimals. */
export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  return n.toLocaleString('en-US', { maximumFractionDigits: 3 });
}

/**
 * A progress bar on a TTY; on anything else (pipes, CI) nothing until `line()`,
 * which prints one plain line, so logs stay readable.
 */
export class Progress {
  private bar: cliProgress.SingleBar | null = null;
  private readonly tty: boolean;

  constructor(private readonly enabled: boolean) {
    this.tty = enabled && process.stderr.isTTY === true;
  }

  start(label: string, total: number, payload: Record<string, string | number> = {}): void {
    if (!this.tty) return;
    this.stop();
    this.bar = new cliProgress.SingleBar(
      {
        format: `${label.padEnd(14)} [{bar}] {percentage}% | {value}/{total} {detail}`,
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(total, 0, { detail: '', ...payload });
  }

  update(value: number, detail = ''): void {
    this.bar?.update(value, { detail });
  }

  setTotal(total: number): void {
    this.bar?.setTotal(total);
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }

  /** One plain line when not on a TTY (or always, when `always`). */
  line(text: string, always = false): void {
    if (!this.enabled) return;
    if (!this.tty || always) process.stderr.write(`${text}\n`);
  }
}
