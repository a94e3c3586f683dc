/**
 * The deliver stage: produces each batch's outputs, in batch order, and decides from the delivery
 * reports which input offsets may be committed. The processor talks to it through {@link Delivery};
 * {@link AtLeastOnceDelivery} is the default mode.
 *
 * At-least-once: a partition's offset is stored (and later committed by librdkafka's auto-commit) only
 * once the output of every record before it has a successful delivery report.
 */
import type { DeliveryReport, KafkaConsumer, LibrdKafkaError, Message, Producer } from 'node-rdkafka';
import type { Logger } from '../log';
import type { ProcessorMetrics } from '../metrics';
import { OffsetTracker, type PartitionOffset, type RecordPosition, type TrackedBatch } from './offsets';
import { deadLetterOutput, type Output } from './output';

const ERR_QUEUE_FULL = -184;
/** Attempts to deliver one output before the processor stops without storing past it. */
const DELIVERY_ATTEMPTS = 3;

/**
 * Producer errors that concern one record and will not pass on a retry: the record is too large, or
 * the broker finds it invalid. Its input becomes a dead letter (or is skipped); the partition goes on.
 */
const RECORD_ERRORS: ReadonlyMap<number, string> = new Map([
  [10, 'MSG_SIZE_TOO_LARGE'], [4, 'INVALID_MSG_SIZE'], [18, 'RECORD_LIST_TOO_LARGE'], [87, 'INVALID_RECORD'],
  [2, 'CORRUPT_MESSAGE'],
]);
/** Producer errors no retry or restart cures: the processor stops with status 1. */
const FATAL_ERRORS: ReadonlyMap<number, string> = new Map([
  [29, 'TOPIC_AUTHORIZATION_FAILED'], [31, 'CLUSTER_AUTHORIZATION_FAILED'], [53, 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED'],
  [90, 'PRODUCER_FENCED'], [-144, '_FENCED'], [47, 'INVALID_PRODUCER_EPOCH'],
]);

/**
 * node-rdkafka hands a delivery report's error over as its text alone (code -1): librdkafka's own
 * description, or the broker's error message. The texts of the errors above, in both forms.
 */
const RECORD_ERROR_TEXT = /message size too large|record.* too large|batch larger than|invalid message|failed to validate record|corrupt/i;
const FATAL_ERROR_TEXT = /authori[sz]ation failed|fenced|old epoch/i;

/** How the deliver stage treats a producer error; the README's table of them. */
export type ProducerErrorClass = 'record' | 'fatal' | 'transient';

/** Record-level, fatal or transient: see {@link RECORD_ERRORS} and {@link FATAL_ERRORS}; the rest is retried. */
export function classifyProducerError(err: Pick<LibrdKafkaError, 'code' | 'isFatal' | 'message'>): ProducerErrorClass {
  if (err.isFatal || FATAL_ERRORS.has(err.code)) return 'fatal';
  if (RECORD_ERRORS.has(err.code)) return 'record';
  if (err.code === -1 || err.code === undefined) {
    if (FATAL_ERROR_TEXT.test(err.message)) return 'fatal';
    if (RECORD_ERROR_TEXT.test(err.message)) return 'record';
  }
  return 'transient';
}

/** How the processor hands its work to a delivery mode. */
export interface Delivery {
  /** Records fetched and not yet delivered, across all partitions. */
  readonly inFlight: number;
  /** Registers a fetched batch before it is scored: from now on its records count as in flight. */
  track(messages: readonly Message[]): TrackedBatch;
  /**
   * Produces a batch's outputs once they are scored, after every batch sent before it. Resolves when
   * they are all handed to the producer; rejects on an error that must stop the processor.
   */
  send(batch: TrackedBatch, outputs: Promise<readonly Output[]>): Promise<void>;
  /** Records of the given partitions (all when omitted) whose outputs are not delivered yet. */
  pending(partitions?: readonly number[]): number;
  /** Before revoked partitions go: their outputs delivered (or the deadline passed), their offsets committed. */
  release(partitions: readonly number[], deadline: number): Promise<void>;
  /**
   * For partitions assigned again: the offset after the last record whose output this instance
   * delivered, kept across the rebalance even when its commit failed. Partitions never held are absent.
   */
  deliveredUpTo(partitions: readonly number[]): Map<number, number>;
  /** At shutdown, after the last send: flush the producer and commit what was delivered. Resolves with whether all was. */
  finish(assigned: readonly number[], deadline: number): Promise<boolean>;
}

/** What the deliver stage needs from the processor. */
export interface DeliveryContext {
  readonly producer: Producer;
  readonly consumer: KafkaConsumer;
  readonly inputTopic: string;
  readonly deadLetterTopic: string;
  readonly outputTopics: readonly string[];
  /** Largest output record that the producer and the output topics accept, in bytes. */
  readonly maxOutputBytes: number;
  readonly log: Logger;
  readonly metrics: ProcessorMetrics;
  /** Partitions currently assigned: only theirs are stored. */
  assignedPartitions(): readonly number[];
  /** Called after every delivery report: the fetch loop and the drains wait on it. */
  onProgress(): void;
  /** Stops the processor with a fatal error. */
  fail(err: Error): void;
  /** Whether the processor is stopping after a fatal error: waiting for deliveries is then pointless. */
  failed(): boolean;
}

/** One output in flight: enough to produce it again, and to find its record in the tracker. */
class InFlightOutput {
  attempt = 0;
  constructor(readonly output: Output, readonly batch: TrackedBatch, readonly row: number) {}
}

/** Default delivery mode; see the module comment. */
export class AtLeastOnceDelivery implements Delivery {
  private readonly tracker: OffsetTracker;
  /** Outputs are produced batch after batch, in consumption order, whatever order predictions finish in. */
  private chain: Promise<void> = Promise.resolve();
  private storeScheduled = false;
  private closing = false;
  /** Per partition, the offset after the last record whose output was delivered: survives revocations. */
  private readonly delivered = new Map<number, number>();
  /** Batches sent whose outputs are not all handed to the producer yet. */
  private unsent = 0;
  /** Drains waiting for the next delivery report. */
  private waiters: Array<() => void> = [];
  /** Per-record metric series, bound once: a delivery report updates them without formatting labels. */
  private readonly recordsOutByTopic: Map<string, { inc(by?: number): void }>;
  private readonly deadLettersByReason = new Map<string, { inc(by?: number): void }>();
  private readonly endToEnd: { observe(value: number): void };
  private readonly skippedByReason = new Map<string, { inc(by?: number): void }>();

  constructor(private readonly ctx: DeliveryContext) {
    this.tracker = new OffsetTracker(ctx.inputTopic);
    this.recordsOutByTopic = new Map(ctx.outputTopics.map((topic) => [topic, ctx.metrics.recordsOut.child({ topic })]));
    this.endToEnd = ctx.metrics.endToEndSeconds.child();
    ctx.producer.on('delivery-report', (err, report) => this.onDelivery(err, report));
  }

  get inFlight(): number {
    return this.tracker.inFlight;
  }

  track(messages: readonly Message[]): TrackedBatch {
    return this.tracker.add(messages);
  }

  send(batch: TrackedBatch, outputs: Promise<readonly Output[]>): Promise<void> {
    this.unsent++;
    const sent = this.chain.then(() => outputs).then((o) => this.produceAll(batch, o));
    this.chain = sent.catch(() => undefined).finally(() => {
      this.unsent--;
      this.progress();
    });
    return sent;
  }

  pending(partitions?: readonly number[]): number {
    return this.tracker.pending(partitions);
  }

  async release(partitions: readonly number[], deadline: number): Promise<void> {
    if (!this.closing) {
      const drained = await this.waitFor(() => this.tracker.pending(partitions) === 0, deadline);
      if (!drained) this.ctx.log.warn('revoked partitions still had undelivered outputs', { partitions });
      const offsets = this.tracker.takeStorable(partitions, true);
      for (const o of offsets) this.delivered.set(o.partition, Math.max(o.offset, this.delivered.get(o.partition) ?? -1));
      this.commit(offsets);
    }
    this.tracker.drop(partitions);
  }

  deliveredUpTo(partitions: readonly number[]): Map<number, number> {
    const out = new Map<number, number>();
    for (const p of partitions) {
      const offset = this.delivered.get(p);
      if (offset !== undefined) out.set(p, offset);
    }
    return out;
  }

  async finish(assigned: readonly number[], deadline: number): Promise<boolean> {
    // Bounded like the rest: a batch whose scoring never ends must not hold the shutdown.
    const drained = await this.waitFor(() => this.unsent === 0 && this.tracker.pending() === 0, deadline);
    const flushed = await new Promise<boolean>((resolve) => {
      this.ctx.producer.flush(Math.max(1, deadline - Date.now()), (err) => {
        if (err) this.ctx.log.error('flush failed', { error: err.message });
        resolve(!err);
      });
    });
    // Whatever was delivered is committed, also after a failure: the tracker never passes a lost output.
    this.commit(this.tracker.takeStorable(assigned, true));
    this.closing = true;
    return drained && flushed && !this.tracker.hasFailure;
  }

  /** Polls `done` after each delivery report until it holds or the deadline passes. */
  private async waitFor(done: () => boolean, deadline: number): Promise<boolean> {
    while (!done()) {
      if (Date.now() >= deadline || this.ctx.failed()) return false;
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return true;
  }

  /** Hands a batch's outputs to the producer in order; awaits only when librdkafka's queue is full. */
  private async produceAll(batch: TrackedBatch, outputs: readonly Output[]): Promise<void> {
    for (let row = 0; row < outputs.length; row++) {
      await this.produceItem(new InFlightOutput(outputs[row], batch, row));
    }
  }

  private async produceItem(item: InFlightOutput): Promise<void> {
    for (;;) {
      if (item.output.skipped !== undefined) {
        this.skip(item);
        return;
      }
      const result = this.tryProduce(item);
      if (result === 'queued') return;
      if (result === 'full') await this.queueRoom();
      else item = this.rejected(item, result);
    }
  }

  /**
   * Produces one output: 'queued', 'full' when librdkafka's local queue is full, or the error when
   * librdkafka refuses this record for good (too large for its message.max.bytes).
   */
  private tryProduce(item: InFlightOutput): 'queued' | 'full' | LibrdKafkaError {
    const { topic, headers } = item.output;
    const value = nonNullEmpty(item.output.value);
    const key = typeof item.output.key === 'string' ? item.output.key : nonNullEmpty(item.output.key);
    try {
      this.ctx.producer.produce(topic, null, value, key, null, item, headers);
    } catch (err) {
      const e = err as LibrdKafkaError;
      if (e.code === ERR_QUEUE_FULL) return 'full';
      if (classifyProducerError(e) === 'record') return e;
      throw err;
    }
    item.attempt++;
    return 'queued';
  }

  /**
   * What replaces an output refused for good: a scored output becomes a dead letter of its input,
   * cut to fit if need be; a refused dead letter is skipped (the configured limit is above the topic's).
   */
  private rejected(item: InFlightOutput, err: LibrdKafkaError): InFlightOutput {
    const { output } = item;
    const position = this.positionOf(item);
    this.ctx.log.warn('output refused', {
      topic: output.topic, sourcePartition: position.partition, sourceOffset: position.offset,
      error: err.message, code: err.code,
    });
    const text = `the output was refused: ${err.message}`;
    const replacement: Output = output.deadLetterReason === undefined
      ? deadLetterOutput(output.source, this.ctx.deadLetterTopic, 'output-too-large', text, this.ctx.maxOutputBytes)
      : { ...output, skipped: `${text}; the output topics' limit may be below --max-message-bytes` };
    return new InFlightOutput(replacement, item.batch, item.row);
  }

  /** A record with no output at all: logged with enough to find it, counted, and its offset passed. */
  private skip(item: InFlightOutput): void {
    const { output } = item;
    const reason = output.deadLetterReason ?? 'unknown';
    const { key, value } = output.source;
    const keyPrefix = key === null || key === undefined ? null
      : Buffer.isBuffer(key) ? key.toString('utf8', 0, 64) : String(key).slice(0, 64);
    this.ctx.log.error('record skipped: no output fits', {
      topic: this.ctx.inputTopic, partition: output.source.partition, offset: output.source.offset, keyPrefix,
      keyBytes: key?.length ?? 0, valueBytes: value?.length ?? 0, reason, error: output.skipped,
    });
    let counter = this.skippedByReason.get(reason);
    if (!counter) this.skippedByReason.set(reason, (counter = this.ctx.metrics.recordsSkipped.child({ reason })));
    counter.inc();
    this.tracker.delivered(item.batch, item.row);
    this.scheduleStore();
    this.progress();
  }

  /** Lets delivery reports drain librdkafka's full queue. */
  private queueRoom(): Promise<void> {
    this.ctx.producer.poll();
    return new Promise((resolve) => setTimeout(resolve, 5));
  }

  private onDelivery(err: LibrdKafkaError | null, report: DeliveryReport): void {
    const item = report.opaque as InFlightOutput;
    const { output } = item;
    if (err) {
      this.ctx.metrics.deliveryFailures.inc();
      const position = this.positionOf(item);
      const kind = classifyProducerError(err);
      this.ctx.log.error('delivery failed', {
        topic: output.topic, sourcePartition: position.partition, sourceOffset: position.offset,
        attempt: item.attempt, error: err.message, code: err.code, kind,
      });
      if (kind === 'record' && !this.closing) {
        this.produceItem(this.rejected(item, err)).catch((e) => this.ctx.fail(e as Error));
      } else if (kind === 'transient' && item.attempt < DELIVERY_ATTEMPTS && !this.closing) {
        this.produceItem(item).catch((e) => this.ctx.fail(e as Error));
      } else {
        this.tracker.failed(item.batch, item.row);
        this.ctx.fail(new Error(`could not deliver to ${output.topic} the output of ${this.ctx.inputTopic} `
          + `partition ${position.partition} offset ${position.offset}: ${err.message}`));
      }
      this.progress();
      return;
    }
    this.tracker.delivered(item.batch, item.row);
    const reason = output.deadLetterReason;
    if (reason !== undefined) {
      let counter = this.deadLettersByReason.get(reason);
      if (!counter) this.deadLettersByReason.set(reason, (counter = this.ctx.metrics.deadLetters.child({ reason })));
      counter.inc();
    }
    this.recordsOutByTopic.get(output.topic)!.inc();
    this.endToEnd.observe(Math.max(0, Date.now() - output.eventTimestampMs) / 1000);
    this.scheduleStore();
    this.progress();
  }

  private positionOf(item: InFlightOutput): RecordPosition {
    return this.tracker.positionOf(item.batch, item.row);
  }

  private progress(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
    this.ctx.onProgress();
  }

  /** Stores advanced offsets once per turn of the event loop rather than once per delivery report. */
  private scheduleStore(): void {
    if (this.storeScheduled) return;
    this.storeScheduled = true;
    setImmediate(() => {
      this.storeScheduled = false;
      this.ctx.metrics.inFlight.set({}, this.tracker.inFlight);
      if (this.closing) return;
      const offsets = this.tracker.takeStorable(this.ctx.assignedPartitions());
      if (offsets.length === 0) return;
      try {
        this.ctx.consumer.offsetsStore(offsets.map((o) => ({ ...o })));
      } catch (err) {
        this.ctx.log.warn('could not store offsets', { offsets, error: err });
      }
    });
  }

  private commit(offsets: PartitionOffset[]): void {
    if (offsets.length === 0) return;
    try {
      this.ctx.consumer.offsetsStore(offsets.map((o) => ({ ...o })));
      this.ctx.consumer.commitSync(offsets.map((o) => ({ ...o })));
      this.ctx.log.info('offsets committed', { offsets });
    } catch (err) {
      this.ctx.log.warn('commit failed', { offsets, error: err });
    }
  }
}

/**
 * A zero-length Buffer that node-rdkafka writes as an empty value, not as null. node-rdkafka passes a
 * Buffer's data pointer to librdkafka, and a zero-length Buffer of its own has none: librdkafka then
 * writes a null (a tombstone, which deletes the key on a compacted topic). A zero-length view into a
 * larger allocation has a pointer, and so stays empty.
 */
const EMPTY = Buffer.alloc(1).subarray(0, 0);

function nonNullEmpty<T extends Buffer | null | undefined>(bytes: T): T {
  return (bytes && bytes.length === 0 ? EMPTY : bytes) as T;
}
