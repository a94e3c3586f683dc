/**
 * A wake-up for code that waits on the processor's progress (a batch scored, an output delivered, a
 * transaction committed): waiters are woken on each signal, and after 50 ms regardless, so that they
 * also notice a deadline or a stop request.
 */
export class Progress {
  private waiters: Array<() => void> = [];

  /** Wakes everything waiting. */
  signal(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves on the next signal, or after 50 ms. */
  next(): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      setTimeout(resolve, 50);
    });
  }

  /** Waits until `done` holds (true), or until the deadline passes or `abandon` holds (false). */
  async until(done: () => boolean, deadline: number, abandon: () => boolean): Promise<boolean> {
    while (!done()) {
      if (Date.now() >= deadline || abandon()) return false;
      await this.next();
    }
    return true;
  }
}
