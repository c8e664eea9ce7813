import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { AccessBatch, AccessKind } from '../core/workload/access-batch.ts';
import { LackeyReader, TraceParseError, TraceReadError } from './lackey-reader.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SHARED_TRACE = resolve(REPO_ROOT, '../shared/traces/sort-2m.lackey.gz');

interface Rec {
  kind: number;
  addr: number;
  size: number;
  line: number;
}

async function readAll(reader: LackeyReader, capacity = 4096): Promise<Rec[]> {
  const batch = new AccessBatch(capacity);
  const out: Rec[] = [];
  while (await reader.fill(batch)) {
    assert.ok(batch.length > 0);
    for (let i = 0; i < batch.length; i++) {
      out.push({ kind: batch.kind[i]!, addr: batch.addr[i]!, size: batch.size[i]!, line: batch.line[i]! });
    }
  }
  return out;
}

const SAMPLE = [
  '==8541== Lackey, an example Valgrind tool',
  '==8541== Command: sort -n nums.txt',
  '==8541== ',
  'I  0401ab70,3',
  ' S 1fff000758,8',
  '',
  ' L 04A8CB6B,1',
  ' M 0000000004a8cb6c,4',
  'I  ffffffffff600000,16',
  ' L 7ff000ff8,255',
  '==8541== ',
  '==8541== Counted 1 call',
].join('\n') + '\n';

const SAMPLE_RECORDS: Rec[] = [
  { kind: AccessKind.Fetch, addr: 0x0401ab70, size: 3, line: 4 },
  { kind: AccessKind.Store, addr: 0x1fff000758, size: 8, line: 5 },
  { kind: AccessKind.Load, addr: 0x04a8cb6b, size: 1, line: 7 },
  { kind: AccessKind.Modify, addr: 0x04a8cb6c, size: 4, line: 8 },
  { kind: AccessKind.Fetch, addr: 0xffffff600000, size: 16, line: 9 },
  { kind: AccessKind.Load, addr: 0x7ff000ff8, size: 255, line: 10 },
];

describe('LackeyReader', () => {
  let dir = '';
  const fixture = (name: string, content: string | Uint8Array): string => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'memvisor-lackey-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads I/L/S/M records, skips == and blank lines, keeps line numbers', async () => {
    const reader = new LackeyReader(fixture('sample.lackey', SAMPLE));
    assert.deepEqual(await readAll(reader), SAMPLE_RECORDS);
    assert.equal(reader.records, 6);
    assert.equal(reader.lines, 12);
    assert.equal(reader.compressed, false);
    assert.equal(reader.name, `trace ${join(dir, 'sample.lackey')}`);
    // At the end it stays ended.
    assert.equal(await reader.fill(new AccessBatch(4)), false);
  });

  it('detects gzip by its magic, not its name', async () => {
    const gz = gzipSync(SAMPLE);
    const a = new LackeyReader(fixture('sample-no-suffix', gz));
    assert.deepEqual(await readAll(a), SAMPLE_RECORDS);
    assert.equal(a.compressed, true);
    const b = new LackeyReader(fixture('plain-named.gz', SAMPLE));
    assert.deepEqual(await readAll(b), SAMPLE_RECORDS);
    assert.equal(b.compressed, false);
  });

  it('tolerates CRLF and a last line without a newline', async () => {
    const crlf = SAMPLE.replace(/\n/g, '\r\n').replace(/\r\n$/, '');
    assert.deepEqual(await readAll(new LackeyReader(fixture('crlf.lackey', crlf))), SAMPLE_RECORDS);
    assert.deepEqual(await readAll(new LackeyReader(fixture('crlf.lackey.gz', gzipSync(crlf)))), SAMPLE_RECORDS);
  });

  it('gives the same records whatever the chunk and batch sizes', async () => {
    const lines: string[] = ['==1== header'];
    const kinds = ['I  ', ' L ', ' S ', ' M '];
    for (let i = 0; i < 3000; i++) {
      if (i % 97 === 0) lines.push('');
      if (i % 211 === 0) lines.push('==1== ' + 'x'.repeat(i % 300));
      lines.push(`${kinds[i % 4]}${(0x400000 + i * 13).toString(16).padStart(8, '0')},${1 << i % 6}`);
    }
    const text = lines.join('\n') + '\n';
    const path = fixture('many.lackey', text);
    const reference = await readAll(new LackeyReader(path));
    assert.equal(reference.length, 3000);
    // Both ways of getting the bytes: read here, and on the worker thread (trace-bytes-thread.ts), plain and gzip.
    const gzPath = fixture('many.lackey.gz', gzipSync(text));
    for (const thread of [false, true]) {
      for (const [chunkBytes, capacity] of [[1, 1], [7, 3], [13, 4096], [64, 17], [4096, 100]] as const) {
        assert.deepEqual(await readAll(new LackeyReader(path, { chunkBytes, thread }), capacity), reference, `chunk ${chunkBytes}, batch ${capacity}, thread ${thread}`);
      }
      assert.deepEqual(await readAll(new LackeyReader(gzPath, { chunkBytes: 1000, thread }), 333), reference, `gzip, thread ${thread}`);
    }
    // Streams that yield odd-sized pieces, plain and gzip (stdin-like input).
    for (const bytes of [Buffer.from(text), gzipSync(text)]) {
      const pieces: Buffer[] = [];
      for (let i = 0, step = 1; i < bytes.length; i += step, step = (step * 7) % 61 + 1) pieces.push(bytes.subarray(i, i + step));
      const reader = new LackeyReader('-', { input: Readable.from(pieces) });
      assert.equal(reader.file, '<stdin>');
      assert.deepEqual(await readAll(reader, 500), reference);
    }
  });

  it('rejects a malformed line with file, line number and the text', async () => {
    const good = Array.from({ length: 16 }, (_, i) => (i < 3 ? `==7== note ${i}` : `I  0401ab${(0x70 + i).toString(16)},3`));
    const path = fixture('sort.lackey', [...good, 'X 0401ab70,3', 'I  0401ab70,3'].join('\n') + '\n');
    const reader = new LackeyReader(path, { displayName: 'sort.lackey' });
    const batch = new AccessBatch(4096);
    // Records before the bad line are delivered first...
    assert.equal(await reader.fill(batch), true);
    assert.equal(batch.length, 13);
    assert.equal(batch.line[12], 16);
    // ...then the error.
    await assert.rejects(reader.fill(batch), (e: unknown) => {
      assert.ok(e instanceof TraceParseError);
      assert.equal(e.file, 'sort.lackey');
      assert.equal(e.line, 17);
      assert.equal(e.message, "sort.lackey:17: expected 'I', 'L', 'S' or 'M' record, got 'X 0401ab70,3'");
      return true;
    });
    assert.equal(await reader.fill(batch), false);
  });

  it('names each kind of malformation', async () => {
    const cases: [string, RegExp][] = [
      ['I  0401zz70,3', /:2: expected a hexadecimal address and a comma, got 'I  0401zz70,3'$/],
      [' L 0401ab70;3', /:2: expected a hexadecimal address and a comma/],
      [' S ,8', /:2: expected a hexadecimal address and a comma/],
      [' S 0401ab70,0', /:2: expected a decimal size 1\.\.255 after the comma, got ' S 0401ab70,0'$/],
      [' S 0401ab70,256', /:2: expected a decimal size 1\.\.255/],
      [' S 0401ab70,', /:2: expected a decimal size/],
      [' M 0401ab70,4 extra', /:2: unexpected text after the size, got ' M 0401ab70,4 extra'$/],
      [' M 10000000000000000,4', /:2: address has more than 16 hex digits/],
      ['I0401ab70,3', /:2: expected 'I', 'L', 'S' or 'M' record/],
      ['I', /:2: expected an address after the record type \(a truncated line\?\), got 'I'$/],
      [' = x', /:2: expected 'I', 'L', 'S' or 'M' record/],
      ['\x00\x01binary' + 'y'.repeat(100), /:2: binary data, not a lackey trace \(expected text lines such as ' L 04222cac,4'/],
      ['\x7fELF\x02\x01\x01\x00\x00\x00', /:2: binary data, not a lackey trace/],
      ['X caf\xe9,1', /:2: expected 'I', 'L', 'S' or 'M' record, got 'X caf\\xc3\\xa9,1'$/], // UTF-8 é: quoted, still text
    ];
    for (const [bad, re] of cases) {
      const reader = new LackeyReader(fixture('bad.lackey', `I  0401ab70,3\n${bad}\nI  0401ab70,3\n`), { displayName: 'bad.lackey' });
      await assert.rejects(readAll(reader), (e: unknown) => e instanceof TraceParseError && e.line === 2 && re.test(e.message), bad);
    }
  });

  for (const thread of [false, true]) it(`reports a truncated or corrupt gzip, and a missing file, as TraceReadError (bytes read ${thread ? 'on a worker thread' : 'here'})`, async () => {
    const lines = Array.from({ length: 20_000 }, (_, i) => ` S ${(0x1000 + i * 8).toString(16)},8`).join('\n') + '\n';
    const gz = gzipSync(lines);
    const truncated = new LackeyReader(fixture('cut.lackey.gz', gz.subarray(0, gz.length >> 1)), { displayName: 'cut.lackey.gz', thread });
    let got = 0;
    await assert.rejects(
      (async () => {
        const batch = new AccessBatch(1024);
        while (await truncated.fill(batch)) got += batch.length;
      })(),
      (e: unknown) =>
        e instanceof TraceReadError && e.reason === 'truncated-gzip' && /^cut\.lackey\.gz:\d+: gzip stream is truncated/.test(e.message),
    );
    assert.ok(got > 0 && got < 20_000, `records before the cut: ${got}`);

    const corrupt = Buffer.from(gz);
    corrupt.writeUInt32LE((corrupt.readUInt32LE(corrupt.length - 8) ^ 0xffff) >>> 0, corrupt.length - 8); // CRC32 trailer
    await assert.rejects(readAll(new LackeyReader(fixture('crc.lackey.gz', corrupt), { thread })), (e: unknown) => e instanceof TraceReadError && e.reason === 'corrupt-gzip');

    await assert.rejects(
      readAll(new LackeyReader(join(dir, 'nope.lackey'), { thread })),
      (e: unknown) => e instanceof TraceReadError && e.reason === 'open' && e.message.includes('nope.lackey') && e.message.includes('ENOENT'),
    );
  });

  it('reads an empty file as no records', async () => {
    assert.deepEqual(await readAll(new LackeyReader(fixture('empty.lackey', ''))), []);
    assert.deepEqual(await readAll(new LackeyReader(fixture('header-only.lackey', '==1== hi\n==1== '))), []);
    assert.deepEqual(await readAll(new LackeyReader(fixture('one-byte.lackey', '\n'))), []);
  });

  it('reads ../shared/traces/sort-2m.lackey.gz: 2,000,000 records', async (t) => {
    if (!existsSync(SHARED_TRACE)) {
      t.skip(`${SHARED_TRACE} not present`);
      return;
    }
    const reader = new LackeyReader(SHARED_TRACE);
    const batch = new AccessBatch(4096);
    const kinds = [0, 0, 0, 0];
    const written = new Set<number>();
    let lastLine = 0;
    while (await reader.fill(batch)) {
      for (let i = 0; i < batch.length; i++) {
        const k = batch.kind[i]!;
        kinds[k]!++;
        assert.ok(batch.line[i]! > lastLine);
        lastLine = batch.line[i]!;
        if (k === AccessKind.Store || k === AccessKind.Modify) {
          const a = batch.addr[i]!;
          written.add(Math.floor(a / 4096));
          written.add(Math.floor((a + batch.size[i]! - 1) / 4096)); // a store spanning pages dirties both
        }
      }
    }
    assert.equal(reader.compressed, true);
    assert.equal(reader.records, 2_000_000);
    assert.equal(reader.lines, 2_000_006); // 6 header lines
    assert.deepEqual(kinds, [1_479_972, 332_124, 184_061, 3_843]); // I, L, S, M
    assert.equal(written.size, 64); // as the README says
    assert.equal(readFileSync(SHARED_TRACE).subarray(0, 2).toString('hex'), '1f8b');
  });
});
