/**
 * First come, first served turns at a bounded resource: at most `limit` holders at once, and the
 * waiters are let in in the order they asked. The score stage runs its predictions through it, so
 * batches are predicted in the order they were fetched and never more at once than the cores allow.
 */
export class Turns {
  private holders = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`turns need a limit of at least 1, got ${limit}`);
  }

  /** Runs `work` when its turn comes; the turn is given back however `work` ends. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.holders < this.limit) this.holders++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.holders--;
    }
  }
}
