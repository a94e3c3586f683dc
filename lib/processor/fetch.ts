/**
 * The fetch stage: takes batches from the consumer and follows the group's rebalances. It hands each
 * batch to the processor and never keeps a record of a partition that was revoked while it was being
 * fetched.
 */
import { CODES, type KafkaConsumer, type LibrdKafkaError, type Message, type TopicPartition } from 'node-rdkafka';
import type { ProcessorConfig } from '../config';
import type { Logger } from '../log';
import type { ProcessorMetrics } from '../metrics';

const ERR_ASSIGN_PARTITIONS = CODES.ERRORS.ERR__ASSIGN_PARTITIONS;
const ERR_REVOKE_PARTITIONS = CODES.ERRORS.ERR__REVOKE_PARTITIONS;
/** librdkafka's logical offsets: the start and the end of a partition. */
const OFFSET_BEGINNING = -2;
const OFFSET_END = -1;
/** How long a consume call waits for the first record of a batch before looking at the world again. */
const IDLE_CONSUME_MS = 100;

/** What the fetch stage needs from the processor. */
export interface FetchContext {
  readonly consumer: KafkaConsumer;
  readonly config: ProcessorConfig;
  readonly log: Logger;
  readonly metrics: ProcessorMetrics;
  /** Whether the fetch loop should end. */
  stopping(): boolean;
  /** Whether the next batch may be taken now: the scorer is free and the in-flight bound not reached. */
  hasRoom(): boolean;
  /** Resolves on the next progress (a batch scored, an output delivered), or after a short while. */
  nextProgress(): Promise<void>;
  /** Takes a fetched batch of records of assigned partitions. */
  dispatch(batch: Message[]): void;
  /** Before revoked partitions go: lets their outputs finish and commits their offsets. */
  release(partitions: number[]): Promise<void>;
  /** Where this instance's delivered outputs end, for partitions it held before (see Delivery). */
  deliveredUpTo(partitions: readonly number[]): Map<number, number>;
  /** Stops the processor with a fatal error. */
  fail(err: Error): void;
}

/** Fetches batches and handles rebalances; see the module comment. */
export class Fetcher {
  private readonly assigned = new Set<number>();
  /** Bumped for a partition when it is revoked, so records fetched across a revocation can be recognised. */
  private readonly revocations = new Map<number, number>();
  /** Revocations so far, all partitions together: lets a batch fetched across none skip the checks. */
  private revokedSoFar = 0;
  /** Settles once the last revocation has released its partitions (or the last rewind has moved them). */
  rebalancing: Promise<void> = Promise.resolve();
  /** While a rewind moves the partitions, records fetched meanwhile are dropped without seeks of their own. */
  private rewinding = false;

  constructor(private readonly ctx: FetchContext) {}

  /** Input partitions currently assigned to this instance, in order. */
  get assignedPartitions(): number[] {
    return [...this.assigned].sort((a, b) => a - b);
  }

  /**
   * Natural batching: whenever the scorer is free, the next batch is whatever librdkafka has fetched
   * by then (up to `batchSize`), taken at once. While one batch is scored the next one accumulates,
   * so at low load a record waits for no timer, and under load batches grow by themselves. Only when
   * nothing is fetched does the loop block, on the first record to come.
   *
   * `batchWaitMs` > 0 adds a bounded wait, from the first record, for a batch to fill; librdkafka's
   * consume(n) waits per message, so a slow trickle could otherwise hold a batch far longer.
   */
  async run(): Promise<void> {
    const { batchSize, batchWaitMs } = this.ctx.config;
    while (!this.ctx.stopping()) {
      await this.rebalancing;
      if (!this.ctx.hasRoom()) {
        await this.ctx.nextProgress();
        continue;
      }
      const revokedAtStart = this.revokedSoFar;
      const revocationsAtStart = new Map(this.revocations);
      let batch = await this.consume(batchSize, 0);
      if (batch.length === 0) {
        batch = await this.consume(1, IDLE_CONSUME_MS);
        if (batch.length === 0) continue;
        if (batchSize > 1) batch = batch.concat(await this.consume(batchSize - 1, 0));
      }
      const firstAt = Date.now();
      while (batchWaitMs > 0 && batch.length < batchSize && !this.ctx.stopping()) {
        const more = await this.consume(batchSize - batch.length, 0);
        batch = batch.concat(more);
        if (more.length > 0 || batch.length >= batchSize) continue;
        const left = batchWaitMs - (Date.now() - firstAt);
        if (left <= 0) break;
        const one = await this.consume(1, left);
        if (one.length === 0) break;
        batch = batch.concat(one);
      }
      const current = this.revokedSoFar === revokedAtStart && batch.every((m) => this.assigned.has(m.partition))
        ? batch : this.dropRevoked(batch, revocationsAtStart);
      if (current.length > 0) this.ctx.dispatch(current);
    }
  }

  /**
   * One consume call. librdkafka reports passing trouble (a broker connection lost, a leader moving)
   * through consume as well and recovers by itself, so only a fatal error ends the fetch loop.
   */
  private async consume(max: number, timeoutMs: number): Promise<Message[]> {
    const { consumer } = this.ctx;
    consumer.setDefaultConsumeTimeout(timeoutMs);
    try {
      return await new Promise<Message[]>((resolve, reject) => {
        consumer.consume(max, (err, messages) => (err ? reject(err) : resolve(messages)));
      });
    } catch (err) {
      const e = err as LibrdKafkaError;
      if (e.isFatal || e.code === CODES.ERRORS.ERR__FATAL) throw new Error(fatalConsumerMessage(e, this.ctx.config.instanceId));
      this.ctx.log.warn('consume failed; retrying', { error: e.message, code: e.code });
      await new Promise((resolve) => setTimeout(resolve, IDLE_CONSUME_MS));
      return [];
    }
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
        if (err) this.ctx.fail(new Error(`could not rewind partition ${partition} to offset ${offset}: ${err.message}`));
      });
    }
    if (kept.length < batch.length) {
      this.ctx.log.debug('dropped records of revoked partitions', { dropped: batch.length - kept.length, rewound: [...rewind] });
    }
    return kept;
  }

  /**
   * Moves every assigned partition back to its committed offset (where there is none, to where
   * `auto.offset.reset` starts), after an aborted transaction. Records fetched before the move are
   * dropped, and the fetch loop waits until every partition has moved.
   */
  rewind(): Promise<void> {
    const { consumer, config } = this.ctx;
    const partitions = this.assignedPartitions;
    for (const p of partitions) this.revocations.set(p, (this.revocations.get(p) ?? 0) + 1);
    this.revokedSoFar++;
    this.rewinding = true;
    const toppars = partitions.map((partition) => ({ topic: config.inputTopic, partition }));
    const fromStart = config.kafkaProperties['auto.offset.reset'] === 'latest' ? OFFSET_END : OFFSET_BEGINNING;
    const moved = new Promise<void>((resolve, reject) => {
      if (toppars.length === 0) {
        resolve();
        return;
      }
      consumer.committed(toppars, 10_000, (err, committed) => {
        if (err) {
          reject(new Error(`could not read the committed offsets to rewind to: ${err.message}`));
          return;
        }
        let left = committed.length;
        for (const c of committed) {
          const offset = typeof c.offset === 'number' && c.offset >= 0 ? c.offset : fromStart;
          consumer.seek({ topic: c.topic, partition: c.partition, offset }, 0, (seekErr) => {
            if (seekErr) {
              reject(new Error(`could not rewind partition ${c.partition} to offset ${offset}: ${seekErr.message}`));
              return;
            }
            if (--left === 0) resolve();
          });
        }
        this.ctx.log.info('rewound to the committed offsets', {
          offsets: committed.map((c) => ({ partition: c.partition, offset: c.offset })),
        });
      });
    }).finally(() => { this.rewinding = false; });
    this.rebalancing = this.rebalancing.then(() => moved);
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
    consumer.committed(toppars, 10_000, (err, committed) => {
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
              consumer.commit(ahead);
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
    const { consumer, log, metrics } = this.ctx;
    const cooperative = consumer.rebalanceProtocol() === 'COOPERATIVE';
    const partitions = assignment.map((a) => a.partition);
    try {
      if (err.code === ERR_ASSIGN_PARTITIONS) {
        for (const p of partitions) this.assigned.add(p);
        const delivered = this.ctx.deliveredUpTo(partitions);
        if (cooperative) consumer.incrementalAssign(assignment);
        else consumer.assign(assignment);
        log.info('partitions assigned', { partitions, assigned: this.assignedPartitions });
        metrics.assignedPartitions.set({}, this.assigned.size);
        if (delivered.size > 0) this.resumeAfterDelivered(delivered);
      } else if (err.code === ERR_REVOKE_PARTITIONS) {
        for (const p of partitions) {
          this.assigned.delete(p);
          this.revocations.set(p, (this.revocations.get(p) ?? 0) + 1);
          this.revokedSoFar++;
          metrics.consumerLag.delete({ partition: String(p) });
        }
        metrics.assignedPartitions.set({}, this.assigned.size);
        this.rebalancing = this.ctx.release(partitions).finally(() => {
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

/**
 * The message of a fatal consumer error. librdkafka hands the consume call a generic "Fatal error";
 * under static membership its cause is nearly always a newer member with the same group.instance.id.
 */
function fatalConsumerMessage(err: LibrdKafkaError, instanceId: string | undefined): string {
  if (instanceId === undefined || err.code !== CODES.ERRORS.ERR__FATAL) return `fatal consumer error: ${err.message}`;
  return `fatal consumer error: ${err.message}: the group fenced this instance, as it does when another instance `
    + `joins with the same --instance-id '${instanceId}'. Nothing it had not committed is visible; give each instance `
    + 'its own --instance-id';
}
