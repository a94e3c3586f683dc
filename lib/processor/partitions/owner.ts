/**
 * The owner of partition state, in the manner of Kafka Streams' TaskManager: the one place that knows
 * which input partitions this instance holds, which fetched records are still in flight and which are
 * acknowledged, and the one that moves offsets: it stores and commits them, hands them to a
 * transaction, rewinds, and follows the group's rebalances. The fetch stage only reads and asks the
 * owner which records it may still process; the deliver stage only sends and settles, and reports
 * what was acknowledged. Before revoked partitions go, the owner asks the delivery mode (its
 * {@link Guarantee}) to acknowledge and commit what was sent for them.
 */
import { CODES, type KafkaConsumer, type LibrdKafkaError, type Message, type TopicPartition, type TopicPartitionOffset } from 'node-rdkafka';
import type { ProcessorConfig } from '../../config';
import type { Logger } from '../../log';
import type { ProcessorMetrics } from '../../metrics';
import { OffsetTracker, type PartitionOffset, type TrackedBatch } from './ledger';

/** librdkafka's logical offsets: the start and the end of a partition. */
const OFFSET_BEGINNING = -2;
const OFFSET_END = -1;
/** How long the committed offsets are waited for, to rewind or resume. */
const COMMITTED_TIMEOUT_MS = 10_000;
/**
 * Bound on one request for them, asked again until {@link COMMITTED_TIMEOUT_MS}: the call runs on a
 * thread of libuv's pool, which a process that stops must wait for, brokers or not.
 */
const COMMITTED_CALL_MS = 2_000;

/** What a delivery mode does for the owner when partitions are revoked. */
export interface Guarantee {
  /** Acknowledges and commits what was sent for `partitions` before they go (bounded by `deadline`). */
  release(partitions: readonly number[], deadline: number): Promise<void>;
  /** Told of partitions just assigned, before anything of them is fetched. */
  assigned?(partitions: readonly number[]): void;
}

/** Revocations as they stood when a fetch began: records of a partition revoked since are not processed. */
export interface FetchMark {
  readonly revokedSoFar: number;
  readonly revocations: ReadonlyMap<number, number>;
}

/** What the owner needs. */
export interface OwnerContext {
  readonly consumer: KafkaConsumer;
  readonly config: ProcessorConfig;
  readonly log: Logger;
  readonly metrics: ProcessorMetrics;
}

/** The first fatal error of a component, raised once; the processor stops on it. */
export class FatalError {
  private error: Error | undefined;
  private resolveRaised!: (err: Error) => void;
  /** Resolves with the first error raised. */
  readonly raised: Promise<Error> = new Promise((resolve) => { this.resolveRaised = resolve; });

  raise(err: Error): void {
    if (this.error) return;
    this.error = err;
    this.resolveRaised(err);
  }

  get current(): Error | undefined {
    return this.error;
  }
}

/** Owns the partitions of the input topic; see the module comment. */
export class PartitionOwner {
  /** Records in flight per partition, and what may be committed. */
  readonly ledger: OffsetTracker;
  readonly fatal = new FatalError();
  private readonly assigned = new Set<number>();
  /** Bumped for a partition when it is revoked or rewound, so records fetched across that can be recognised. */
  private readonly revocations = new Map<number, number>();
  /** Revocations so far, all partitions together: lets a batch fetched across none skip the checks. */
  private revokedSoFar = 0;
  /** Settles once the last revocation has released its partitions (or the last rewind has moved them). */
  rebalancing: Promise<void> = Promise.resolve();
  /** While a rewind moves the partitions, records fetched meanwhile are dropped without seeks of their own. */
  private rewinding = false;
  /**
   * Set from {@link expectRewind} until the rewind begins: every record fetched meanwhile is dropped,
   * and fetching goes on regardless of the records in flight, because a consume call is where
   * librdkafka reports the consumer's own errors, a fence of this instance among them.
   */
  private rewindDue = false;
  /**
   * Per partition, the offset after the last record whose output this instance delivered and
   * committed (at-least-once) or whose transaction committed (exactly-once), kept across revocations.
   * The group's committed offsets can lag it after a broker restart: an at-least-once commit made
   * meanwhile fails, and a transaction's offsets become readable only once the restarted coordinator
   * has completed it. Reading from the lagging offset would score those records again.
   */
  private readonly delivered = new Map<number, number>();
  private guarantee: Guarantee | undefined;

  constructor(private readonly ctx: OwnerContext) {
    this.ledger = new OffsetTracker(ctx.config.inputTopic);
  }

  /** The group's committed offsets of `toppars`, asked in bounded calls; see {@link COMMITTED_CALL_MS}. */
  private committed(toppars: TopicPartition[], done: (err: LibrdKafkaError | undefined, committed: TopicPartitionOffset[]) => void): void {
    const giveUpAt = Date.now() + COMMITTED_TIMEOUT_MS;
    const ask = (): void => {
      this.ctx.consumer.committed(toppars, COMMITTED_CALL_MS, (err, committed) => {
        if (err && err.code === CODES.ERRORS.ERR__TIMED_OUT && Date.now() < giveUpAt && !this.halted) ask();
        else done(err ?? undefined, committed);
      });
    };
    ask();
  }

  /** Whether a fatal error was raised: waiting for acknowledgements is then pointless. */
  get halted(): boolean {
    return this.fatal.current !== undefined;
  }

  /** The delivery mode to release revoked partitions through; set before the consumer subscribes. */
  serve(guarantee: Guarantee): void {
    this.guarantee = guarantee;
  }

  /** Input partitions currently assigned to this instance, in order. */
  get assignedPartitions(): number[] {
    return [...this.assigned].sort((a, b) => a - b);
  }

  /**
   * Announces a rewind to come (a fenced producer is being replaced first): from now until it begins,
   * fetched records are dropped; the rewind reads them again.
   */
  expectRewind(): void {
    this.rewindDue = true;
  }

  /** Whether fetched records are dropped until a rewind: fetching goes on even with no room for them. */
  get droppingUntilRewind(): boolean {
    return this.rewindDue;
  }

  /** Taken before a fetch, to tell which of its records were fetched across a revocation. */
  mark(): FetchMark {
    return { revokedSoFar: this.revokedSoFar, revocations: new Map(this.revocations) };
  }

  /**
   * The records of a fetched batch that this instance may still process, tracked from now on; none of a
   * partition revoked while the batch was being fetched.
   */
  admit(batch: Message[], mark: FetchMark): { messages: Message[]; tracked: TrackedBatch } | undefined {
    if (this.rewindDue) return undefined;
    const messages = this.revokedSoFar === mark.revokedSoFar && batch.every((m) => this.assigned.has(m.partition))
      ? batch : this.dropRevoked(batch, mark.revocations);
    if (messages.length === 0) return undefined;
    return { messages, tracked: this.ledger.add(messages) };
  }

  /**
   * Drops records of partitions revoked while they were being fetched. A partition that is no longer
   * ours is read again by its new owner from the committed offset. A partition revoked and given back
   * within one fetch may have been read from before or after its reset, so it is dropped and rewound
   * to its first dropped record: nothing is lost, at worst something is scored twice.
   */
  private dropRevoked(batch: Message[], revocationsAtStart: ReadonlyMap<number, number>): Message[] {
    const rewind = new Map<number, number>();
    const kept = batch.filter((m) => {
      if (!this.assigned.has(m.partition)) return false;
      if (this.revocations.get(m.partition) === revocationsAtStart.get(m.partition)) return true;
      rewind.set(m.partition, Math.min(rewind.get(m.partition) ?? Infinity, m.offset));
      return false;
    });
    if (this.rewinding) rewind.clear();
    for (const [partition, offset] of rewind) {
      this.ctx.consumer.seek({ topic: this.ctx.config.inputTopic, partition, offset }, 0, (err) => {
        if (err) this.fatal.raise(new Error(`could not rewind partition ${partition} to offset ${offset}: ${err.message}`));
      });
    }
    if (kept.length < batch.length) {
      this.ctx.log.debug('dropped records of revoked partitions', { dropped: batch.length - kept.length, rewound: [...rewind] });
    }
    return kept;
  }

  /** At-least-once: stores the offsets that advanced, for librdkafka's auto-commit. */
  storeAcknowledged(): void {
    this.store(this.ledger.takeStorable(this.assignedPartitions));
  }

  /** Stores every acknowledged offset of `partitions` (at shutdown: closing the consumer commits them). */
  storeAll(partitions: readonly number[]): void {
    this.store(this.ledger.takeStorable(partitions, true));
  }

  private store(offsets: PartitionOffset[]): void {
    if (offsets.length === 0) return;
    try {
      this.ctx.consumer.offsetsStore(offsets.map((o) => ({ ...o })));
    } catch (err) {
      this.ctx.log.warn('could not store offsets', { offsets, error: err });
    }
  }

  /** At-least-once, before partitions go: commits what was acknowledged, and remembers it. */
  commitAcknowledged(partitions: readonly number[]): void {
    const offsets = this.ledger.takeStorable(partitions, true);
    for (const o of offsets) this.delivered.set(o.partition, Math.max(o.offset, this.delivered.get(o.partition) ?? -1));
    if (offsets.length === 0) return;
    try {
      this.ctx.consumer.offsetsStore(offsets.map((o) => ({ ...o })));
      this.ctx.consumer.commitSync(offsets.map((o) => ({ ...o })));
      this.ctx.log.info('offsets committed', { offsets });
    } catch (err) {
      this.ctx.metrics.commitFailures.inc();
      this.ctx.log.warn('commit failed', { offsets, error: err });
    }
  }

  /** Exactly-once: the offsets a committed transaction moved the group to. */
  committedInTransaction(offsets: readonly PartitionOffset[]): void {
    for (const o of offsets) this.delivered.set(o.partition, Math.max(o.offset, this.delivered.get(o.partition) ?? -1));
  }

  /** Exactly-once: per partition, the offset after the last record of the given batches. */
  offsetsAfter(batches: Iterable<TrackedBatch>): PartitionOffset[] {
    const after = new Map<number, number>();
    for (const batch of batches) {
      for (const [partition, offset] of this.ledger.endOffsets(batch)) {
        if (offset > (after.get(partition) ?? -1)) after.set(partition, offset);
      }
    }
    return [...after].map(([partition, offset]) => ({ topic: this.ctx.config.inputTopic, partition, offset }));
  }

  /**
   * Moves every assigned partition back to its committed offset (where there is none, to where
   * `auto.offset.reset` starts), after an aborted transaction. Everything in flight is forgotten: it is
   * read again. Records fetched before the move are dropped, and fetching waits until every partition
   * has moved.
   */
  rewind(): Promise<void> {
    const { consumer, config } = this.ctx;
    this.ledger.dropAll();
    const partitions = this.assignedPartitions;
    for (const p of partitions) this.revocations.set(p, (this.revocations.get(p) ?? 0) + 1);
    this.revokedSoFar++;
    this.rewinding = true;
    this.rewindDue = false;
    // A partition revoked before the committed offsets come back restarts from them by itself when it
    // is assigned again; a late seek would move it back past transactions committed in between.
    const rewoundAt = new Map(partitions.map((p) => [p, this.revocations.get(p)]));
    const stillOurs = (p: number): boolean => this.assigned.has(p) && this.revocations.get(p) === rewoundAt.get(p);
    const toppars = partitions.map((partition) => ({ topic: config.inputTopic, partition }));
    const fromStart = config.kafkaProperties['auto.offset.reset'] === 'latest' ? OFFSET_END : OFFSET_BEGINNING;
    const moved = new Promise<void>((resolve, reject) => {
      if (toppars.length === 0) {
        resolve();
        return;
      }
      this.committed(toppars, (err, committed) => {
        if (err) {
          reject(new Error(`could not read the committed offsets to rewind to: ${err.message}`));
          return;
        }
        const current = committed.filter((c) => stillOurs(c.partition));
        let left = current.length;
        if (left === 0) resolve();
        for (const c of current) {
          const group = typeof c.offset === 'number' && c.offset >= 0 ? c.offset : fromStart;
          // Never behind what this instance itself committed: see `delivered`.
          const offset = Math.max(group, this.delivered.get(c.partition) ?? fromStart);
          consumer.seek({ topic: c.topic, partition: c.partition, offset }, 0, (seekErr) => {
            if (seekErr) {
              reject(new Error(`could not rewind partition ${c.partition} to offset ${offset}: ${seekErr.message}`));
              return;
            }
            if (--left === 0) resolve();
          });
        }
        this.ctx.log.info('rewound to the committed offsets', {
          offsets: current.map((c) => ({ partition: c.partition, offset: c.offset })),
        });
      });
    }).finally(() => { this.rewinding = false; });
    // The caller of rewind() handles its failure; those who only wait for it must not see it as theirs
    // (an unhandled rejection during the shutdown's wait ended the process with a stack trace).
    this.rebalancing = this.rebalancing.then(() => moved).catch(() => undefined);
    return moved;
  }

  /**
   * Partitions this instance held before start again after what it delivered, not at a committed
   * offset that fell behind: a broker that restarts may forget the group, and the commits made meanwhile
   * fail. They are paused until the committed offsets are known; then each starts at the larger of the
   * committed offset and its delivered one (another instance may have delivered more in between), and
   * a delivered offset ahead of the group's is committed.
   */
  private resumeAfterDelivered(delivered: Map<number, number>): void {
    const { consumer, config, log } = this.ctx;
    const topic = config.inputTopic;
    const toppars = [...delivered.keys()].map((partition) => ({ topic, partition }));
    consumer.pause(toppars);
    const resume = (): void => {
      const still = toppars.filter((t) => this.assigned.has(t.partition));
      try {
        if (still.length > 0) consumer.resume(still);
      } catch (e) {
        log.warn('could not resume partitions', { partitions: still.map((t) => t.partition), error: e });
      }
    };
    this.committed(toppars, (err, committed) => {
      if (err) {
        log.warn('committed offsets not known; resuming where the consumer stands', { error: err.message });
        resume();
        return;
      }
      const ahead: Array<{ topic: string; partition: number; offset: number }> = [];
      for (const c of committed) {
        const ours = delivered.get(c.partition)!;
        if (!this.assigned.has(c.partition) || (c.offset !== undefined && c.offset >= ours)) continue;
        ahead.push({ topic, partition: c.partition, offset: ours });
      }
      if (ahead.length === 0) {
        resume();
        return;
      }
      log.info('resuming after the delivered outputs, ahead of the committed offsets', {
        partitions: ahead.map((a) => ({ partition: a.partition, delivered: a.offset,
          committed: committed.find((c) => c.partition === a.partition)?.offset })),
      });
      let left = ahead.length;
      for (const a of ahead) {
        consumer.seek(a, 0, (seekErr) => {
          if (seekErr) log.warn('could not move to the delivered offset', { partition: a.partition, error: seekErr.message });
          if (--left === 0) {
            try {
              // Under exactly-once the transaction's own commit lands once the coordinator completes it.
              if (config.guarantee !== 'exactly-once') consumer.commit(ahead);
            } catch (e) {
              this.ctx.metrics.commitFailures.inc();
              log.warn('commit failed', { offsets: ahead, error: e });
            }
            resume();
          }
        });
      }
    });
  }

  /** librdkafka's rebalance callback: the consumer is created with it. */
  onRebalance(err: LibrdKafkaError, assignment: TopicPartition[]): void {
    const { consumer, log, metrics, config } = this.ctx;
    const cooperative = consumer.rebalanceProtocol() === 'COOPERATIVE';
    const partitions = assignment.map((a) => a.partition);
    try {
      if (err.code === CODES.ERRORS.ERR__ASSIGN_PARTITIONS) {
        for (const p of partitions) this.assigned.add(p);
        const delivered = new Map<number, number>();
        for (const p of partitions) {
          const offset = this.delivered.get(p);
          if (offset !== undefined) delivered.set(p, offset);
        }
        if (cooperative) consumer.incrementalAssign(assignment);
        else consumer.assign(assignment);
        log.info('partitions assigned', { partitions, assigned: this.assignedPartitions });
        metrics.assignedPartitions.set({}, this.assigned.size);
        this.guarantee?.assigned?.(partitions);
        if (delivered.size > 0) this.resumeAfterDelivered(delivered);
      } else if (err.code === CODES.ERRORS.ERR__REVOKE_PARTITIONS) {
        for (const p of partitions) {
          this.assigned.delete(p);
          this.revocations.set(p, (this.revocations.get(p) ?? 0) + 1);
          this.revokedSoFar++;
          metrics.consumerLag.delete({ partition: String(p) });
        }
        metrics.assignedPartitions.set({}, this.assigned.size);
        const released = this.guarantee?.release(partitions, Date.now() + config.shutdownTimeoutMs) ?? Promise.resolve();
        // Fetching waits for this release and for a rewind still under way alike.
        const before = this.rebalancing.catch(() => undefined);
        this.rebalancing = Promise.all([before, released]).then(() => undefined).catch((e) => log.warn('releasing revoked partitions failed', { partitions, error: e }))
          .finally(() => {
            // Late acknowledgements of these partitions are ignored from now on.
            this.ledger.drop(partitions);
            try {
              if (cooperative) consumer.incrementalUnassign(assignment);
              else consumer.unassign();
            } catch (e) {
              log.warn('unassign failed', { error: e });
            }
            log.info('partitions revoked', { partitions, assigned: this.assignedPartitions });
          });
      } else {
        log.error('rebalance error', { error: err.message });
        consumer.unassign();
      }
    } catch (e) {
      log.warn('rebalance handling failed', { error: e });
    }
  }
}
