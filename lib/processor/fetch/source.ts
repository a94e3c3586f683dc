/**
 * The fetch stage, a source: takes batches from the consumer, with natural batching, whenever the
 * pipeline has room, and hands on the records that the {@link PartitionOwner} says this instance may
 * still process. It never moves an offset and never follows a rebalance itself.
 */
import { CODES, type KafkaConsumer, type LibrdKafkaError, type Message } from 'node-rdkafka';
import type { ProcessorConfig } from '../../config';
import type { Logger } from '../../log';
import type { TrackedBatch } from '../partitions/ledger';
import type { PartitionOwner } from '../partitions/owner';

/** How long a consume call waits for the first record of a batch before looking at the world again. */
const IDLE_CONSUME_MS = 100;

/** What the source needs. */
export interface SourceContext {
  readonly consumer: KafkaConsumer;
  readonly config: ProcessorConfig;
  readonly log: Logger;
  readonly owner: PartitionOwner;
  /** Whether the fetch loop should end. */
  stopping(): boolean;
  /** Whether the next batch may be taken now: the scorer has room for it and the in-flight bound is not reached. */
  hasRoom(): boolean;
  /** Resolves on the next progress (a batch scored, outputs acknowledged), or after a short while. */
  nextProgress(): Promise<void>;
}

/** A fetched batch of records this instance holds, tracked by the owner. */
export interface AdmittedBatch {
  readonly messages: Message[];
  readonly tracked: TrackedBatch;
}

/** Reads batches; see the module comment. */
export class RecordSource {
  constructor(private readonly ctx: SourceContext) {}

  /**
   * Natural batching: whenever the scorer has room, the next batch is whatever librdkafka has fetched
   * by then (up to `batchSize`), taken at once. While one batch is predicted and the next waits its
   * turn, the one after accumulates, so at low load a record waits for no timer, and under load
   * batches grow by themselves. Only when nothing is fetched does the loop block, on the first record
   * to come.
   *
   * `batchWaitMs` > 0 adds a bounded wait, from the first record, for a batch to fill; librdkafka's
   * consume(n) waits per message, so a slow trickle could otherwise hold a batch far longer.
   * Rejects on a fatal consumer error.
   */
  async run(dispatch: (batch: AdmittedBatch) => void): Promise<void> {
    const { batchSize, batchWaitMs } = this.ctx.config;
    const { owner } = this.ctx;
    while (!this.ctx.stopping()) {
      await owner.rebalancing;
      if (!owner.droppingUntilRewind && !this.ctx.hasRoom()) {
        await this.ctx.nextProgress();
        continue;
      }
      const mark = owner.mark();
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
      const admitted = owner.admit(batch, mark);
      if (admitted) dispatch(admitted);
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
