import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ArgParseError, HostPortParseError, SizeParseError, parseHostPort, parseSize } from './parse-size.ts';

const K = 1024, M = K * K, G = M * K, T = G * K;

describe('parseSize', () => {
  it('reads binary suffixes in any case and form', () => {
    const cases: [string, number][] = [
      ['4096', 4096], ['4k', 4 * K], ['4K', 4 * K], ['4KiB', 4 * K], ['4kb', 4 * K],
      ['2m', 2 * M], ['512M', 512 * M], ['512MiB', 512 * M], ['512 MB', 512 * M],
      ['1G', G], ['1GiB', G], ['1g', G], ['1T', T], ['1TiB', T], ['2P', 2 * T * K],
      ['1.5G', 1.5 * G], ['0.5k', 512], ['100B', 100], [' 8M ', 8 * M],
    ];
    for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, text);
  });

  it('rejects nonsense with a message naming the flag and text', () => {
    for (const bad of ['12X', '', 'G', '1iB', '-1G', '1e3', '1 G B', '0x10', '1GG', 'abc', '1.5']) {
      assert.throws(
        () => parseSize(bad, { flag: '--mem' }),
        (e: unknown) => e instanceof SizeParseError && e instanceof ArgParseError && e.name === 'SizeParseError' && e.flag === '--mem' && e.text === bad && e.message.includes(`'${bad}'`),
        bad,
      );
    }
    assert.throws(() => parseSize('12X', { flag: '--mem' }), { message: "--mem: cannot parse size '12X' (use e.g. 512M, 1G, 1T)" });
  });

  it('rejects zero unless allowed, fractions of a byte, and overflow', () => {
    assert.throws(() => parseSize('0', { flag: '--mem' }), { message: "--mem: size must be greater than zero, got '0'" });
    assert.equal(parseSize('0', { allowZero: true }), 0);
    assert.throws(() => parseSize('1.5'), /not a whole number of bytes/);
    assert.throws(() => parseSize('9000P'), /too large/);
  });
});

describe('parseHostPort', () => {
  it('reads host:port forms', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:7000'), { host: '127.0.0.1', port: 7000 });
    assert.deepEqual(parseHostPort('dest.example.org:1'), { host: 'dest.example.org', port: 1 });
    assert.deepEqual(parseHostPort('[::1]:65535'), { host: '::1', port: 65535 });
    assert.deepEqual(parseHostPort(':7000', { defaultHost: '0.0.0.0' }), { host: '0.0.0.0', port: 7000 });
    assert.deepEqual(parseHostPort('7000', { defaultHost: '127.0.0.1' }), { host: '127.0.0.1', port: 7000 });
    assert.deepEqual(parseHostPort('localhost:0', { allowPortZero: true }), { host: 'localhost', port: 0 });
  });

  it('rejects bad endpoints with a typed error', () => {
    for (const bad of ['', 'host', 'host:', 'host:port', 'host:70000', 'host:0', '::1:80', '[::1]80', ':80', 'a b:80', 'h:-1']) {
      assert.throws(
        () => parseHostPort(bad, { flag: '--to' }),
        (e: unknown) => e instanceof HostPortParseError && e.userFacing && e.flag === '--to' && e.message.startsWith('--to: '),
        bad,
      );
    }
    assert.throws(() => parseHostPort('foo', { flag: '--to' }), { message: "--to: cannot parse 'foo' as host:port (e.g. 127.0.0.1:7000)" });
    assert.throws(() => parseHostPort('h:70000', { flag: '--to' }), { message: "--to: port 70000 in 'h:70000' is out of range (1..65535)" });
  });
});
