/**
 * Little-endian loads and stores of 1-8 bytes into byte arrays: how a vCPU
 * moves a guest access's bytes in and out of a host frame (and how the walker
 * bench's raw baseline moves the same bytes without virtualization).
 */
/** Little-endian store of `size` (1-8) bytes of (lo, hi). */
export function storeLE(b: Uint8Array, o: number, size: number, lo: number, hi: number): void {
  b[o] = lo;
  if (size > 1) {
    b[o + 1] = lo >>> 8;
    if (size > 2) {
      b[o + 2] = lo >>> 16;
      if (size > 3) {
        b[o + 3] = lo >>> 24;
        for (let k = 4; k < size; k++) b[o + k] = hi >>> (8 * (k - 4));
      }
    }
  }
}

/** Little-endian load of up to 8 bytes, folded into one u32 (low word XOR high word). */
export function loadLE(b: Uint8Array, o: number, size: number): number {
  let lo = b[o]!;
  if (size > 1) {
    lo |= b[o + 1]! << 8;
    if (size > 2) {
      lo |= b[o + 2]! << 16;
      if (size > 3) {
        lo |= b[o + 3]! << 24;
        let hi = 0;
        for (let k = 4; k < size; k++) hi |= b[o + k]! << (8 * (k - 4));
        lo ^= hi;
      }
    }
  }
  return lo >>> 0;
}
