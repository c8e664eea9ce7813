/**
 * Streaming reader of Valgrind lackey traces
 * (`valgrind --tool=lackey --trace-mem=yes --log-file=F prog`), plain or
 * gzip — detected by the gzip magic 1f 8b, not by the file name — from a
 * path or '-' (stdin). The file is never loaded whole: it is read in chunks
 * through node:fs / node:zlib streams and parsed straight from the bytes.
 *
 * Accepted lines (lackey's printf formats, lg_main.c):
 *
 *   I  0401ab70,3        instruction fetch   → AccessKind.Fetch
 *    L 1fff000758,8      load                → AccessKind.Load
 *    S 1fff000750,8      store               → AccessKind.Store
 *    M 04a8cb6b,4        modify (load+store) → AccessKind.Modify
 *   ==8541== ...         Valgrind's own messages: skipped
 *   (blank)              skipped
 *
 * Address: hexadecimal, up to 16 digits; the low 48 bits are kept (x86-64
 * virtual addresses are 48-bit, sign-extended: the vsyscall page
 * ffffffffff600000 becomes ffffff600000). Size: decimal 1..255. CRLF and
 * trailing blanks are tolerated. `line` in the batch is the 1-based line
 * number in the (decompressed) file, '==' lines included, so errors and
 * reports can point at it.
 *
 * Errors: a malformed line throws TraceParseError ("sort.lackey:17: expected
 * 'I', 'L', 'S' or 'M' record, got 'X 0401ab70,3'"); an unreadable file, a
 * truncated or corrupt gzip stream throw TraceReadError. Records read before
 * an error are still delivered: the error is raised by the following fill.
 *
 * Speed: each chunk is cut at its last newline once (a native lastIndexOf),
 * so the per-byte loop never checks bounds or allocates; only a line split
 * across two chunks is copied (into `carry`).
 */
import { createReadStream } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { AccessKind, type AccessBatch, type AccessSource } from '../core/workload/access-batch.ts';
import { TraceBytesThread } from './trace-bytes-thread.ts';

/** A line of the trace that is not a lackey record. */
export class TraceParseError extends Error {
  override readonly name = 'TraceParseError';
  readonly userFacing = true;
  constructor(
    /** The trace as the user named it ('<stdin>' for '-'). */
    readonly file: string,
    /** 1-based line number. */
    readonly line: number,
    /** What was wrong, quoting the line. */
    readonly detail: string,
  ) {
    super(`${file}:${line}: ${detail}`);
  }
}

export type TraceReadFailure = 'open' | 'read' | 'truncated-gzip' | 'corrupt-gzip' | 'line-too-long';

/** The trace's bytes could not be read: missing file, I/O error, bad gzip. */
export class TraceReadError extends Error {
  override readonly name = 'TraceReadError';
  readonly userFacing = true;
  constructor(
    readonly file: string,
    readonly reason: TraceReadFailure,
    /** Lines read completely before the failure. */
    readonly linesRead: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface LackeyReaderOptions {
  /** Name used in messages (default: the path, or '<stdin>' for '-'). */
  readonly displayName?: string;
  /** Read from this stream instead of opening the path (stdin, tests). */
  readonly input?: NodeJS.ReadableStream;
  /** Bytes per read from the file (default 256 KiB). */
  readonly chunkBytes?: number;
  /**
   * Read and inflate a file on a worker thread (trace-bytes-thread.ts), so
   * that it overlaps parsing and the engine on this one. Default: when a
   * core is free (load average below the cores less one) — on a saturated
   * machine the hand-offs between the two threads wait on the scheduler and
   * replay measured 1.6–4× slower than reading here (BENCHMARKS.md). Stdin
   * and `input` streams are always read here.
   */
  readonly thread?: boolean;
}

const NL = 10;
const CR = 13;
const SPACE = 32;
const TAB = 9;
const COMMA = 44;
const EQUALS = 61;
const CH_I = 73;
const CH_L = 76;
const CH_S = 83;
const CH_M = 77;
const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;
/** Hex digits read into a double exactly (48 bits), before folding. */
const FAST_HEX_DIGITS = 12;
const MAX_HEX_DIGITS = 16;
const MAX_SIZE = 255;
/** A "line" longer than this is not a lackey trace (binary input?). */
const MAX_LINE_BYTES = 1 << 20;
const QUOTE_CHARS = 48;

export class LackeyReader implements AccessSource {
  readonly name: string;
  /** The trace as named in messages. */
  readonly file: string;
  /** Records (I/L/S/M lines) delivered so far. */
  records = 0;
  /** True once the input was found to be gzip; null before the first read. */
  compressed: boolean | null = null;

  private readonly path: string;
  private readonly input: NodeJS.ReadableStream | undefined;
  private readonly chunkBytes: number;
  private readonly useThread: boolean;
  private bytesThread: TraceBytesThread | null = null;
  private chunks: AsyncIterator<Buffer> | null = null;
  private streams: NodeJS.ReadableStream[] = [];
  /** Current chunk; [pos, limit) holds complete lines, [limit, end) a partial one. */
  private cur: Buffer | null = null;
  private pos = 0;
  private limit = 0;
  /** A line split across chunks, reassembled. */
  private carry = Buffer.allocUnsafe(256);
  private carryLen = 0;
  /** carry holds one complete line (ending in '\n') waiting to be parsed. */
  private carryReady = false;
  /** Lines consumed so far (the next line is lineNo + 1). */
  private lineNo = 0;
  private eof = false;
  /** An error met after records were already in the batch: thrown next fill. */
  private pendingError: Error | null = null;

  /** @param path a file path, or '-' for stdin. */
  constructor(path: string, opts: LackeyReaderOptions = {}) {
    this.path = path;
    this.file = opts.displayName ?? (path === '-' ? '<stdin>' : path);
    this.name = `trace ${this.file}`;
    this.input = opts.input;
    this.chunkBytes = opts.chunkBytes ?? 256 * 1024;
    this.useThread = opts.thread ?? loadavg()[0]! < availableParallelism() - 1 + 0.5;
  }

  /** Lines consumed so far ('==' and blank lines included). */
  get lines(): number {
    return this.lineNo;
  }

  /**
   * Clears `batch` and fills it with the next records. Resolves to true if
   * the batch holds at least one record, false at the end of the trace.
   * @throws TraceParseError, TraceReadError
   */
  async fill(batch: AccessBatch): Promise<boolean> {
    batch.length = 0;
    if (this.pendingError !== null) {
      const err = this.pendingError;
      this.pendingError = null;
      throw err;
    }
    for (;;) {
      if (batch.length === batch.capacity) return true;
      if (this.carryReady) {
        this.carryReady = false;
        const n = this.carryLen;
        this.carryLen = 0;
        try {
          this.parseLines(this.carry, 0, n, batch);
        } catch (err) {
          return this.stopWith(err, batch);
        }
        continue;
      }
      const cur = this.cur;
      if (cur !== null) {
        if (this.pos < this.limit) {
          try {
            this.pos = this.parseLines(cur, this.pos, this.limit, batch);
          } catch (err) {
            return this.stopWith(err, batch);
          }
          continue;
        }
        if (this.limit < cur.length) this.appendCarry(cur, this.limit, cur.length);
        this.cur = null;
        continue;
      }
      if (this.eof) {
        if (this.carryLen > 0) {
          // Last line without a newline: terminate it.
          this.appendCarry(NEWLINE, 0, 1);
          this.carryReady = true;
          continue;
        }
        return batch.length > 0;
      }
      let chunk: Buffer | null;
      try {
        chunk = await this.nextChunk();
      } catch (err) {
        return this.stopWith(this.typedReadError(err), batch);
      }
      if (chunk === null) {
        this.eof = true;
        continue;
      }
      let start = 0;
      if (this.carryLen > 0) {
        const nl = chunk.indexOf(NL);
        if (nl < 0) {
          this.appendCarry(chunk, 0, chunk.length);
          continue;
        }
        this.appendCarry(chunk, 0, nl + 1);
        this.carryReady = true;
        start = nl + 1;
      }
      const last = chunk.lastIndexOf(NL);
      this.cur = chunk;
      this.pos = start;
      this.limit = last >= start ? last + 1 : start;
    }
  }

  /**
   * Ends the reader on an error: throws it now if the batch is empty,
   * otherwise delivers the batch and throws it on the next fill.
   */
  private stopWith(err: unknown, batch: AccessBatch): true {
    this.close();
    if (batch.length > 0) {
      this.pendingError = err as Error;
      return true;
    }
    throw err;
  }

  /** Stops reading and releases the file (safe to call twice). */
  close(): void {
    for (const s of this.streams) {
      const d = (s as { destroy?: () => void }).destroy;
      if (typeof d === 'function' && s !== process.stdin) d.call(s);
    }
    this.streams = [];
    this.bytesThread?.close();
    this.cur = null;
    this.eof = true;
  }

  /**
   * Parses the complete lines in buf[pos, limit) — every line there ends in
   * '\n' — into `batch` until it is full. Returns the position reached.
   */
  private parseLines(buf: Uint8Array, pos: number, limit: number, batch: AccessBatch): number {
    const kinds = batch.kind;
    const addrs = batch.addr;
    const sizes = batch.size;
    const lines = batch.line;
    const cap = batch.capacity;
    const first = batch.length;
    let n = first;
    let lineNo = this.lineNo;
    let p = pos;
    while (p < limit && n < cap) {
      const lineStart = p;
      lineNo++;
      let c = buf[p]!;
      let kind: number;
      if (c === CH_I) {
        kind = AccessKind.Fetch;
      } else {
        while (c === SPACE || c === TAB) c = buf[++p]!;
        if (c === CH_L) kind = AccessKind.Load;
        else if (c === CH_S) kind = AccessKind.Store;
        else if (c === CH_M) kind = AccessKind.Modify;
        else if (c === CH_I) kind = AccessKind.Fetch;
        else if (c === NL || (c === CR && buf[p + 1] === NL)) {
          p += c === NL ? 1 : 2; // blank line
          continue;
        } else if (c === EQUALS && p === lineStart && buf[p + 1] === EQUALS) {
          while (buf[p] !== NL) p++; // Valgrind's own message
          p++;
          continue;
        } else {
          this.fail(buf, lineStart, lineNo, "expected 'I', 'L', 'S' or 'M' record", batch, n, first);
        }
      }
      c = buf[++p]!;
      if (c !== SPACE) {
        const cut = c === NL || c === CR || c === undefined;
        this.fail(buf, lineStart, lineNo, cut ? 'expected an address after the record type (a truncated line?)' : "expected 'I', 'L', 'S' or 'M' record", batch, n, first);
      }
      do c = buf[++p]!;
      while (c === SPACE);
      // Hexadecimal address.
      const hexStart = p;
      let addr = 0;
      for (;;) {
        if (c >= 48 && c <= 57) addr = addr * 16 + (c - 48);
        else {
          const lower = c | 0x20;
          if (lower >= 97 && lower <= 102) addr = addr * 16 + (lower - 87);
          else break;
        }
        c = buf[++p]!;
      }
      const digits = p - hexStart;
      if (digits === 0 || c !== COMMA) {
        this.fail(buf, lineStart, lineNo, 'expected a hexadecimal address and a comma', batch, n, first);
      }
      if (digits > FAST_HEX_DIGITS) {
        if (digits > MAX_HEX_DIGITS) this.fail(buf, lineStart, lineNo, `address has more than ${MAX_HEX_DIGITS} hex digits`, batch, n, first);
        addr = foldAddress(buf, hexStart, p);
      }
      // Decimal size.
      c = buf[++p]!;
      const sizeStart = p;
      let size = 0;
      while (c >= 48 && c <= 57) {
        size = size * 10 + (c - 48);
        c = buf[++p]!;
      }
      if (p === sizeStart || size < 1 || size > MAX_SIZE) {
        this.fail(buf, lineStart, lineNo, `expected a decimal size 1..${MAX_SIZE} after the comma`, batch, n, first);
      }
      while (c === SPACE || c === TAB || c === CR) c = buf[++p]!;
      if (c !== NL) {
        this.fail(buf, lineStart, lineNo, 'unexpected text after the size', batch, n, first);
      }
      p++;
      kinds[n] = kind;
      addrs[n] = addr;
      sizes[n] = size;
      lines[n] = lineNo;
      n++;
    }
    this.lineNo = lineNo;
    this.records += n - first;
    batch.length = n;
    return p;
  }

  /** Records the state reached (records before the bad line are kept) and throws. */
  private fail(buf: Uint8Array, lineStart: number, lineNo: number, what: string, batch: AccessBatch, n: number, first: number): never {
    this.lineNo = lineNo - 1;
    this.records += n - first;
    batch.length = n;
    throw this.parseError(buf, lineStart, lineNo, what);
  }

  private parseError(buf: Uint8Array, lineStart: number, lineNo: number, what: string): TraceParseError {
    let end = lineStart;
    while (end < buf.length && buf[end] !== NL) end++;
    if (end > lineStart && buf[end - 1] === CR) end--;
    const shown = Math.min(end - lineStart, QUOTE_CHARS);
    // A line with a NUL or mostly control bytes is not a damaged record but a
    // file of another kind (an executable, a core dump, a plain .gz renamed):
    // say so instead of quoting escapes.
    let binary = 0;
    for (let i = lineStart; i < lineStart + shown; i++) {
      const c = buf[i]!;
      if (c === 0) binary = shown;
      else if ((c < 32 && c !== TAB) || c >= 127) binary++;
    }
    if (shown > 0 && binary * 4 >= shown)
      return new TraceParseError(this.file, lineNo, "binary data, not a lackey trace (expected text lines such as ' L 04222cac,4' from valgrind --tool=lackey --trace-mem=yes)");
    let text = '';
    for (let i = lineStart; i < lineStart + shown; i++) {
      const c = buf[i]!;
      text += c >= 32 && c < 127 ? String.fromCharCode(c) : c === TAB ? '\\t' : `\\x${c.toString(16).padStart(2, '0')}`;
    }
    if (end - lineStart > shown) text += '…';
    return new TraceParseError(this.file, lineNo, `${what}, got '${text}'`);
  }

  private appendCarry(src: Uint8Array, start: number, end: number): void {
    const len = end - start;
    const need = this.carryLen + len;
    if (need > MAX_LINE_BYTES) {
      throw new TraceReadError(
        this.file,
        'line-too-long',
        this.lineNo,
        `${this.file}:${this.lineNo + 1}: line longer than ${MAX_LINE_BYTES} bytes: not a lackey trace?`,
      );
    }
    if (need > this.carry.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.carry.length * 2));
      this.carry.copy(bigger, 0, 0, this.carryLen);
      this.carry = bigger;
    }
    this.carry.set(src.subarray(start, end), this.carryLen);
    this.carryLen = need;
  }

  private async nextChunk(): Promise<Buffer | null> {
    if (this.chunks === null) this.chunks = await this.open();
    const r = await this.chunks.next();
    if (this.bytesThread !== null) this.compressed = this.bytesThread.compressed;
    return r.done === true ? null : r.value;
  }

  /** Opens the input, sniffs the gzip magic, and returns its chunks. */
  private async open(): Promise<AsyncIterator<Buffer>> {
    if (this.useThread && this.input === undefined && this.path !== '-') {
      try {
        this.bytesThread = new TraceBytesThread(this.path, this.chunkBytes);
        return this.bytesThread;
      } catch {
        // No worker threads here: read on this thread.
      }
    }
    const raw: NodeJS.ReadableStream =
      this.input ?? (this.path === '-' ? process.stdin : createReadStream(this.path, { highWaterMark: this.chunkBytes }));
    this.streams.push(raw);
    const it = (raw as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    const head: Buffer[] = [];
    let headBytes = 0;
    let ended = false;
    while (headBytes < 2) {
      const r = await it.next();
      if (r.done === true) {
        ended = true;
        break;
      }
      const b = toBuffer(r.value);
      head.push(b);
      headBytes += b.length;
    }
    const first = head.length === 1 ? head[0]! : Buffer.concat(head);
    this.compressed = headBytes >= 2 && first[0] === GZIP_MAGIC_0 && first[1] === GZIP_MAGIC_1;
    async function* rest(): AsyncGenerator<Buffer> {
      if (first.length > 0) yield first;
      if (ended) return;
      for (;;) {
        const r = await it.next();
        if (r.done === true) return;
        yield toBuffer(r.value);
      }
    }
    if (!this.compressed) return rest();
    const gunzip = createGunzip({ chunkSize: 64 * 1024 });
    const src = Readable.from(rest(), { objectMode: false });
    this.streams.push(src, gunzip);
    // Errors from either side reach us through gunzip's iterator.
    pipeline(src, gunzip, () => {});
    return gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  private typedReadError(err: unknown): Error {
    if (err instanceof TraceReadError || err instanceof TraceParseError) return err;
    const e = err as NodeJS.ErrnoException;
    const at = `${this.file}:${this.lineNo + 1}`;
    if (e?.code === 'Z_BUF_ERROR' || /unexpected end of file/i.test(String(e?.message))) {
      return new TraceReadError(this.file, 'truncated-gzip', this.lineNo, `${at}: gzip stream is truncated (unexpected end of file after ${this.lineNo} lines)`, { cause: err });
    }
    if (typeof e?.code === 'string' && e.code.startsWith('Z_')) {
      return new TraceReadError(this.file, 'corrupt-gzip', this.lineNo, `${at}: gzip data is corrupt (${e.message})`, { cause: err });
    }
    if (this.chunks === null || e?.syscall === 'open') {
      // "ENOENT: no such file or directory, open 'x'" → "no such file or directory (ENOENT)"
      const why = String(e?.message ?? err).replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '');
      return new TraceReadError(this.file, 'open', 0, `${this.file}: cannot open trace: ${why}${e?.code ? ` (${e.code})` : ''}`, { cause: err });
    }
    return new TraceReadError(this.file, 'read', this.lineNo, `${at}: read error (${e?.message ?? String(err)})`, { cause: err });
  }
}

const NEWLINE = Buffer.from('\n');

/** Address with 13..16 hex digits in buf[start, end): its low 48 bits (cold). */
function foldAddress(buf: Uint8Array, start: number, end: number): number {
  let addr = 0;
  for (let p = Math.max(start, end - FAST_HEX_DIGITS); p < end; p++) {
    const c = buf[p]! | 0x20;
    addr = addr * 16 + (c <= 57 ? c - 48 : c - 87);
  }
  return addr;
}

function toBuffer(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (typeof v === 'string') return Buffer.from(v, 'latin1');
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw new TypeError('trace input yielded a non-byte chunk');
}
