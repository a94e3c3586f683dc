/**
 * The score stage: turns a fetched batch into its outputs, one per record and in the same order.
 * Valid requests are scored with one batch prediction, suspicious ones optionally explained, and each
 * is routed by its score; a record that cannot be scored becomes a dead letter with the reason. Knows
 * nothing of producing or offsets.
 */
import type { Message } from 'node-rdkafka';
import type { Classifier } from '../classifier';
import type { Contribution, ScoredRecord } from '../codec';
import type { ProcessorConfig } from '../config';
import type { Logger } from '../log';
import type { ProcessorMetrics } from '../metrics';
import { deadLetterOutput, encodeOutputValue, eventTimeOf, recordBytes, scoredHeaders, type Output } from './output';
import {
  validateRequest, type DeadLetterReason, type InvalidRecord, type RequestRules, type ValidRecord,
} from './validate';

/** Attempts for a batch prediction before rows are scored one by one to isolate the failure. */
const PREDICT_ATTEMPTS = 3;

/**
 * What the processor needs of the model: a {@link Classifier}. Kept to the methods it calls, so that a
 * test can wrap the real Classifier to make a chosen batch or row fail at this seam.
 */
export type Scorer = Pick<Classifier,
  'numFeatures' | 'modelInfo' | 'attribute' | 'predict' | 'predictBatchAsync' | 'explainBatchAsync'>;

/** Scores batches of consumed records into outputs; see the module comment. */
export class BatchScorer {
  private readonly numFeatures: number;

  constructor(
    private readonly classifier: Scorer,
    private readonly config: ProcessorConfig,
    /** Score at or above which a record is suspicious. */
    readonly threshold: number,
    /** Written into every scored output. */
    readonly modelVersion: string,
    private readonly log: Logger,
    private readonly metrics: ProcessorMetrics,
    /** Largest output record that the producer and the output topics accept, in bytes. */
    private readonly maxOutputBytes: number,
  ) {
    this.numFeatures = classifier.numFeatures;
    this.rules = { numFeatures: this.numFeatures, rejectMissing: config.rejectMissing, maxRecordIdBytes: config.maxRecordIdBytes };
  }

  private readonly rules: RequestRules;

  /** The outputs of `messages`, one per message, in the same order. Never rejects for a bad record. */
  async score(messages: readonly Message[]): Promise<Output[]> {
    const n = this.numFeatures;
    const checked = new Array<ValidRecord | InvalidRecord>(messages.length);
    let valid = 0;
    for (let i = 0; i < messages.length; i++) {
      checked[i] = validateRequest(messages[i].value, this.rules);
      if (checked[i].ok) valid++;
    }
    const rows = new Float32Array(valid * n);
    let r = 0;
    for (const c of checked) if (c.ok) rows.set(c.features, n * r++);
    const scores = valid > 0 ? await this.predictWithRetry(rows, valid) : [];
    const explanations = await this.explainSuspicious(rows, scores);

    const outputs = new Array<Output>(messages.length);
    const scoredAt = Date.now();
    r = 0;
    for (let i = 0; i < messages.length; i++) {
      const c = checked[i];
      if (!c.ok) {
        outputs[i] = this.deadLetter(messages[i], c.reason, c.message);
        continue;
      }
      const row = r++;
      const score = scores[row];
      outputs[i] = score instanceof Error
        ? this.deadLetter(messages[i], 'scoring-failed', score.message)
        : this.scoredOutput(messages[i], c, score, scoredAt, explanations.get(row) ?? []);
    }
    return outputs;
  }

  /**
   * Scores a batch, retrying a failed call; if it keeps failing, scores the rows one at a time so that
   * only the rows that really fail become dead letters. A row is never routed without a score.
   */
  private async predictWithRetry(rows: Float32Array, nRows: number): Promise<ArrayLike<number | Error>> {
    let lastError: Error | undefined;
    for (let attempt = 1; attempt <= PREDICT_ATTEMPTS; attempt++) {
      const started = process.hrtime.bigint();
      try {
        const result = await this.classifier.predictBatchAsync(rows, nRows);
        this.metrics.inferenceSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
        return result;
      } catch (err) {
        lastError = err as Error;
        this.log.warn('batch prediction failed', { attempt, rows: nRows, error: lastError });
      }
    }
    this.log.error('batch prediction keeps failing; scoring rows one by one', { rows: nRows, error: lastError });
    const n = this.numFeatures;
    const out: Array<number | Error> = [];
    for (let i = 0; i < nRows; i++) {
      try {
        out.push(this.classifier.predict(rows.subarray(i * n, (i + 1) * n)));
      } catch (err) {
        out.push(err as Error);
      }
    }
    return out;
  }

  /**
   * Contributions of the batch's suspicious rows, by row index, in one call on the thread pool:
   * exact TreeSHAP costs milliseconds a row, too much for the event loop. None when not asked for,
   * or when the output format has no room for them.
   */
  private async explainSuspicious(rows: Float32Array, scores: ArrayLike<number | Error>): Promise<Map<number, Contribution[]>> {
    const explained = new Map<number, Contribution[]>();
    if (this.config.explain === 'none' || this.config.outputFormat === 'float') return explained;
    const suspicious: number[] = [];
    for (let i = 0; i < scores.length; i++) {
      const s = scores[i];
      if (typeof s === 'number' && s >= this.threshold) suspicious.push(i);
    }
    if (suspicious.length === 0) return explained;
    const n = this.numFeatures;
    const picked = new Float32Array(suspicious.length * n);
    suspicious.forEach((r, i) => picked.set(rows.subarray(r * n, (r + 1) * n), i * n));
    try {
      const explanations = await this.classifier.explainBatchAsync(picked, suspicious.length, {
        method: this.config.explain, topK: this.config.topK,
      });
      suspicious.forEach((r, i) => explained.set(r, explanations[i].contributions));
    } catch (err) {
      // Explanations are an extra: the records are still routed by their scores, without them.
      this.log.error('explaining suspicious records failed; sending them without contributions', {
        records: suspicious.length, error: err,
      });
    }
    return explained;
  }

  private scoredOutput(
    message: Message, record: ValidRecord, score: number, scoredAt: number, contributions: Contribution[],
  ): Output {
    const suspicious = score >= this.threshold;
    const eventTimestampMs = eventTimeOf(message, scoredAt);
    const scoredRecord: ScoredRecord = {
      recordID: record.recordID,
      score,
      suspicious,
      modelVersion: this.modelVersion,
      eventTimestampMs,
      scoredTimestampMs: scoredAt,
      contributions,
      sourceTopic: message.topic,
      sourcePartition: message.partition,
      sourceOffset: message.offset,
    };
    const key = record.recordID;
    const value = encodeOutputValue(this.config.outputFormat, scoredRecord);
    const headers = scoredHeaders(message, this.modelVersion, this.config.outputFormat, this.config.provenanceHeaders);
    const size = recordBytes(key, value, headers);
    if (size > this.maxOutputBytes) {
      return this.deadLetter(message, 'output-too-large',
        `the scored output is ${size} bytes, more than the ${this.maxOutputBytes}-byte limit`);
    }
    return {
      topic: suspicious ? this.config.suspiciousTopic : this.config.regularTopic,
      value, key, headers, deadLetterReason: undefined, eventTimestampMs, source: message,
    };
  }

  private deadLetter(message: Message, reason: DeadLetterReason, text: string): Output {
    this.log.info('dead letter', { reason, error: text, partition: message.partition, offset: message.offset });
    return deadLetterOutput(message, this.config.deadLetterTopic, reason, text, this.maxOutputBytes);
  }
}
