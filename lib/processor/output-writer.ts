/**
 * What both delivery modes do with one output: hand it to the producer, replace it when it is refused
 * for good, log and count a record that has no output at all, and count what was delivered. Also the
 * table that says which producer errors concern one record, which are fatal and which pass.
 */
import type { LibrdKafkaError, Producer } from 'node-rdkafka';
import type { Logger } from '../log';
import type { ProcessorMetrics } from '../metrics';
import type { TrackedBatch } from './offsets';
import { deadLetterOutput, type Output, type ShadowOutput } from './output';

const ERR_QUEUE_FULL = -184;

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

/** One output in flight: enough to produce it again, and to find its record in the tracker. */
export class InFlightOutput {
  attempt = 0;
  constructor(readonly output: Output, readonly batch: TrackedBatch, readonly row: number) {}
}

/**
 * The delivery-report opaque of every shadow output: the deliver stages hand such reports to
 * {@link OutputWriter.shadowReport} and leave their offsets alone.
 */
export const SHADOW_OUTPUT = Object.freeze({ shadow: true });

/** What the writer needs to know. */
export interface WriterContext {
  readonly producer: Producer;
  readonly inputTopic: string;
  readonly deadLetterTopic: string;
  readonly outputTopics: readonly string[];
  /** Largest output record that the producer and the output topics accept, in bytes. */
  readonly maxOutputBytes: number;
  readonly log: Logger;
  readonly metrics: ProcessorMetrics;
}

type Inc = { inc(by?: number): void };

/** Produces outputs and counts them; see the module comment. */
export class OutputWriter {
  /** Per-record metric series, bound once: a delivery updates them without formatting labels. */
  private readonly recordsOutByTopic: Map<string, Inc>;
  private readonly deadLettersByReason = new Map<string, Inc>();
  private readonly skippedByReason = new Map<string, Inc>();
  private readonly endToEnd: { observe(value: number): void };

  constructor(private readonly ctx: WriterContext) {
    this.recordsOutByTopic = new Map(ctx.outputTopics.map((topic) => [topic, ctx.metrics.recordsOut.child({ topic })]));
    this.endToEnd = ctx.metrics.endToEndSeconds.child();
  }

  /**
   * Hands one output to the producer, waiting only while librdkafka's local queue is full. An output
   * refused for good is replaced and tried again ({@link rejected}); one with no output at all is
   * logged and counted ({@link skipped}). Resolves with the item that was produced, or the skipped
   * one, which the caller then treats as done.
   */
  async produce(item: InFlightOutput): Promise<InFlightOutput> {
    for (;;) {
      if (item.output.skipped !== undefined) {
        this.skipped(item.output);
        return item;
      }
      const result = this.tryProduce(item);
      if (result === 'queued') {
        // Once per record: a retried output does not write its shadow again.
        if (item.attempt === 1 && item.output.shadow) await this.produceShadow(item.output.shadow);
        return item;
      }
      if (result === 'full') await this.queueRoom();
      else item = new InFlightOutput(this.rejected(item.output, result), item.batch, item.row);
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
   * A shadow model's output: best effort, outside the offset bookkeeping (its loss on a crash costs
   * a comparison, never a record), but it waits for room like any output.
   */
  private async produceShadow(shadow: ShadowOutput): Promise<void> {
    for (;;) {
      try {
        this.ctx.producer.produce(shadow.topic, null, shadow.value, shadow.key, null, SHADOW_OUTPUT);
        return;
      } catch (err) {
        const e = err as LibrdKafkaError;
        if (e.code !== ERR_QUEUE_FULL) {
          this.ctx.metrics.deliveryFailures.inc();
          this.ctx.log.warn('shadow output not produced', { topic: shadow.topic, error: e.message, code: e.code });
          return;
        }
        await this.queueRoom();
      }
    }
  }

  /** A shadow output's delivery report: counted, and logged when it failed; never retried. */
  shadowReport(err: LibrdKafkaError | null, topic: string): void {
    if (err) {
      this.ctx.metrics.deliveryFailures.inc();
      this.ctx.log.warn('shadow output not delivered', { topic, error: err.message, code: err.code });
      return;
    }
    this.recordsOutByTopic.get(topic)?.inc();
  }

  /** Lets delivery reports drain librdkafka's full queue. */
  private queueRoom(): Promise<void> {
    this.ctx.producer.poll();
    return new Promise((resolve) => setTimeout(resolve, 5));
  }

  /**
   * What replaces an output refused for good: a scored output becomes a dead letter of its input,
   * cut to fit if need be; a refused dead letter is skipped (the configured limit is above the topic's).
   */
  rejected(output: Output, err: Pick<LibrdKafkaError, 'message' | 'code'>): Output {
    this.ctx.log.warn('output refused', {
      topic: output.topic, sourcePartition: output.source.partition, sourceOffset: output.source.offset,
      error: err.message, code: err.code,
    });
    const text = `the output was refused: ${err.message}`;
    return output.deadLetterReason === undefined
      ? deadLetterOutput(output.source, this.ctx.deadLetterTopic, 'output-too-large', text, this.ctx.maxOutputBytes)
      : { ...output, skipped: `${text}; the output topics' limit may be below --max-message-bytes` };
  }

  /** A record with no output at all: logged with enough to find it, and counted. */
  private skipped(output: Output): void {
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
  }

  /** Counts an output as delivered: records out, dead letters by reason, end-to-end latency. */
  delivered(output: Output, now: number): void {
    const reason = output.deadLetterReason;
    if (reason !== undefined) {
      let counter = this.deadLettersByReason.get(reason);
      if (!counter) this.deadLettersByReason.set(reason, (counter = this.ctx.metrics.deadLetters.child({ reason })));
      counter.inc();
    }
    this.recordsOutByTopic.get(output.topic)!.inc();
    this.endToEnd.observe(Math.max(0, now - output.eventTimestampMs) / 1000);
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
