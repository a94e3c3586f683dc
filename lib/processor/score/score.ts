/**
 * The score stage: turns a fetched batch into its outputs, one per record and in the same order.
 * Valid requests are scored with one batch prediction, suspicious ones optionally explained, and each
 * is routed by its score; a record that cannot be scored becomes a dead letter with the reason. The
 * serving model is fixed per batch, so a reload takes effect between batches; a shadow model, when
 * there is one, scores the same rows alongside. Knows nothing of producing or offsets.
 */
import os from 'node:os';
import type { Message } from 'node-rdkafka';
import type { Classifier } from '../../classifier';
import { encodeScoredRecord, type Contribution, type ScoredRecord } from '../../codec';
import { ConfigError, type ProcessorConfig } from '../../config';
import type { Logger } from '../../log';
import type { ProcessorMetrics } from '../../metrics';
import type { DecodeResult } from '../../input/decoded';
import { RequestDecoder } from '../../input/request-decoder';
import { SchemaRegistry } from '../../input/schema-registry';
import { OutputFraming } from './output-framing';
import { deadLetterOutput, encodeOutputValue, eventTimeOf, recordBytes, scoredHeaders, type Output } from './output';
import { RecentRows } from '../model/recent-rows';
import { Turns } from './turns';
import type { ServingModel } from '../model/serving-model';
import type { ShadowScorer } from '../model/shadow';
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

/** A reload's new model, until it has scored a record of every partition it meets. */
interface Takeover {
  readonly model: ServingModel;
  readonly previousVersion: string;
  readonly since: number;
  readonly seen: Set<number>;
}

/**
 * The most predictions at once. Two keep both cores of a small machine busy under load; the main thread
 * (decode, produce, bookkeeping) costs about as much per record as a prediction, so more would wait on it.
 */
const MAX_CONCURRENT_PREDICTIONS = 2;

/**
 * Predictions run at once: one per core when each uses one thread (`--nthread 1`), up to
 * {@link MAX_CONCURRENT_PREDICTIONS}; one when a prediction uses every core by itself (`--nthread 0`).
 */
export function concurrentPredictions(nthread: number, cores: number): number {
  if (nthread === 0) return 1;
  return Math.max(1, Math.min(MAX_CONCURRENT_PREDICTIONS, Math.floor(cores / nthread)));
}

/** How long the per-partition takeover offsets of a swap are looked for. */
const TAKEOVER_WATCH_MS = 10 * 60_000;

/** Scores batches of consumed records into outputs; see the module comment. */
export class BatchScorer {
  private readonly numFeatures: number;
  private readonly rules: RequestRules;
  /** The configured input format and framing; looks up schema ids when a registry checks them. */
  private readonly decoder: RequestDecoder;
  private readonly decode: (value: Buffer) => DecodeResult;
  /** With --output-framing confluent: frames scored outputs with their topic's schema id. */
  private readonly outputFraming: OutputFraming | undefined;
  /** The model that scores the next batch; a reload swaps it between batches. */
  private serving: ServingModel;
  private takeover: Takeover | undefined;
  /**
   * Predictions take turns, in the order batches arrive: the next batch is decoded on the main thread
   * while the ones before it are predicted on the pool, and then waits here for its turn.
   */
  private readonly predictions: Turns;
  /** Batches the stage takes at once: one being decoded besides those being predicted. */
  readonly capacity: number;
  /** The last live rows, for a reload's canary; undefined with --canary-rows 0. */
  readonly recentRows: RecentRows | undefined;

  constructor(
    serving: ServingModel,
    private readonly config: ProcessorConfig,
    private readonly log: Logger,
    private readonly metrics: ProcessorMetrics,
    /** Largest output record that the producer and the output topics accept, in bytes. */
    private readonly maxOutputBytes: number,
    private readonly shadow?: ShadowScorer,
  ) {
    this.serving = serving;
    const predictions = concurrentPredictions(config.nthread, os.availableParallelism());
    this.predictions = new Turns(predictions);
    this.capacity = predictions + 1;
    this.numFeatures = serving.classifier.numFeatures;
    this.rules = { numFeatures: this.numFeatures, rejectMissing: config.rejectMissing, maxRecordIdBytes: config.maxRecordIdBytes };
    const registry = config.schemaRegistryUrl === undefined ? undefined : new SchemaRegistry({
      url: config.schemaRegistryUrl, basicAuth: config.schemaRegistryBasicAuth,
      onRetry: (what, attempt, error) => log.warn('schema registry request failed; trying again', { what, attempt, error }),
    });
    // The start model's names serve every reload too: the model gate refuses a candidate whose names differ.
    this.decoder = new RequestDecoder({
      format: config.inputFormat, framing: config.inputFraming, numFeatures: this.numFeatures,
      featureNames: serving.classifier.featureNames, allowMissingFeatures: config.allowMissingFeatures,
    }, registry);
    this.outputFraming = config.outputFraming === 'confluent' && registry !== undefined
      ? new OutputFraming(registry, [config.suspiciousTopic, config.regularTopic]) : undefined;
    this.decode = (value) => this.decoder.decode(value);
    this.recentRows = config.canaryRows > 0 ? new RecentRows(config.canaryRows, this.numFeatures) : undefined;
  }

  /** The model serving now. */
  get model(): ServingModel {
    return this.serving;
  }

  /**
   * Makes `next` serve from the next batch on. The batch being scored, if any, finishes on the old
   * model, which is closed after it. The first offset each partition has scored by `next` is logged.
   */
  swap(next: ServingModel): void {
    const previous = this.serving;
    this.serving = next;
    this.takeover = { model: next, previousVersion: previous.version, since: Date.now(), seen: new Set() };
    previous.retire();
    this.metrics.modelInfo.delete(previous.infoLabels);
    this.metrics.modelInfo.set(next.infoLabels, 1);
    if (this.shadow?.active && this.shadow.model.version === next.version) this.shadow.promoted();
  }

  /** The outputs of `messages`, one per message, in the same order. Never rejects for a bad record. */
  async score(messages: readonly Message[]): Promise<Output[]> {
    // One model for the whole batch, whatever a reload does meanwhile.
    const model = this.serving;
    model.acquire();
    try {
      return await this.scoreWith(model, messages);
    } finally {
      model.release();
    }
  }

  /**
   * Registers the output schema (--output-framing confluent) before anything is read: a registry that
   * refuses it (incompatible with the subject, no rights) stops the start like a bad setting, rather than
   * the first batch. Tried again while the registry cannot be reached.
   */
  async prepareOutputs(): Promise<void> {
    if (!this.outputFraming) return;
    try {
      await this.outputFraming.prepare();
    } catch (err) {
      throw new ConfigError(`--output-framing confluent: ${(err as Error).message}`);
    }
  }

  private async scoreWith(model: ServingModel, messages: readonly Message[]): Promise<Output[]> {
    if (this.takeover !== undefined) this.noteTakeover(model, messages);
    const n = this.numFeatures;
    // Schema ids new to this process are looked up before the batch is decoded; an unreachable
    // registry holds the batch back rather than dead-lettering it.
    if (this.decoder.needsPreparing) await this.decoder.prepare(messages.map((m) => m.value));
    await this.outputFraming?.prepare();
    const checked = new Array<ValidRecord | InvalidRecord>(messages.length);
    let valid = 0;
    for (let i = 0; i < messages.length; i++) {
      checked[i] = validateRequest(messages[i].value, this.rules, this.decode);
      if (checked[i].ok) valid++;
    }
    const rows = new Float32Array(valid * n);
    let r = 0;
    for (const c of checked) if (c.ok) rows.set(c.features, n * r++);
    this.recentRows?.push(rows, valid);
    const shadow = this.shadow?.active && valid > 0 ? this.shadow : undefined;
    shadow?.model.acquire();
    try {
      const { scores, shadowScores, explanations } = await this.predictions.run(async () => {
        const shadowPrediction = shadow?.predict(rows, valid);
        const scores = valid > 0 ? await this.predictWithRetry(model.classifier, rows, valid) : [];
        const shadowScores = await shadowPrediction;
        const explanations = await this.explainSuspicious(model, rows, scores);
        return { scores, shadowScores, explanations };
      });

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
        if (score instanceof Error) {
          outputs[i] = this.deadLetter(messages[i], 'scoring-failed', score.message);
          continue;
        }
        outputs[i] = this.scoredOutput(model, messages[i], c, score, scoredAt, explanations.get(row) ?? []);
        if (shadow && shadowScores) {
          shadow.compare(score, model.threshold, shadowScores[row]);
          if (this.config.shadowTopic !== undefined && outputs[i].deadLetterReason === undefined) {
            outputs[i] = { ...outputs[i], shadow: this.shadowOutput(shadow.model, messages[i], c, shadowScores[row], scoredAt) };
          }
        }
      }
      shadow?.endBatch();
      return outputs;
    } finally {
      shadow?.model.release();
    }
  }

  /** Logs, per partition, the first input offset a newly swapped-in model scores. */
  private noteTakeover(model: ServingModel, messages: readonly Message[]): void {
    const t = this.takeover!;
    if (t.model !== model) return;
    if (Date.now() - t.since > TAKEOVER_WATCH_MS) {
      this.takeover = undefined;
      return;
    }
    let last = -1;
    for (const m of messages) {
      if (m.partition === last || t.seen.has(m.partition)) continue;
      last = m.partition;
      t.seen.add(m.partition);
      this.log.info('model version took over', {
        partition: m.partition, offset: m.offset, modelVersion: model.version, previousVersion: t.previousVersion,
      });
    }
  }

  /**
   * Scores a batch, retrying a failed call; if it keeps failing, scores the rows one at a time so that
   * only the rows that really fail become dead letters. A row is never routed without a score.
   */
  private async predictWithRetry(classifier: Scorer, rows: Float32Array, nRows: number): Promise<ArrayLike<number | Error>> {
    let lastError: Error | undefined;
    for (let attempt = 1; attempt <= PREDICT_ATTEMPTS; attempt++) {
      const started = process.hrtime.bigint();
      try {
        const result = await classifier.predictBatchAsync(rows, nRows);
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
        out.push(classifier.predict(rows.subarray(i * n, (i + 1) * n)));
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
  private async explainSuspicious(
    model: ServingModel, rows: Float32Array, scores: ArrayLike<number | Error>,
  ): Promise<Map<number, Contribution[]>> {
    const explained = new Map<number, Contribution[]>();
    if (this.config.explain === 'none' || this.config.outputFormat === 'float') return explained;
    const suspicious: number[] = [];
    for (let i = 0; i < scores.length; i++) {
      const s = scores[i];
      if (typeof s === 'number' && s >= model.threshold) suspicious.push(i);
    }
    if (suspicious.length === 0) return explained;
    const n = this.numFeatures;
    const picked = new Float32Array(suspicious.length * n);
    suspicious.forEach((r, i) => picked.set(rows.subarray(r * n, (r + 1) * n), i * n));
    try {
      const explanations = await model.classifier.explainBatchAsync(picked, suspicious.length, {
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
    model: ServingModel, message: Message, record: ValidRecord, score: number, scoredAt: number, contributions: Contribution[],
  ): Output {
    const suspicious = score >= model.threshold;
    const eventTimestampMs = eventTimeOf(message, scoredAt);
    const scoredRecord: ScoredRecord = {
      recordID: record.recordID,
      score,
      suspicious,
      modelVersion: model.version,
      eventTimestampMs,
      scoredTimestampMs: scoredAt,
      contributions,
      sourceTopic: message.topic,
      sourcePartition: message.partition,
      sourceOffset: message.offset,
    };
    const key = record.recordID;
    const topic = suspicious ? this.config.suspiciousTopic : this.config.regularTopic;
    const encoded = encodeOutputValue(this.config.outputFormat, scoredRecord);
    const value = this.outputFraming ? this.outputFraming.frame(topic, encoded) : encoded;
    const headers = scoredHeaders(message, model.version, this.config.outputFormat, this.config.provenanceHeaders);
    const size = recordBytes(key, value, headers);
    if (size > this.maxOutputBytes) {
      return this.deadLetter(message, 'output-too-large',
        `the scored output is ${size} bytes, more than the ${this.maxOutputBytes}-byte limit`);
    }
    return {
      topic, value, key, headers, deadLetterReason: undefined, eventTimestampMs, source: message,
    };
  }

  /** The shadow model's ScoredRecord of a row, always protobuf, keyed like the scored output. */
  private shadowOutput(model: ServingModel, message: Message, record: ValidRecord, score: number, scoredAt: number) {
    const value = encodeScoredRecord({
      recordID: record.recordID, score, suspicious: score >= model.threshold, modelVersion: model.version,
      eventTimestampMs: eventTimeOf(message, scoredAt), scoredTimestampMs: scoredAt, contributions: [],
      sourceTopic: message.topic, sourcePartition: message.partition, sourceOffset: message.offset,
    });
    return { topic: this.config.shadowTopic!, key: record.recordID, value };
  }

  private deadLetter(message: Message, reason: DeadLetterReason, text: string): Output {
    this.log.info('dead letter', { reason, error: text, partition: message.partition, offset: message.offset });
    return deadLetterOutput(message, this.config.deadLetterTopic, reason, text, this.maxOutputBytes);
  }
}
