/**
 * At-least-once bookkeeping. Every consumed record is tracked until its output has a successful
 * delivery report; a partition's storable offset only ever advances over a contiguous run of finished
 * records, so a commit never covers a record whose output could still be lost.
 *
 * Records are tracked per batch, in arrays: a batch registers once, and a delivery report names its
 * record by the batch and the row, so the hot path allocates nothing per record and keeps no map
 * entry per offset.
 */

/** The records of one partition within one batch, in offset order. */
class Slice {
  /** Rows' offsets, in consumption (= offset) order. */
  readonly offsets: number[] = [];
  /** 1 once the row's output is delivered. */
  done!: Uint8Array;
  /** Rows not yet delivered. */
  remaining = 0;
  /** Rows before this index are delivered and counted into the partition's storable offset. */
  cursor = 0;
  /** Set when the partition was revoked and forgotten: late reports are ignored. */
  dropped = false;
  constructor(readonly track: PartitionTrack) {}
}

class PartitionTrack {
  constructor(readonly partition: number) {}
  /** Slices in consumption order; `head` skips the finished prefix. */
  slices: Slice[] = [];
  head = 0;
  /** Records of this partition not yet delivered. */
  pending = 0;
  /** The next offset to consume after everything finished so far, i.e. what to store. */
  storable: number | undefined;
  stored: number | undefined;
  /** Set when an output failed for good; its record stays pending, so nothing past it is stored. */
  failed = false;
}

/** A fetched batch as the tracker knows it: for each row, its partition's slice and its index there. */
export class TrackedBatch {
  /** Per row: the slice holding it. */
  readonly sliceOf: Slice[];
  /** Per row: its index within that slice. */
  readonly indexInSlice: Int32Array;
  /** The batch's slices, one per partition. */
  readonly slices: Slice[] = [];
  constructor(size: number) {
    this.sliceOf = new Array<Slice>(size);
    this.indexInSlice = new Int32Array(size);
  }
}

/** A partition's offset ready to hand to `offsetsStore`/`commit`. */
export interface PartitionOffset {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
}

/** The position of one consumed record. */
export interface RecordPosition {
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
      t = new PartitionTrack(partition);
      this.partitions.set(partition, t);
    }
    return t;
  }

  /** Starts tracking a consumed batch; each row then waits for one delivered output. */
  add(records: readonly RecordPosition[]): TrackedBatch {
    const batch = new TrackedBatch(records.length);
    const slices = new Map<number, Slice>();
    for (let row = 0; row < records.length; row++) {
      const { partition, offset } = records[row];
      let slice = slices.get(partition);
      if (!slice) {
        const t = this.track(partition);
        slice = new Slice(t);
        t.slices.push(slice);
        slices.set(partition, slice);
        batch.slices.push(slice);
      }
      batch.sliceOf[row] = slice;
      batch.indexInSlice[row] = slice.offsets.length;
      slice.offsets.push(offset);
    }
    for (const slice of batch.slices) {
      slice.done = new Uint8Array(slice.offsets.length);
      slice.remaining = slice.offsets.length;
      slice.track.pending += slice.offsets.length;
    }
    this.inFlightCount += records.length;
    return batch;
  }

  /** Marks the output of a batch's row as delivered. */
  delivered(batch: TrackedBatch, row: number): void {
    const slice = batch.sliceOf[row];
    const index = batch.indexInSlice[row];
    if (slice.dropped || slice.done[index] === 1) return;
    slice.done[index] = 1;
    slice.remaining--;
    const t = slice.track;
    t.pending--;
    this.inFlightCount--;
    // A failed record is never marked done, so the scan below never passes it.
    while (t.head < t.slices.length) {
      const s = t.slices[t.head];
      while (s.cursor < s.offsets.length && s.done[s.cursor] === 1) s.cursor++;
      if (s.cursor > 0) t.storable = s.offsets[s.cursor - 1] + 1;
      if (s.cursor < s.offsets.length) break;
      t.head++;
    }
    if (t.head > 64 && t.head * 2 > t.slices.length) {
      t.slices = t.slices.slice(t.head);
      t.head = 0;
    }
  }

  /** Per partition of the batch, the offset after its last record there. */
  endOffsets(batch: TrackedBatch): Array<[partition: number, offset: number]> {
    return batch.slices.map((s) => [s.track.partition, s.offsets[s.offsets.length - 1] + 1]);
  }

  /** Where a batch's row was read from. */
  positionOf(batch: TrackedBatch, row: number): RecordPosition {
    const slice = batch.sliceOf[row];
    return { partition: slice.track.partition, offset: slice.offsets[batch.indexInSlice[row]] };
  }

  /** Marks a row's output as lost for good: its partition's storable offset stops before this record. */
  failed(batch: TrackedBatch, row: number): void {
    const slice = batch.sliceOf[row];
    if (!slice.dropped) slice.track.failed = true;
  }

  /** Whether any partition has a failed output. */
  get hasFailure(): boolean {
    for (const t of this.partitions.values()) if (t.failed) return true;
    return false;
  }

  /** Records still waiting for delivery reports in the given partitions (all when omitted). */
  pending(partitions?: readonly number[]): number {
    let n = 0;
    for (const [p, t] of this.partitions) {
      if (!partitions || partitions.includes(p)) n += t.pending;
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

  /** Forgets every partition (after an aborted transaction): late reports for them are ignored. */
  dropAll(): void {
    this.drop([...this.partitions.keys()]);
  }

  /** Forgets partitions (after they were revoked): late delivery reports for them are ignored. */
  drop(partitions: readonly number[]): void {
    for (const p of partitions) {
      const t = this.partitions.get(p);
      if (!t) continue;
      for (let i = t.head; i < t.slices.length; i++) t.slices[i].dropped = true;
      this.inFlightCount -= t.pending;
      this.partitions.delete(p);
    }
  }
}
