/**
 * The worker-thread byte source of the lackey reader: the bytes it hands
 * over, chunk by chunk through the shared ring, are the file's (inflated when
 * gzip), whatever the chunk size and however often the ring wraps; failures
 * arrive with the fields the reader's error typing looks at; closing early
 * stops the worker.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { TraceBytesThread } from './trace-bytes-thread.ts';

const dir = mkdtempSync(join(tmpdir(), 'memvisor-bytes-'));

/** 300 KiB of text whose every line differs, so a lost, repeated or reordered chunk shows. */
const TEXT = Buffer.from(Array.from({ length: 14_000 }, (_, i) => ` S ${(0x10000000 + i * 4093).toString(16)},${1 + (i % 8)}\n`).join(''));

async function drain(t: TraceBytesThread, holdMs = 0): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const r = await t.next();
    if (r.done === true) break;
    // Copy: the view is only valid until the next call.
    parts.push(Buffer.from(r.value));
    if (holdMs > 0 && parts.length % 50 === 0) await new Promise((res) => setTimeout(res, holdMs));
  }
  return Buffer.concat(parts);
}

describe('TraceBytesThread', { timeout: 240_000 }, () => {
  it('hands over the bytes of a plain and of a gzip file, for any chunk size (the ring wraps many times)', async () => {
    const plain = join(dir, 'plain.lackey');
    const gz = join(dir, 'trace.gz');
    writeFileSync(plain, TEXT);
    writeFileSync(gz, gzipSync(TEXT));
    for (const slotBytes of [1000, 4096, 65536, 1 << 20]) {
      const a = new TraceBytesThread(plain, slotBytes);
      assert.ok((await drain(a)).equals(TEXT), `plain, ${slotBytes}-byte chunks`);
      assert.equal(a.compressed, false);
      const b = new TraceBytesThread(gz, slotBytes);
      // A slow reader: the worker fills the ring and must wait for it.
      assert.ok((await drain(b, slotBytes === 1000 ? 1 : 0)).equals(TEXT), `gzip, ${slotBytes}-byte chunks`);
      assert.equal(b.compressed, true);
    }
  });

  it('a file read in one chunk is never lost to the end of input (the worker ends right after publishing it)', async () => {
    const p = join(dir, 'one-chunk.lackey');
    writeFileSync(p, ' S 10000000,8\n');
    for (let i = 0; i < 60; i++) assert.equal((await drain(new TraceBytesThread(p, 4096))).toString(), ' S 10000000,8\n', `read ${i}`);
  });

  it('an empty file ends at once', async () => {
    const p = join(dir, 'empty');
    writeFileSync(p, '');
    assert.equal((await drain(new TraceBytesThread(p, 4096))).length, 0);
  });

  it('a missing file fails with code and syscall, a truncated gzip with zlib\'s error, after the bytes before it', async () => {
    await assert.rejects(drain(new TraceBytesThread(join(dir, 'nope'), 4096)), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.syscall === 'open');
    const cut = join(dir, 'cut.gz');
    const z = gzipSync(TEXT);
    writeFileSync(cut, z.subarray(0, z.length >> 1));
    const t = new TraceBytesThread(cut, 4096);
    let got = 0;
    await assert.rejects(
      (async () => {
        for (;;) {
          const r = await t.next();
          if (r.done === true) return;
          got += r.value.length;
        }
      })(),
      (e: NodeJS.ErrnoException) => e.code === 'Z_BUF_ERROR' || /unexpected end of file/.test(e.message),
    );
    assert.ok(got > 0 && got < TEXT.length, `${got} bytes before the error`);
    assert.ok(TEXT.subarray(0, got).length === got);
  });

  it('close() stops a worker that is waiting on a full ring', async () => {
    const p = join(dir, 'big.lackey');
    writeFileSync(p, TEXT);
    const t = new TraceBytesThread(p, 1000);
    const first = await t.next();
    assert.equal(first.done, false);
    await new Promise((res) => setTimeout(res, 50));
    t.close();
    assert.equal((await t.next()).done, true);
  });
});
