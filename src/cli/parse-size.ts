/**
 * Parsing of CLI values at the edge: sizes ("512M", "1GiB", "4096") into
 * integer bytes, and endpoints ("host:port", "[::1]:port") into readonly
 * objects. Every failure is an ArgParseError whose message names the flag and
 * the bad text, ready to print as the one line on stderr.
 *
 * Size suffixes are powers of 1024, case-insensitive, as QEMU's -m and xl's
 * memory= read them: k/K, KB, KiB = 2^10; M, MB, MiB = 2^20; G = 2^30;
 * T = 2^40; P = 2^50; an optional trailing B alone means bytes. A decimal
 * fraction is accepted when the result is a whole number of bytes ("1.5G").
 */

export class ArgParseError extends Error {
  override readonly name: string = 'ArgParseError';
  /** Read by the CLI's error reporter: the message is for users. */
  readonly userFacing = true;
  constructor(
    /** The flag the value was given for, e.g. "--mem". */
    readonly flag: string,
    /** The text that failed to parse, as the user typed it. */
    readonly text: string,
    message: string,
  ) {
    super(message);
  }
}

/** A size flag (--mem, --page-size, ...) that does not parse. */
export class SizeParseError extends ArgParseError {
  override readonly name = 'SizeParseError';
}

/** A host:port flag (--to, --listen) that does not parse. */
export class HostPortParseError extends ArgParseError {
  override readonly name = 'HostPortParseError';
}

const SIZE_RE = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([kmgtp]?)(i?b)?\s*$/i;

const SHIFT_OF_UNIT: Readonly<Record<string, number>> = { '': 0, k: 10, m: 20, g: 30, t: 40, p: 50 };

export interface ParseSizeOptions {
  /** Flag named in error messages (default "size"). */
  readonly flag?: string;
  /** Accept 0 (default false: a size of nothing is a mistake). */
  readonly allowZero?: boolean;
}

/**
 * Bytes in `text`: "1G" → 1073741824, "4k" → 4096, "4096" → 4096.
 * @throws ArgParseError "--mem: cannot parse size '12X' (use e.g. 512M, 1G, 1T)"
 */
export function parseSize(text: string, opts: ParseSizeOptions = {}): number {
  const flag = opts.flag ?? 'size';
  const m = SIZE_RE.exec(text);
  // "iB" needs a unit letter ("1iB" is not a size); a bare "B" is fine.
  if (m === null || (m[3] !== undefined && m[3].length === 2 && m[2] === '')) {
    throw new SizeParseError(flag, text, `${flag}: cannot parse size '${text}' (use e.g. 512M, 1G, 1T)`);
  }
  const shift = SHIFT_OF_UNIT[m[2]!.toLowerCase()]!;
  const bytes = Number(m[1]) * 2 ** shift;
  if (!Number.isInteger(bytes)) {
    throw new SizeParseError(flag, text, `${flag}: size '${text}' is not a whole number of bytes`);
  }
  if (bytes > Number.MAX_SAFE_INTEGER) {
    throw new SizeParseError(flag, text, `${flag}: size '${text}' is too large (at most 8 PiB)`);
  }
  if (bytes === 0 && opts.allowZero !== true) {
    throw new SizeParseError(flag, text, `${flag}: size must be greater than zero, got '${text}'`);
  }
  return bytes;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface ParseHostPortOptions {
  /** Flag named in error messages (default "address"). */
  readonly flag?: string;
  /** Host used for ":port" or a bare "port" (default: a host is required). */
  readonly defaultHost?: string;
  /** Accept port 0, "any free port", for listening (default false). */
  readonly allowPortZero?: boolean;
}

/**
 * "host:port", "[v6addr]:port", or with a default host ":port" / "port".
 * @throws HostPortParseError "--to: cannot parse 'foo' as host:port (e.g. 127.0.0.1:7000)"
 */
export function parseHostPort(text: string, opts: ParseHostPortOptions = {}): HostPort {
  const flag = opts.flag ?? 'address';
  const fail = (why: string): never => {
    throw new HostPortParseError(flag, text, `${flag}: ${why}`);
  };
  const bad = `cannot parse '${text}' as host:port (e.g. 127.0.0.1:7000)`;
  const t = text.trim();
  let host: string;
  let portText: string;
  if (t.startsWith('[')) {
    const close = t.indexOf(']');
    if (close < 0 || t[close + 1] !== ':') return fail(bad);
    host = t.slice(1, close);
    portText = t.slice(close + 2);
    if (host === '' || !/^[0-9a-fA-F:.%a-zA-Z]+$/.test(host)) return fail(bad);
  } else {
    const colon = t.lastIndexOf(':');
    if (colon < 0) {
      host = '';
      portText = t;
    } else {
      host = t.slice(0, colon);
      portText = t.slice(colon + 1);
      if (host.includes(':')) return fail(`${bad}; write an IPv6 host in brackets, e.g. [::1]:7000`);
    }
    if (host !== '' && !/^[A-Za-z0-9._-]+$/.test(host)) return fail(bad);
  }
  if (host === '') {
    if (opts.defaultHost === undefined) return fail(bad);
    host = opts.defaultHost;
  }
  if (!/^\d{1,5}$/.test(portText)) return fail(bad);
  const port = Number(portText);
  const min = opts.allowPortZero === true ? 0 : 1;
  if (port < min || port > 65535) return fail(`port ${portText} in '${text}' is out of range (${min}..65535)`);
  return { host, port };
}
