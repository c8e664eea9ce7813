/**
 * Seeded pseudo-random source (xoshiro128**, seeded through splitmix32).
 * The engine never calls Math.random: every random choice comes from an Rng
 * that the caller seeded, so a seed reproduces a run bit for bit.
 */
export interface Rng {
  /** Uniform u32. */
  nextU32(): number;
  /** Uniform float in [0, 1). */
  nextFloat(): number;
  /** Uniform integer in [0, n), n ≤ 2^53. */
  nextInt(n: number): number;
}

/**
 * xoshiro128**, written so that V8 allocates nothing per draw:
 *  - the state words are int32 in fields initialised to 0, i.e. Smi fields. A
 *    field only declared (`a: number;`) starts as undefined under ES2022 class
 *    fields and becomes a tagged field, where every store of a u32 ≥ 2^31
 *    allocates a heap number;
 *  - nextU32 reads and writes each word once and calls nothing: 118 bytes of
 *    bytecode (was 167 plus two rotl calls). Its u32 result and nextFloat's
 *    double are boxed by any caller whose optimised code did not inline them,
 *    and TurboFan inlines at most 920 bytes of bytecode into one function, so
 *    the smaller these are, the more of a generator's draws get inlined.
 */
export class Xoshiro128 implements Rng {
  private a = 0;
  private b = 0;
  private c = 0;
  private d = 0;

  constructor(seed: number) {
    let s = seed >>> 0;
    const split = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = split() | 0;
    this.b = split() | 0;
    this.c = split() | 0;
    this.d = split() | 0;
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  nextU32(): number {
    const a = this.a;
    const b = this.b;
    const c = this.c ^ a;
    const d = this.d ^ b;
    this.a = a ^ d;
    this.b = b ^ c;
    this.c = c ^ (b << 9);
    this.d = (d << 11) | (d >>> 21); // rotl(d, 11)
    // rotl(b * 5, 7) * 9, mod 2^32: the sums are exact doubles and every use truncates to 32 bits.
    const x = (b << 2) + b;
    const y = (x << 7) | (x >>> 25);
    return ((y << 3) + y) >>> 0;
  }

  nextFloat(): number {
    // 53 random bits.
    return ((this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6)) / 9007199254740992;
  }

  nextInt(n: number): number {
    if (n <= 0x100000000) return Math.floor((this.nextU32() / 0x100000000) * n);
    return Math.floor(this.nextFloat() * n);
  }
}
