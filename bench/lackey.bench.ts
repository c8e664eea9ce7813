/**
 * Lackey reader throughput: records per second on plain text and gzip,
 * against a raw loop that only counts newlines in the same bytes read the
 * same way (fs stream, same chunk size) — the ratio is the parser's cost
 * over the floor of touching every byte once.
 *
 * Input: ../shared/traces/sort-2m.lackey.gz (relative to the repo root),
 * decompressed once into a temp file; if absent, a synthetic trace of the
 * same shape. Run: node --import tsx bench/lackey.bench.ts
 */
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { LackeyReader } from '../src/adapters/lackey-reader.ts';
import { AccessBatch } from '../src/core/workload/access-batch.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SHARED_TRACE = resolve(REPO_ROOT, '../shared/traces/sort-2m.lackey.gz');
const CHUNK = 256 * 1024;
const RUNS = 5;

function syntheticTrace(records: number): Buffer {
  const kinds = ['I  ', ' L ', ' S ', ' M '];
  const parts: string[] = ['==1== synthetic lackey trace'];
  let x = 12345;
  for (let i = 0; i < records; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    parts.push(`${kinds[x % 7 < 5 ? 0 : (x >>> 8) % 4]}${(0x4000000 + (x >>> 6)).toString(16).padStart(8, '0')},${1 << (x >>> 29) % 4}`);
  }
  return Buffer.from(parts.join('\n') + '\n');
}

async function readerRun(path: string): Promise<number> {
  const reader = new LackeyReader(path, { chunkBytes: CHUNK });
  const batch = new AccessBatch(4096);
  let records = 0;
  while (await reader.fill(batch)) records += batch.length;
  return records;
}

async function newlineRun(path: string): Promise<number> {
  let lines = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) {
    const b = chunk as Buffer;
    for (let i = 0; i < b.length; i++) if (b[i] === 10) lines++;
  }
  return lines;
}

async function best(label: string, fn: () => Promise<number>): Promise<{ ms: number; count: number }> {
  let ms = Infinity;
  let count = 0;
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    count = await fn();
    ms = Math.min(ms, performance.now() - t0);
  }
  console.log(`${label.padEnd(34)} ${ms.toFixed(1).padStart(8)} ms  ${count.toLocaleString('en-US').padStart(10)}`);
  return { ms, count };
}

const dir = mkdtempSync(join(tmpdir(), 'memvisor-bench-'));
try {
  const fromShared = existsSync(SHARED_TRACE);
  const plainBytes = fromShared ? gunzipSync(readFileSync(SHARED_TRACE)) : syntheticTrace(2_000_000);
  const plain = join(dir, 'trace.lackey');
  const gz = join(dir, 'trace.lackey.gz');
  writeFileSync(plain, plainBytes);
  writeFileSync(gz, fromShared ? readFileSync(SHARED_TRACE) : gzipSync(plainBytes));
  const mb = statSync(plain).size / 1e6;
  console.log(`input: ${fromShared ? SHARED_TRACE : 'synthetic trace'} (${mb.toFixed(1)} MB plain), best of ${RUNS}`);

  const raw = await best('raw newline count (plain)', () => newlineRun(plain));
  const parsed = await best('LackeyReader (plain)', () => readerRun(plain));
  const zipped = await best('LackeyReader (gzip)', () => readerRun(gz));

  const rate = (n: number, ms: number): string => `${((n / ms) * 1e3 / 1e6).toFixed(1)} M records/s`;
  console.log('');
  console.log(`plain: ${rate(parsed.count, parsed.ms)}, ${(mb / (parsed.ms / 1e3)).toFixed(0)} MB/s`);
  console.log(`gzip:  ${rate(zipped.count, zipped.ms)}`);
  console.log(`raw newline loop: ${rate(raw.count, raw.ms).replace("records", "lines")}, ${(mb / (raw.ms / 1e3)).toFixed(0)} MB/s`);
  console.log(`reader / raw newline loop time ratio: ${(parsed.ms / raw.ms).toFixed(2)}×`);
  const target = 5e6;
  const got = (parsed.count / parsed.ms) * 1e3;
  console.log(got >= target ? `OK: ≥ 5 M records/s on plain text` : `BELOW TARGET: < 5 M records/s on plain text`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
