/**
 * The end-to-end digest both sides compute (format.ts): a hash over every
 * page's hash, in gfn order, then the vCPU state's hash. Each side reads its
 * own memory to compute it — the sender does not reuse its "hash at last
 * send" table, because a page whose dirty bit was lost would then go unseen;
 * the digest is what catches that.
 */
import { hashBytes, hashWords, SEED_DIGEST, SEED_PAGE } from './stream/checksum.ts';
import { digestHex } from './stream/format.ts';

export interface Digest {
  readonly lo: number;
  readonly hi: number;
  readonly hex: string;
}

/**
 * `pageHashInto(gfn, out, i)` writes the page hash of gfn into out[i], out[i+1].
 */
export function computeDigest(
  pageCount: number,
  pageHashInto: (gfn: number, out: Uint32Array, outIndex: number) => void,
  vcpuState: Uint8Array,
): Digest {
  const words = new Uint32Array(2 * pageCount + 2);
  for (let gfn = 0; gfn < pageCount; gfn++) pageHashInto(gfn, words, 2 * gfn);
  return digestOfPageHashes(words, pageCount, vcpuState);
}

/**
 * The digest from `words` already holding every page's hash (lo, hi at 2·gfn)
 * and room for two more words at 2·pageCount (the vCPU state's hash goes there).
 */
export function digestOfPageHashes(words: Uint32Array, pageCount: number, vcpuState: Uint8Array): Digest {
  hashBytes(vcpuState, 0, vcpuState.length, SEED_PAGE, vcpuState.length, words, 2 * pageCount);
  const out = new Uint32Array(2);
  hashWords(words, 0, words.length, SEED_DIGEST, vcpuState.length, out, 0);
  return { lo: out[0]!, hi: out[1]!, hex: digestHex(out[0]!, out[1]!) };
}
