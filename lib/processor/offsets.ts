/**
 * At-least-once bookkeeping. Every consumed record is tracked until each output derived from it has a
 * successful delivery report; a partition's storable offset only ever advances over a contiguous run of
 * finished records, so a commit never covers a record whose output could still be lost.
 */

interface Entry {
  readonly offset: number;
  pending: number;
}

class PartitionTrack {
  /** Tracked records in consumption (= offset) order; `head` skips the finished prefix. */
  entries: Entry[] = [];
  head = 0;
  byOffset = new Map<number, Entry>();
  /** The next offset to consume after everything finished so far, i.e. what to store. */
  storable: number | undefined;
  stored: number | undefined;
  /** Set when an output failed for good; its record stays pending, so nothing past it is stored. */
  failedAt: number | undefined;
}

/** A partition's offset ready to hand to `offsetsStore`/`commit`. */
export interface PartitionOffset {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
}

/** Tracks in-flight records of the partitions of one topic. */
export class OffsetTracker {
  private readonly partitions = new Map<number, PartitionTrack>();
  private inFlightCount = 0;

  constructor(private readonly topic: string) {}

  /** Records in flight across all partitions. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  private track(partition: number): PartitionTrack {
    let t = this.partitions.get(partition);
    if (!t) {
      t = new PartitionTrack();
      this.partitions.set(partition, t);
    }
    return t;
  }

  /** Starts tracking a consumed record that will produce `outputs` outputs (at least 1). */
  add(partition: number, offset: number, outputs = 1): void {
    const t = this.track(partition);
    const entry = { offset, pending: outputs };
    t.entries.push(entry);
    t.byOffset.set(offset, entry);
    this.inFlightCount++;
  }

  /** Marks one output of a record as delivered. */
  delivered(partition: number, offset: number): void {
    const t = this.partitions.get(partition);
    const entry = t?.byOffset.get(offset);
    if (!t || !entry || entry.pending === 0) return; // partition was revoked and dropped meanwhile
    entry.pending--;
    if (entry.pending > 0) return;
    this.inFlightCount--;
    // A failed record keeps its pending count, so the scan below never passes it.
    while (t.head < t.entries.length && t.entries[t.head].pending === 0) {
      const done = t.entries[t.head++];
      t.byOffset.delete(done.offset);
      t.storable = done.offset + 1;
    }
    if (t.head > 1024 && t.head * 2 > t.entries.length) {
      t.entries = t.entries.slice(t.head);
      t.head = 0;
    }
  }

  /** Marks an output as lost for good: the partition's storable offset stops before this record. */
  failed(partition: number, offset: number): void {
    const t = this.track(partition);
    if (t.failedAt === undefined || offset < t.failedAt) t.failedAt = offset;
  }

  /** Whether any partition has a failed output. */
  get hasFailure(): boolean {
    for (const t of this.partitions.values()) if (t.failedAt !== undefined) return true;
    return false;
  }

  /** Records still waiting for delivery reports in the given partitions (all when omitted). */
  pending(partitions?: readonly number[]): number {
    let n = 0;
    for (const [p, t] of this.partitions) {
      if (partitions && !partitions.includes(p)) continue;
      for (let i = t.head; i < t.entries.length; i++) if (t.entries[i].pending > 0) n++;
    }
    return n;
  }

  /**
   * Offsets that advanced since the last call (or all known, with `all`), for the given partitions
   * (all when omitted), and remembers them as stored.
   */
  takeStorable(partitions?: readonly number[], all = false): PartitionOffset[] {
    const out: PartitionOffset[] = [];
    for (const [p, t] of this.partitions) {
      if (partitions && !partitions.includes(p)) continue;
      if (t.storable === undefined || (!all && t.storable === t.stored)) continue;
      t.stored = t.storable;
      out.push({ topic: this.topic, partition: p, offset: t.storable });
    }
    return out;
  }

  /** Forgets partitions (after they were revoked): late delivery reports for them are ignored. */
  drop(partitions: readonly number[]): void {
    for (const p of partitions) {
      const t = this.partitions.get(p);
      if (!t) continue;
      for (let i = t.head; i < t.entries.length; i++) if (t.entries[i].pending > 0) this.inFlightCount--;
      this.partitions.delete(p);
    }
  }
}
