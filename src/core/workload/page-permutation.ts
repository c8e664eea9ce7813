/**
 * A seeded bijection of [0, n) in O(1) memory: a 4-round balanced Feistel
 * network over the smallest even bit width covering n, with cycle-walking
 * (re-encrypt until the value falls below n). Used to scatter zipf ranks over
 * guest pages without an O(pages) permutation table, so a 1 TiB guest
 * (2^28 pages) costs nothing to set up.
 *
 * The Feistel domain is < 4n, so cycle-walking takes < 4 rounds of the
 * network on average. Values are JS numbers; n ≤ 2^52.
 */
import type { Rng } from '../rng.ts';

const ROUNDS = 4;

export class PagePermutation {
  private readonly halfBits: number;
  private readonly halfSize: number;
  private readonly halfMask: number;
  private readonly keys: Uint32Array;

  constructor(
    readonly n: number,
    rng: Rng,
  ) {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 52) {
      throw new RangeError(`permutation size must be an integer in [1, 2^52], got ${n}`);
    }
    let bits = 2;
    while (2 ** bits < n) bits++;
    this.halfBits = (bits + 1) >>> 1;
    this.halfSize = 2 ** this.halfBits;
    this.halfMask = this.halfSize - 1;
    this.keys = new Uint32Array(ROUNDS);
    for (let i = 0; i < ROUNDS; i++) this.keys[i] = rng.nextU32();
  }

  /** The image of `x` (0 ≤ x < n): a distinct value in [0, n). */
  map(x: number): number {
    const n = this.n;
    let v = x;
    do v = this.encrypt(v);
    while (v >= n);
    return v;
  }

  private encrypt(x: number): number {
    const size = this.halfSize;
    const mask = this.halfMask;
    const keys = this.keys;
    let left = Math.floor(x / size);
    let right = x - left * size;
    for (let i = 0; i < ROUNDS; i++) {
      const f = mix32(right ^ keys[i]!) & mask;
      const next = (left ^ f) & mask;
      left = right;
      right = next;
    }
    return left * size + right;
  }
}

/** murmur3's 32-bit finaliser: a cheap bijective avalanche mix. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
