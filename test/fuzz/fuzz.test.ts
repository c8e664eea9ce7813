/**
 * The fuzzers' short run in `npm test` (properties.ts), plus every finding a
 * long run (`npm run fuzz -- --minutes N`) saved under regressions/: each is
 * replayed as its own case.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { lackeyNoiseProperty, lackeyValidProperty, streamProperty } from './properties.ts';

const PROPS = { stream: streamProperty, 'lackey-valid': lackeyValidProperty, 'lackey-noise': lackeyNoiseProperty } as const;
const REG_DIR = join(import.meta.dirname, 'regressions');

describe('fuzzers (short run)', { timeout: 180_000 }, () => {
  it('stream decoder: mutated streams are accepted or refused with a named error; no batch handed on unchecked', async () => {
    await fc.assert(streamProperty(), { numRuns: 120 });
  });
  it('lackey reader: valid traces (CRLF, == lines, blanks) read exactly as a naive parser reads them', async () => {
    await fc.assert(lackeyValidProperty(), { numRuns: 100 });
  });
  it('lackey reader: random bytes, long lines, NUL, huge sizes end or fail with a named error', async () => {
    await fc.assert(lackeyNoiseProperty(), { numRuns: 100 });
  });
});

describe('fuzz regressions', () => {
  const files = readdirSync(REG_DIR).filter((f) => f.endsWith('.json'));
  for (const f of files) {
    it(f, async () => {
      const r = JSON.parse(readFileSync(join(REG_DIR, f), 'utf8')) as { property: keyof typeof PROPS; seed: number; path: string };
      const prop = PROPS[r.property]() as unknown as fc.IAsyncProperty<[unknown]>;
      await fc.assert(prop, { seed: r.seed, path: r.path, numRuns: 1 });
    });
  }
});
