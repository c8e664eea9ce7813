/**
 * A batch of guest memory accesses, as flat typed arrays so that producing and
 * consuming them allocates nothing per access. Workloads (synthetic or trace)
 * fill a batch; a vCPU runs it.
 *
 * `addr` is a gpa under identity addressing and a gva under paged addressing.
 * `line` is where the record came from (trace line number, or sequence number
 * for synthetic workloads), so errors can name it.
 */
export const enum AccessKind {
  /** Instruction fetch (lackey I). */
  Fetch = 0,
  /** Load (lackey L). */
  Load = 1,
  /** Store (lackey S). */
  Store = 2,
  /** Modify = load then store (lackey M). */
  Modify = 3,
}

export class AccessBatch {
  readonly kind: Uint8Array;
  readonly addr: Float64Array;
  readonly size: Uint8Array;
  readonly line: Float64Array;
  length = 0;

  constructor(readonly capacity = 4096) {
    this.kind = new Uint8Array(capacity);
    this.addr = new Float64Array(capacity);
    this.size = new Uint8Array(capacity);
    this.line = new Float64Array(capacity);
  }

  /** Appends one record; returns false when full. */
  push(kind: AccessKind, addr: number, size: number, line: number): boolean {
    const n = this.length;
    if (n >= this.capacity) return false;
    this.kind[n] = kind;
    this.addr[n] = addr;
    this.size[n] = size;
    this.line[n] = line;
    this.length = n + 1;
    return true;
  }

  clear(): void {
    this.length = 0;
  }
}

/** A source of access batches (synthetic generator or trace reader). */
export interface AccessSource {
  /**
   * Refills `batch` (clearing it first); resolves to false at end of input.
   * Every source here resolves to true exactly when the batch holds at least
   * one record, so `while (await src.fill(b)) run(b)` sees every record and
   * never an empty batch. Synthetic sources also take an optional maxCount
   * (`fill(batch, n)`: at most n records) to pace them in virtual time.
   */
  fill(batch: AccessBatch, maxCount?: number): Promise<boolean> | boolean;
  /** Human name for messages and reports ("trace sort.lackey.gz", "uniform"). */
  readonly name: string;
}
