/**
 * The last N valid feature rows the processor scored, in a ring: the live traffic that a reloaded
 * model is tried on (the canary) before it serves. A batch costs one copy of its rows.
 */
export class RecentRows {
  private readonly rows: Float32Array;
  /** Where the next row goes. */
  private next = 0;
  private filled = 0;

  constructor(readonly capacity: number, private readonly numFeatures: number) {
    this.rows = new Float32Array(capacity * numFeatures);
  }

  /** Rows held, at most the capacity. */
  get size(): number {
    return this.filled;
  }

  /** Adds `n` rows (row-major), keeping only the last `capacity` of all rows added. */
  push(rows: Float32Array, n: number): void {
    if (this.capacity === 0 || n === 0) return;
    const f = this.numFeatures;
    let from = Math.max(0, n - this.capacity);
    while (from < n) {
      const run = Math.min(n - from, this.capacity - this.next);
      this.rows.set(rows.subarray(from * f, (from + run) * f), this.next * f);
      from += run;
      this.next = (this.next + run) % this.capacity;
      this.filled = Math.min(this.capacity, this.filled + run);
    }
  }

  /** A copy of the rows held (oldest first does not matter to a canary), row-major. */
  snapshot(): Float32Array {
    return this.rows.slice(0, this.filled * this.numFeatures);
  }
}
