/**
 * The receiver: listens, takes one migration at a time, applies verified
 * batches into its own memory, checks the final digest and answers with a
 * verdict. Usable in-process (tests, `migrate` without --to) and as the body
 * of `memvisor receive --listen host:port`; it prints nothing itself — only
 * through the injected logger.
 *
 * Attempts: a connection that fails (lost, refused, corrupted stream) is
 * recorded and its partial memory dropped; the receiver keeps listening for a
 * retry until one migration completes (`once` returns after the first try).
 * A corrupted record is never applied: the session refuses it, the sender is
 * told why in an error frame, and the connection is closed.
 *
 * Untrusted peers: nothing is decoded before the hello (and its token); a
 * HEADER announcing a guest above `maxPageCount` (default: this host's
 * memory) is refused before anything is allocated; one migration at a time,
 * a second connection told "busy" at once; a connection that sends nothing
 * for `ioTimeoutMs`, or less than MIN_BYTES_PER_SEC over any window that
 * long, is dropped (io-watchdog.ts), and the receiver listens on. TCP
 * keepalive is on.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { totalmem } from 'node:os';
import tls from 'node:tls';
import type { Clock } from '../../core/clock.ts';
import { ControlReader, CONTROL_VERSION, encodeControl, type ControlMessage } from '../../core/migration/control.ts';
import { PagedMemory, type PageStore } from '../../core/migration/paged-memory.ts';
import { backgroundPrefaulted } from './background-prefault.ts';
import { ReceiverSession, type ReceiverOutcome } from '../../core/migration/receiver-session.ts';
import { StreamError } from '../../core/migration/stream/errors.ts';
import { allocHashable } from '../../core/pagehash/page-hash.ts';
import type { StreamHeader } from '../../core/migration/stream/format.ts';
import { IoWatchdog } from './io-watchdog.ts';
import { DEFAULT_IO_TIMEOUT_MS, keepAliveDelayMs } from './tcp-transport.ts';
import { wallClock } from './wall-clock.ts';
import { formatHostPort } from './host-port.ts';

/**
 * The slowest stream a receiver waits for, averaged over each io-timeout
 * window: far below any migration (a 4 KiB page a few seconds), far above a
 * peer trickling a byte a second to hold the receiver busy.
 */
export const MIN_BYTES_PER_SEC = 1024;

export interface ReceiverOptions {
  readonly host: string;
  /** 0 ⇒ any free port (reported through io.onListening and in the result). */
  readonly port: number;
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Shared token the sender must present. */
  readonly token?: string;
  /** Return after the first attempt, even a failed one (default: wait for a completed migration). */
  readonly once?: boolean;
  /** Return after this many verified migrations (default 1); the leak check runs 200 through one receiver. */
  readonly migrations?: number;
  /** Give up after this many failed attempts (default unlimited). */
  readonly maxAttempts?: number;
  /** A connection silent this long, or slower than MIN_BYTES_PER_SEC over a window this long, is dropped (default 30 s). */
  readonly ioTimeoutMs?: number;
  readonly signal?: AbortSignal;
  readonly createStore?: (header: StreamHeader) => PageStore;
  /**
   * Populate destination memory for guests up to this many pages before any
   * connection (a pre-built destination domain); larger guests allocate on demand.
   */
  readonly preallocPages?: number;
  /** Largest guest accepted (pages); default: this host's memory. */
  readonly maxPageCount?: number;
}

export interface ReceiverLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface ReceiverIo {
  readonly logger?: ReceiverLogger;
  readonly onListening?: (addr: { host: string; port: number }) => void;
  readonly clock?: Clock;
  /** Called after every attempt, failed or not. */
  readonly onAttempt?: (a: AttemptRecord) => void;
  /** Called as preallocation progresses (after each 64 MiB), before listening. */
  readonly onPrealloc?: (pagesDone: number, pageCount: number) => void;
}

export interface AttemptRecord {
  readonly peer: string;
  readonly ok: boolean;
  /** Why it failed: 'bad_token', 'link_lost', 'io_timeout', 'too_slow', a stream error code (checksum_mismatch, bad_header, …), 'tls', 'busy', 'protocol'. */
  readonly code?: string;
  readonly message?: string;
  readonly bytes: number;
}

export interface ReceiverResult {
  readonly host: string;
  readonly port: number;
  readonly verified: boolean;
  /** Of the completed migration; undefined if none completed. */
  readonly outcome?: ReceiverOutcome;
  readonly attempts: readonly AttemptRecord[];
  /** Destination memory and vCPU state of the completed migration. */
  readonly memory?: PageStore;
  readonly vcpuState?: Uint8Array;
  readonly tls: boolean;
}

function tokenMatches(expected: string | undefined, given: string | undefined): boolean {
  if (expected === undefined) return true;
  if (given === undefined) return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

const silent: ReceiverLogger = { info() {}, warn() {} };

/** Bytes per read slab; a read gets what is left of the current slab (at least MIN_READ). */
const SLAB_BYTES = 1 << 20;
const MIN_READ = 64 * 1024;

/**
 * Read buffers for a plain TCP connection: the socket reads into the rest of
 * the current 1 MiB slab, and a slab is reused only once the decoder holds no
 * view into it (every byte it delivered lies before `retainedFrom()`, the
 * stream offset of the first byte still referenced). The decoder hashes pages
 * where they sit in these slabs, so a slab must outlive the batch it carries:
 * at most a batch (4 MiB) plus a slab are held. Slabs are WebAssembly memories
 * (page-hash.ts `allocHashable`), so those hashes need no copy. Measured on loopback
 * (512 MiB into a sink, same box): 'data' events cost 8,200 reads of
 * 64 KiB, ≈120 ms user + ≈250 ms sys; slabs ≈3,000 reads, ≈15 ms user + ≈100 ms sys.
 */
class ReadSlabs {
  private readonly slabs: { buf: Buffer; lastEnd: number }[] = [];
  private cur: { buf: Buffer; lastEnd: number };
  private pos = 0;
  private lent = 0;

  constructor(private readonly retainedFrom: () => number) {
    this.cur = this.newSlab();
  }

  private newSlab(): { buf: Buffer; lastEnd: number } {
    const mem = allocHashable(SLAB_BYTES);
    const s = { buf: Buffer.from(mem.buffer, mem.byteOffset, mem.length), lastEnd: 0 };
    this.slabs.push(s);
    return s;
  }

  /** The next read's buffer. */
  next(): Buffer {
    if (this.cur.buf.length - this.pos < MIN_READ) {
      const free = this.retainedFrom();
      this.cur = this.slabs.find((s) => s.lastEnd <= free) ?? this.newSlab();
      this.pos = 0;
    }
    this.lent = this.pos;
    return this.cur.buf.subarray(this.pos);
  }

  /** The `n` bytes just read into the buffer `next()` lent. */
  took(n: number): Buffer {
    this.pos = this.lent + n;
    return this.cur.buf.subarray(this.lent, this.pos);
  }

  /** Those bytes were pushed and the stream now stands at `streamOffset`. */
  pushedUpTo(streamOffset: number): void {
    this.cur.lastEnd = streamOffset;
  }
}

/**
 * Moves an accepted (paused) socket's handle into a socket that reads
 * through `onread` (Node 20 takes that option on `new net.Socket`, not on a
 * server). The accepted wrapper keeps only the server's bookkeeping: it is
 * destroyed, handle-less, when the new socket closes. Undefined if the
 * socket has no handle to move.
 */
function adoptWithStaticReads(accepted: net.Socket, slabs: ReadSlabs, onChunk: (chunk: Buffer) => void): net.Socket | undefined {
  const old = accepted as unknown as { _handle?: object | null };
  const handle = old._handle;
  if (!handle) return undefined;
  old._handle = null;
  const opts = {
    handle,
    readable: true,
    writable: true,
    onread: { buffer: () => slabs.next(), callback: (n: number) => onChunk(slabs.took(n)) },
  };
  const s = new net.Socket(opts as net.SocketConstructorOpts);
  s.once('close', () => accepted.destroy());
  return s;
}

export function runReceiver(opts: ReceiverOptions, io: ReceiverIo = {}): Promise<ReceiverResult> {
  const log = io.logger ?? silent;
  const clock = io.clock ?? wallClock;
  const attempts: AttemptRecord[] = [];
  let busy = false;
  let boundPort = opts.port;
  let verifiedCount = 0;
  const ioTimeoutMs = opts.ioTimeoutMs ?? DEFAULT_IO_TIMEOUT_MS;
  const maxPageCount = opts.maxPageCount ?? Math.floor(totalmem() / 4096);

  let prealloc: PagedMemory | undefined;
  if (opts.preallocPages) {
    prealloc = new PagedMemory(opts.preallocPages);
    prealloc.prefault(io.onPrealloc);
  }
  let preallocDirty = false;
  const createStore =
    opts.createStore ??
    ((h: StreamHeader): PageStore => {
      // No memory built up front (or too little): build it now, pre-faulted by a helper thread while round 0 arrives.
      if (!prealloc || h.pageCount > prealloc.pageCount) return backgroundPrefaulted(h.pageCount).memory;
      if (preallocDirty) prealloc.clear();
      preallocDirty = true;
      return prealloc;
    });

  return new Promise<ReceiverResult>((resolve, reject) => {
    let finished = false;
    const server: net.Server = opts.tls
      ? tls.createServer({ cert: opts.tls.cert, key: opts.tls.key })
      : net.createServer({ pauseOnConnect: true });

    const finish = (r: Omit<ReceiverResult, 'host' | 'port' | 'attempts' | 'tls'>): void => {
      if (finished) return;
      finished = true;
      server.close();
      resolve({ host: opts.host, port: boundPort, attempts, tls: !!opts.tls, ...r });
    };
    const recordFailure = (a: AttemptRecord): void => {
      attempts.push(a);
      io.onAttempt?.(a);
      log.warn(`migration attempt from ${a.peer} failed: ${a.message}`, { code: a.code, bytes: a.bytes });
      if (opts.once || (opts.maxAttempts !== undefined && attempts.length >= opts.maxAttempts)) finish({ verified: false });
    };

    opts.signal?.addEventListener('abort', () => finish({ verified: false }), { once: true });

    if (opts.tls) {
      // The peer's address, taken when TCP accepts: a client that rejects our certificate is gone by the time the error arrives.
      const peers = new WeakMap<object, string>();
      server.on('connection', (raw: net.Socket) => peers.set(raw, `${raw.remoteAddress}:${raw.remotePort}`));
      server.on('tlsClientError', (err: NodeJS.ErrnoException, sock: tls.TLSSocket) => {
        const raw = (sock as unknown as { _parent?: object })._parent;
        const peer = (raw && peers.get(raw)) ?? (sock.remoteAddress ? `${sock.remoteAddress}:${sock.remotePort}` : 'a client');
        // OpenSSL's text is several lines; one is enough (its reason, or the code).
        const why = err.message.split('\n')[0]!.replace(/^.*:SSL routines:[^:]*:/, '').trim() || err.code || 'handshake failed';
        const plain = /wrong version number|http request|unknown protocol|packet length too long/i.test(err.message);
        recordFailure({
          peer,
          ok: false,
          code: 'tls',
          message: plain
            ? 'a client connected without TLS; this receiver requires TLS'
            : /socket hang up|ECONNRESET/i.test(why)
              ? 'the client hung up during the TLS handshake (it may not trust this certificate: give it --tls-ca)'
              : `TLS handshake failed: ${why}`,
          bytes: 0,
        });
      });
    }

    server.on(opts.tls ? 'secureConnection' : 'connection', (accepted: net.Socket) => {
      const peer = `${accepted.remoteAddress}:${accepted.remotePort}`;
      if (busy || finished) {
        accepted.resume();
        accepted.end(encodeControl({ t: 'refuse', reason: 'the receiver is busy with another migration' }));
        log.warn(`connection from ${peer} refused: busy with another migration`);
        return;
      }
      busy = true;
      // Plain TCP: read into reused slabs (no Buffer per read, reads up to a
      // slab long); TLS, or a socket without a handle: 'data' events.
      let onChunk: (chunk: Uint8Array) => void = () => {};
      let socket = accepted;
      if (!opts.tls) {
        const slabs = new ReadSlabs(() => (session ? session.retainedFrom : Infinity));
        const adopted = adoptWithStaticReads(accepted, slabs, (chunk) => {
          onChunk(chunk);
          slabs.pushedUpTo(session ? session.bytes : 0);
        });
        if (adopted) socket = adopted;
        else accepted.resume();
      }
      socket.setNoDelay(true);
      socket.setKeepAlive(true, keepAliveDelayMs(ioTimeoutMs));
      const reader = new ControlReader();
      let session: ReceiverSession | undefined;
      let done = false;
      const seconds = ioTimeoutMs / 1000;
      const watchdog = new IoWatchdog({
        timeoutMs: ioTimeoutMs,
        minBytesPerSec: MIN_BYTES_PER_SEC,
        onExpire: (reason, bytesInWindow) => {
          const bytes = session?.bytes ?? 0;
          end(
            reason === 'silent'
              ? { peer, ok: false, code: 'io_timeout', message: `no data for ${seconds} s (the link is down or the sender is stalled) after ${bytes} stream bytes; partial memory dropped`, bytes }
              : { peer, ok: false, code: 'too_slow', message: `only ${bytesInWindow} bytes in ${seconds} s, below the minimum of ${MIN_BYTES_PER_SEC} bytes/s; partial memory dropped`, bytes },
          );
        },
      });
      const end = (a: AttemptRecord | undefined, reply?: ControlMessage): void => {
        if (done) return;
        done = true;
        busy = false;
        watchdog.stop();
        if (reply) socket.end(encodeControl(reply));
        else socket.destroy();
        if (a) recordFailure(a);
      };

      socket.on('error', () => {
        /* reported by 'close' */
      });
      socket.on('close', () => {
        if (done) return;
        const bytes = session?.bytes ?? 0;
        end({ peer, ok: false, code: 'link_lost', message: `connection lost after ${bytes} stream bytes; partial memory dropped`, bytes });
      });

      const feed = (chunk: Uint8Array): void => {
        try {
          session!.push(chunk);
        } catch (e) {
          const code = e instanceof StreamError ? e.code : 'internal';
          const message = (e as Error).message;
          end({ peer, ok: false, code, message, bytes: session!.bytes }, { t: 'error', code, message });
          return;
        }
        const o = session!.outcome;
        if (o) {
          const verdict: ControlMessage = {
            t: 'verdict',
            verified: o.verified,
            source_digest: o.sourceDigest,
            dest_digest: o.destDigest,
            receiver_digest_ms: o.digestMs,
            receiver_setup_ms: o.setupMs,
            pages_applied: o.pagesApplied,
          };
          attempts.push({ peer, ok: o.verified, bytes: o.bytes, ...(o.verified ? {} : { code: 'digest_mismatch', message: 'digest mismatch' }) });
          log.info(`migration from ${peer} ${o.verified ? 'verified' : 'FAILED verification'}`, {
            pages: o.pageCount,
            rounds: o.rounds,
            digest: o.destDigest,
          });
          done = true;
          busy = false;
          watchdog.stop();
          socket.end(encodeControl(verdict));
          if (o.verified && ++verifiedCount < (opts.migrations ?? 1) && !opts.once) return; // listen for the next one
          finish({ verified: o.verified, outcome: o, memory: session!.memory, vcpuState: session!.vcpuState });
        }
      };

      onChunk = (chunk: Uint8Array): void => {
        if (done) return;
        watchdog.progress(chunk.length);
        if (session) return feed(chunk);
        reader.push(chunk);
        let hello: ControlMessage | undefined;
        try {
          hello = reader.next();
        } catch (e) {
          const message = (e as Error).message;
          end({ peer, ok: false, code: 'protocol', message, bytes: 0 }, { t: 'refuse', reason: message });
          return;
        }
        if (!hello) return;
        if (hello.t !== 'hello' || hello.v !== CONTROL_VERSION) {
          const reason = hello.t !== 'hello' ? `expected hello, got ${hello.t}` : `control protocol version ${hello.v} not supported (want ${CONTROL_VERSION})`;
          end({ peer, ok: false, code: 'protocol', message: reason, bytes: 0 }, { t: 'refuse', reason });
          return;
        }
        if (!tokenMatches(opts.token, hello.token)) {
          const reason = hello.token === undefined ? 'this receiver requires a token (--token)' : 'wrong token';
          end({ peer, ok: false, code: 'bad_token', message: reason, bytes: 0 }, { t: 'refuse', reason });
          return;
        }
        session = new ReceiverSession({ clock, createStore, maxPageCount });
        socket.write(encodeControl({ t: 'accept' }));
        log.info(`migration from ${peer} accepted`);
        const rest = reader.takeRest();
        if (rest.length > 0) feed(rest);
      };
      if (socket === accepted) socket.on('data', onChunk);
    });

    server.on('error', (e) => {
      if (!finished) {
        finished = true;
        reject(e);
      }
    });
    server.listen(opts.port, opts.host, () => {
      const a = server.address() as net.AddressInfo;
      boundPort = a.port;
      log.info(`listening on ${formatHostPort(opts.host, a.port)}${opts.tls ? ' (TLS)' : ''}`);
      io.onListening?.({ host: opts.host, port: a.port });
    });
  });
}
