/**
 * What both delivery modes count and decide about one output: the replacement of an output refused
 * for good, a record that has no output at all, and what was delivered (records out, dead letters by
 * reason, end-to-end latency).
 */
import type { LibrdKafkaError } from 'node-rdkafka';
import type { Logger } from '../../log';
import type { ProcessorMetrics } from '../../metrics';
import { deadLetterOutput, type Output } from '../score/output';

/** What the output accounting needs to know. */
export interface AccountingContext {
  readonly inputTopic: string;
  readonly deadLetterTopic: string;
  readonly outputTopics: readonly string[];
  /** Largest output record that the producer and the output topics accept, in bytes. */
  readonly maxOutputBytes: number;
  readonly log: Logger;
  readonly metrics: ProcessorMetrics;
}

type Inc = { inc(by?: number): void };

/** Replaces refused outputs and counts settled ones; see the module comment. */
export class OutputAccounting {
  /** Per-record metric series, bound once: a delivery updates them without formatting labels. */
  private readonly recordsOutByTopic: Map<string, Inc>;
  private readonly deadLettersByReason = new Map<string, Inc>();
  private readonly skippedByReason = new Map<string, Inc>();
  private readonly endToEnd: { observe(value: number): void };

  constructor(private readonly ctx: AccountingContext) {
    this.recordsOutByTopic = new Map(ctx.outputTopics.map((topic) => [topic, ctx.metrics.recordsOut.child({ topic })]));
    this.endToEnd = ctx.metrics.endToEndSeconds.child();
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

  /**
   * Counts a settled output: records out, dead letters by reason, end-to-end latency; or, for a record
   * with no output at all, the skip.
   */
  delivered(output: Output, now: number): void {
    if (output.skipped !== undefined) {
      this.skipped(output);
      return;
    }
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
