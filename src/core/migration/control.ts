/**
 * Control frames: the few small messages besides the stream — the sender's
 * hello (with the optional shared token), the receiver's accept/refuse, and
 * after END its verdict or error. Parsed here once into plain readonly
 * objects (STYLE §15); the stream itself stays binary.
 *
 * ```
 * +------+------+------+------+-------------+-------------------------+
 * | 'M'  | 'V'  | 'H'  | 'S'  | length u32  | JSON (UTF-8), ≤ 64 KiB  |
 * +------+------+------+------+-------------+-------------------------+
 * ```
 * Connection: sender → hello; receiver → accept | refuse; sender → stream;
 * receiver → verdict | error (an error may come at any time, then close).
 */

export const CONTROL_MAGIC = 0x5348564d; // 'M','V','H','S' as LE u32
export const CONTROL_VERSION = 1;
const MAX_FRAME = 64 * 1024;

export type ControlMessage =
  | { readonly t: 'hello'; readonly v: number; readonly token?: string }
  | { readonly t: 'accept' }
  | { readonly t: 'refuse'; readonly reason: string }
  | {
      readonly t: 'verdict';
      readonly verified: boolean;
      readonly source_digest: string;
      readonly dest_digest: string;
      readonly receiver_digest_ms: number;
      readonly receiver_setup_ms: number;
      readonly pages_applied: number;
    }
  | { readonly t: 'error'; readonly code: string; readonly message: string };

export class ControlProtocolError extends Error {
  constructor(why: string) {
    super(why);
    this.name = 'ControlProtocolError';
  }
}

export function encodeControl(msg: ControlMessage): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(msg));
  const out = new Uint8Array(8 + json.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, CONTROL_MAGIC, true);
  v.setUint32(4, json.length, true);
  out.set(json, 8);
  return out;
}

/** Names what a peer speaking something else sent, for the message. */
function describeForeign(b: Uint8Array): string {
  if (b[0] === 0x16 && b[1] === 0x03) return 'the peer started a TLS handshake, but this side is not using TLS';
  if (b[0] === 0x15 && b[1] === 0x03) return 'the peer sent a TLS alert: it expects TLS and this side is not using TLS';
  return `the peer does not speak the memvisor migration protocol (first bytes ${[...b.subarray(0, 4)].map((x) => x.toString(16).padStart(2, '0')).join(' ')})`;
}

function validate(x: unknown): ControlMessage {
  if (typeof x !== 'object' || x === null) throw new ControlProtocolError('control frame is not an object');
  const m = x as Record<string, unknown>;
  switch (m.t) {
    case 'hello':
      if (typeof m.v !== 'number' || (m.token !== undefined && typeof m.token !== 'string'))
        throw new ControlProtocolError('malformed hello');
      return { t: 'hello', v: m.v, ...(m.token !== undefined ? { token: m.token as string } : {}) };
    case 'accept':
      return { t: 'accept' };
    case 'refuse':
      return { t: 'refuse', reason: String(m.reason) };
    case 'verdict':
      if (typeof m.verified !== 'boolean') throw new ControlProtocolError('malformed verdict');
      return {
        t: 'verdict',
        verified: m.verified,
        source_digest: String(m.source_digest),
        dest_digest: String(m.dest_digest),
        receiver_digest_ms: Number(m.receiver_digest_ms) || 0,
        receiver_setup_ms: Number(m.receiver_setup_ms) || 0,
        pages_applied: Number(m.pages_applied) || 0,
      };
    case 'error':
      return { t: 'error', code: String(m.code), message: String(m.message) };
    default:
      throw new ControlProtocolError(`unknown control message ${JSON.stringify(m.t)}`);
  }
}

/** Incremental reader of control frames; bytes after the frames taken stay in `rest`. */
export class ControlReader {
  private buf = new Uint8Array(0);

  push(chunk: Uint8Array): void {
    const b = new Uint8Array(this.buf.length + chunk.length);
    b.set(this.buf);
    b.set(chunk, this.buf.length);
    this.buf = b;
  }

  /** The next complete frame, or undefined if more bytes are needed. Throws ControlProtocolError. */
  next(): ControlMessage | undefined {
    const b = this.buf;
    if (b.length >= 1 && b[0] !== 0x4d) throw new ControlProtocolError(describeForeign(b));
    if (b.length < 8) return undefined;
    const v = new DataView(b.buffer, b.byteOffset, b.length);
    if (v.getUint32(0, true) !== CONTROL_MAGIC) throw new ControlProtocolError(describeForeign(b));
    const len = v.getUint32(4, true);
    if (len > MAX_FRAME) throw new ControlProtocolError(`control frame of ${len} bytes is too large`);
    if (b.length < 8 + len) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + len)));
    } catch {
      throw new ControlProtocolError('control frame is not valid JSON');
    }
    this.buf = b.subarray(8 + len);
    return validate(parsed);
  }

  /** Bytes received after the last frame taken. */
  takeRest(): Uint8Array {
    const r = this.buf;
    this.buf = new Uint8Array(0);
    return r;
  }
}
