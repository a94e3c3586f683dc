/**
 * The stream processor: consumes PredictRequest records in a consumer group, scores them in batches
 * with one `predictBatchAsync` per batch, and writes each record to the suspicious, regular or
 * dead-letter topic. Delivery is at-least-once: a partition's offset is stored, and later committed by
 * librdkafka's auto-commit, only once every output of every record before it has been acknowledged.
 */
import {
  KafkaConsumer, Producer, type DeliveryReport, type LibrdKafkaError, type Message, type TopicPartition,
} from 'node-rdkafka';
import type { Classifier } from '../classifier';
import { EXIT } from '../exit';
import type { ProcessorConfig } from '../config';
import type { Logger } from '../log';
import type { ProcessorMetrics } from '../metrics';
import type { Contribution, ScoredRecord } from '../codec';
import { OffsetTracker, type PartitionOffset } from './offsets';
import { HEADER, deadLetterHeaders, encodeOutputValue, scoredHeaders, type Source } from './output';
import { validateRequest, type DeadLetterReason, type ValidRecord } from './validate';
import { ensureTopics } from './topics';
import { splitKafkaProperties } from './kafka-properties';

const ERR_ASSIGN_PARTITIONS = -175;
const ERR_REVOKE_PARTITIONS = -174;
const ERR_QUEUE_FULL = -184;
/** How long a consume call waits for the first record of a batch before looking at the world again. */
const IDLE_CONSUME_MS = 100;
/** Scored batches in flight at once: one being predicted while the previous one is produced. */
const MAX_BATCHES_IN_FLIGHT = 3;
/** Attempts for a batch prediction before rows are scored one by one to isolate the failure. */
const PREDICT_ATTEMPTS = 3;
/** Attempts to deliver one output before the processor stops without storing past it. */
const DELIVERY_ATTEMPTS = 3;

/**
 * What the processor needs of the model: a {@link Classifier}. Kept to the methods it calls, so that a
 * test can wrap the real Classifier to make a chosen batch or row fail at this seam.
 */
export type Scorer = Pick<Classifier,
  'numFeatures' | 'modelInfo' | 'attribute' | 'predict' | 'predictBatchAsync' | 'explainBatchAsync'>;

/** What the processor needs from outside: the model, settings, a logger and metrics. */
export interface ProcessorOptions {
  readonly config: ProcessorConfig;
  readonly classifier: Scorer;
  readonly logger: Logger;
  readonly metrics: ProcessorMetrics;
}

/** One output waiting for its delivery report: enough to produce it again. */
interface PendingOutput {
  readonly topic: string;
  readonly value: Buffer | null;
  readonly key: Buffer | string | null | undefined;
  readonly headers: Message['headers'];
  readonly sourcePartition: number;
  readonly sourceOffset: number;
  readonly eventTimestampMs: number;
  attempt: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Scores a stream of PredictRequest records; see the module comment. */
export class StreamProcessor {
  private readonly config: ProcessorConfig;
  private readonly classifier: Scorer;
  private readonly log: Logger;
  private readonly metrics: ProcessorMetrics;
  private readonly consumer: KafkaConsumer;
  private readonly producer: Producer;
  private readonly tracker: OffsetTracker;
  /** Decision threshold: the flag, else the model's `threshold` attribute, else 0.5. */
  readonly threshold: number;
  /** The model version written into every output. */
  readonly modelVersion: string;
  /** The model's version, the xgboost release that saved it and the libxgboost that scores it. */
  private readonly modelFacts: Record<string, string>;
  private readonly maxInFlight: number;
  /** Per-record metric series, bound once: a delivery report updates them without formatting labels. */
  private readonly recordsOutByTopic: Map<string, { inc(by?: number): void }>;
  private readonly deadLettersByReason = new Map<string, { inc(by?: number): void }>();
  private readonly endToEnd: { observe(value: number): void };

  private assigned = new Set<number>();
  /** Bumped for a partition when it is revoked, so records fetched across a revocation can be recognised. */
  private readonly revocations = new Map<number, number>();
  private rebalancing: Promise<void> = Promise.resolve();
  private stopping = false;
  private closing = false;
  private fetchLoopDone: Promise<void> = Promise.resolve();
  private batchesInFlight = new Set<Promise<void>>();
  /** Whether a batch is being scored: the next one is fetched when it is done. */
  private scoring = false;
  /** Outputs are produced batch after batch, in consumption order, whatever order predictions finish in. */
  private produceChain: Promise<void> = Promise.resolve();
  private progressWaiters: Array<() => void> = [];
  private storeScheduled = false;
  private fatalError: Error | undefined;
  private stopped: Promise<number> | undefined;
  private resolveFinished!: (code: number) => void;
  /** Resolves with the exit status once the processor has stopped, by request or by a fatal error. */
  readonly finished: Promise<number> = new Promise((resolve) => { this.resolveFinished = resolve; });

  constructor(options: ProcessorOptions) {
    this.config = options.config;
    this.classifier = options.classifier;
    this.log = options.logger;
    this.metrics = options.metrics;
    this.tracker = new OffsetTracker(this.config.inputTopic);
    this.threshold = resolveThreshold(this.config.threshold, this.classifier.attribute('threshold'));
    this.modelVersion = this.classifier.attribute('model_version') ?? 'unversioned';
    this.maxInFlight = Math.max(10_000, this.config.batchSize * 8);
    this.recordsOutByTopic = new Map([this.config.suspiciousTopic, this.config.regularTopic,
      this.config.deadLetterTopic].map((topic) => [topic, this.metrics.recordsOut.child({ topic })]));
    this.endToEnd = this.metrics.endToEndSeconds.child();
    const { savedByXgboost, libxgboost, objective } = this.classifier.modelInfo;
    this.metrics.modelInfo.set({ version: this.modelVersion, saved_by_xgboost: savedByXgboost, libxgboost }, 1);
    this.modelFacts = { modelVersion: this.modelVersion, modelSavedByXgboost: savedByXgboost, libxgboost, objective };

    const properties = splitKafkaProperties(this.config.kafkaProperties);
    const common = {
      'bootstrap.servers': this.config.brokers,
      'client.id': 'xgb-stream',
      // Delivers librdkafka's log lines as events, which the logger shows at debug level.
      'event_cb': 'debug' in this.config.kafkaProperties,
      ...properties.global,
    };
    this.consumer = new KafkaConsumer({
      'group.id': this.config.groupId,
      'enable.auto.commit': true,
      // Offsets are stored by hand, only after delivery; auto-commit then commits what was stored.
      'enable.auto.offset.store': false,
      // Commits once a second what was stored: bounds what a crash makes the next owner score again.
      'auto.commit.interval.ms': 1000,
      'enable.partition.eof': false,
      'fetch.wait.max.ms': 100,
      ...common,
      'rebalance_cb': (err: LibrdKafkaError, assignment: TopicPartition[]) => this.onRebalance(err, assignment),
    }, { 'auto.offset.reset': 'earliest', ...properties.topic });
    this.producer = new Producer({
      // Idempotence makes the producer's own retries safe (no duplicates, no reordering); it needs acks=all.
      'enable.idempotence': true,
      // 1 ms: natural batching already hands librdkafka a batch's outputs at once; a longer linger only
      // adds latency at low load.
      'linger.ms': 1,
      'dr_cb': true,
      ...common,
    }, { 'acks': -1, ...properties.topic });
  }

  /** Whether the processor holds partitions and a model: what `/readyz` reports. */
  get ready(): boolean {
    return !this.stopping && this.assigned.size > 0;
  }

  /** Input partitions currently assigned to this instance. */
  get assignedPartitions(): number[] {
    return [...this.assigned].sort((a, b) => a - b);
  }

  /** Connects, checks (or creates) the topics, subscribes and starts consuming. */
  async start(): Promise<void> {
    await connect(this.producer, 'producer');
    try {
      await ensureTopics(this.producer, this.config, this.log);
      await connect(this.consumer, 'consumer');
    } catch (err) {
      await disconnect(this.producer);
      throw err;
    }
    this.producer.setPollInterval(5);
    this.producer.on('delivery-report', (err, report) => this.onDelivery(err, report));
    this.producer.on('event.error', (err) => this.onClientError('producer', err));
    this.consumer.on('event.error', (err) => this.onClientError('consumer', err));
    // librdkafka's own debug log, asked for with -X debug=<contexts>.
    const librdkafkaLog = (client: string) => (entry: { fac: string; message: string }): void => {
      this.log.debug(`librdkafka ${client}`, { facility: entry.fac, detail: entry.message });
    };
    this.consumer.on('event.log', librdkafkaLog('consumer'));
    this.producer.on('event.log', librdkafkaLog('producer'));
    this.consumer.subscribe([this.config.inputTopic]);
    this.log.info('processor started', {
      brokers: this.config.brokers, inputTopic: this.config.inputTopic, groupId: this.config.groupId,
      threshold: this.threshold, ...this.modelFacts, batchSize: this.config.batchSize,
    });
    this.fetchLoopDone = this.fetchLoop().catch((err) => this.fail(err as Error));
  }

  /**
   * Stops gracefully: no more fetching, the batches in flight are finished and delivered, the
   * producer flushed and the offsets committed. Resolves with the exit status (0 when all went well).
   */
  stop(): Promise<number> {
    if (!this.stopped) {
      this.stopped = this.shutdown();
      void this.stopped.then((code) => this.resolveFinished(code));
    }
    return this.stopped;
  }

  /** Updates the lag gauge from the consumer's positions and cached high watermarks. */
  refreshLag(): void {
    if (this.closing) return;
    try {
      const positions = this.consumer.position(this.assignedPartitions.map((partition) => ({
        topic: this.config.inputTopic, partition,
      })));
      for (const p of positions) {
        // No position yet (nothing consumed since the assignment): no lag to report, rather than NaN.
        if (typeof p.offset !== 'number' || p.offset < 0) continue;
        const { highOffset } = this.consumer.getWatermarkOffsets(p.topic, p.partition);
        if (highOffset >= 0) this.metrics.consumerLag.set({ partition: String(p.partition) }, Math.max(0, highOffset - p.offset));
      }
    } catch (err) {
      this.log.debug('lag not available', { error: err });
    }
  }

  // ---- fetching and batching -------------------------------------------------------------------

  /**
   * One consume call. librdkafka reports passing trouble (a broker connection lost, a leader moving)
   * through consume as well and recovers by itself, so only a fatal error ends the fetch loop.
   */
  private async consumeBatch(max: number, timeoutMs: number): Promise<Message[]> {
    this.consumer.setDefaultConsumeTimeout(timeoutMs);
    try {
      return await new Promise<Message[]>((resolve, reject) => {
        this.consumer.consume(max, (err, messages) => (err ? reject(err) : resolve(messages)));
      });
    } catch (err) {
      const e = err as LibrdKafkaError;
      if (e.isFatal) throw new Error(`fatal consumer error: ${e.message}`);
      this.log.warn('consume failed; retrying', { error: e.message, code: e.code });
      await sleep(IDLE_CONSUME_MS);
      return [];
    }
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
  private async fetchLoop(): Promise<void> {
    const { batchSize, batchWaitMs } = this.config;
    while (!this.stopping) {
      await this.rebalancing;
      if (this.tracker.inFlight >= this.maxInFlight || this.batchesInFlight.size >= MAX_BATCHES_IN_FLIGHT
        || this.scoring) {
        await this.nextProgress();
        continue;
      }
      const revocationsAtStart = new Map(this.revocations);
      let batch = await this.consumeBatch(batchSize, 0);
      if (batch.length === 0) {
        batch = await this.consumeBatch(1, IDLE_CONSUME_MS);
        if (batch.length === 0) continue;
        if (batchSize > 1) batch = batch.concat(await this.consumeBatch(batchSize - 1, 0));
      }
      const firstAt = Date.now();
      while (batchWaitMs > 0 && batch.length < batchSize && !this.stopping) {
        const more = await this.consumeBatch(batchSize - batch.length, 0);
        batch = batch.concat(more);
        if (more.length > 0 || batch.length >= batchSize) continue;
        const left = batchWaitMs - (Date.now() - firstAt);
        if (left <= 0) break;
        const one = await this.consumeBatch(1, left);
        if (one.length === 0) break;
        batch = batch.concat(one);
      }
      const current = this.dropRevoked(batch, revocationsAtStart);
      if (current.length > 0) this.dispatch(current);
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
    for (const [partition, offset] of rewind) {
      this.consumer.seek({ topic: this.config.inputTopic, partition, offset }, 0, (err) => {
        if (err) this.fail(new Error(`could not rewind partition ${partition} to offset ${offset}: ${err.message}`));
      });
    }
    if (kept.length < batch.length) {
      this.log.debug('dropped records of revoked partitions', { dropped: batch.length - kept.length, rewound: [...rewind] });
    }
    return kept;
  }

  private dispatch(messages: Message[]): void {
    for (const m of messages) this.tracker.add(m.partition, m.offset);
    this.metrics.recordsIn.inc({}, messages.length);
    this.metrics.batchSize.observe(messages.length);
    this.metrics.inFlight.set({}, this.tracker.inFlight);
    const scored = this.scoreBatch(messages);
    this.scoring = true;
    void scored.catch(() => undefined).finally(() => {
      this.scoring = false;
      this.notifyProgress();
    });
    const produced = this.produceChain.then(() => scored).then((outputs) => this.produceAll(outputs));
    this.produceChain = produced.catch(() => undefined);
    const tracked: Promise<void> = produced
      .catch((err) => this.fail(err as Error))
      .finally(() => {
        this.batchesInFlight.delete(tracked);
        this.notifyProgress();
      });
    this.batchesInFlight.add(tracked);
  }

  // ---- scoring ---------------------------------------------------------------------------------

  private async scoreBatch(messages: Message[]): Promise<PendingOutput[]> {
    const numFeatures = this.classifier.numFeatures;
    const checked = messages.map((m) => validateRequest(m.value, numFeatures, this.config.rejectMissing));
    const valid: Array<{ message: Message; record: ValidRecord }> = [];
    checked.forEach((c, i) => { if (c.ok) valid.push({ message: messages[i], record: c }); });

    const rows = new Float32Array(valid.length * numFeatures);
    valid.forEach(({ record }, i) => rows.set(record.features, i * numFeatures));
    const scores = valid.length > 0 ? await this.predictWithRetry(rows, valid.length) : [];

    const explanations = await this.explainSuspicious(rows, scores);
    const outputs: PendingOutput[] = [];
    let v = 0;
    const scoredAt = Date.now();
    messages.forEach((message, i) => {
      const c = checked[i];
      if (!c.ok) {
        outputs.push(this.deadLetter(message, c.reason, c.message));
        return;
      }
      const row = v++;
      const score = scores[row];
      if (score instanceof Error) {
        outputs.push(this.deadLetter(message, 'scoring-failed', score.message));
      } else {
        outputs.push(this.scoredOutput(message, c, score, scoredAt, explanations.get(row) ?? []));
      }
    });
    return outputs;
  }

  /**
   * Contributions of the batch's suspicious rows, by row index, in one call on the thread pool:
   * exact TreeSHAP costs milliseconds a row, too much for the event loop. None when not asked for,
   * or when the output format has no room for them.
   */
  private async explainSuspicious(rows: Float32Array, scores: Array<number | Error>): Promise<Map<number, Contribution[]>> {
    const explained = new Map<number, Contribution[]>();
    if (this.config.explain === 'none' || this.config.outputFormat === 'float') return explained;
    const suspicious = scores.flatMap((s, i) => (typeof s === 'number' && s >= this.threshold ? [i] : []));
    if (suspicious.length === 0) return explained;
    const n = this.classifier.numFeatures;
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

  /**
   * Scores a batch, retrying a failed call; if it keeps failing, scores the rows one at a time so that
   * only the rows that really fail become dead letters. A row is never routed without a score.
   */
  private async predictWithRetry(rows: Float32Array, nRows: number): Promise<Array<number | Error>> {
    let lastError: Error | undefined;
    for (let attempt = 1; attempt <= PREDICT_ATTEMPTS; attempt++) {
      const started = process.hrtime.bigint();
      try {
        const result = await this.classifier.predictBatchAsync(rows, nRows);
        this.metrics.inferenceSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
        return Array.from(result);
      } catch (err) {
        lastError = err as Error;
        this.log.warn('batch prediction failed', { attempt, rows: nRows, error: lastError });
      }
    }
    this.log.error('batch prediction keeps failing; scoring rows one by one', { rows: nRows, error: lastError });
    const n = this.classifier.numFeatures;
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

  private scoredOutput(
    message: Message, record: ValidRecord, score: number, scoredAt: number, contributions: Contribution[],
  ): PendingOutput {
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
    };
    return {
      topic: suspicious ? this.config.suspiciousTopic : this.config.regularTopic,
      value: encodeOutputValue(this.config.outputFormat, scoredRecord),
      key: record.recordID,
      headers: scoredHeaders(sourceOf(message), this.modelVersion),
      sourcePartition: message.partition,
      sourceOffset: message.offset,
      eventTimestampMs,
      attempt: 0,
    };
  }

  private deadLetter(message: Message, reason: DeadLetterReason, text: string): PendingOutput {
    this.log.info('dead letter', { reason, error: text, partition: message.partition, offset: message.offset });
    return {
      topic: this.config.deadLetterTopic,
      value: message.value,
      key: message.key,
      headers: deadLetterHeaders(sourceOf(message), reason, text),
      sourcePartition: message.partition,
      sourceOffset: message.offset,
      eventTimestampMs: eventTimeOf(message, Date.now()),
      attempt: 0,
    };
  }

  // ---- producing and delivery ------------------------------------------------------------------

  private async produceAll(outputs: PendingOutput[]): Promise<void> {
    for (const output of outputs) await this.produce(output);
  }

  private async produce(output: PendingOutput): Promise<void> {
    output.attempt++;
    const value = nonNullEmpty(output.value);
    const key = typeof output.key === 'string' ? output.key : nonNullEmpty(output.key);
    for (;;) {
      try {
        this.producer.produce(output.topic, null, value, key, Date.now(), output, output.headers);
        return;
      } catch (err) {
        // The local queue is full: let delivery reports drain it, then try again.
        if ((err as LibrdKafkaError).code !== ERR_QUEUE_FULL) throw err;
        this.producer.poll();
        await sleep(5);
      }
    }
  }

  private onDelivery(err: LibrdKafkaError | null, report: DeliveryReport): void {
    const output = report.opaque as PendingOutput;
    if (err) {
      this.metrics.deliveryFailures.inc();
      this.log.error('delivery failed', {
        topic: output.topic, sourcePartition: output.sourcePartition, sourceOffset: output.sourceOffset,
        attempt: output.attempt, error: err.message,
      });
      if (output.attempt < DELIVERY_ATTEMPTS && !this.closing) {
        this.produce(output).catch((e) => this.fail(e as Error));
      } else {
        this.tracker.failed(output.sourcePartition, output.sourceOffset);
        this.fail(new Error(`could not deliver to ${output.topic} the output of ${this.config.inputTopic} `
          + `partition ${output.sourcePartition} offset ${output.sourceOffset}: ${err.message}`));
      }
      return;
    }
    this.tracker.delivered(output.sourcePartition, output.sourceOffset);
    if (output.topic === this.config.deadLetterTopic) {
      const reason = headerValue(output.headers, HEADER.errorReason) ?? 'unknown';
      let counter = this.deadLettersByReason.get(reason);
      if (!counter) this.deadLettersByReason.set(reason, (counter = this.metrics.deadLetters.child({ reason })));
      counter.inc();
    }
    this.recordsOutByTopic.get(output.topic)!.inc();
    this.endToEnd.observe(Math.max(0, Date.now() - output.eventTimestampMs) / 1000);
    this.scheduleStore();
    this.notifyProgress();
  }

  /** Stores advanced offsets once per turn of the event loop rather than once per delivery report. */
  private scheduleStore(): void {
    if (this.storeScheduled) return;
    this.storeScheduled = true;
    setImmediate(() => {
      this.storeScheduled = false;
      this.metrics.inFlight.set({}, this.tracker.inFlight);
      if (this.closing) return;
      const offsets = this.tracker.takeStorable(this.assignedPartitions);
      if (offsets.length > 0) this.storeOffsets(offsets);
    });
  }

  private storeOffsets(offsets: PartitionOffset[]): void {
    try {
      this.consumer.offsetsStore(offsets.map((o) => ({ ...o })));
    } catch (err) {
      this.log.warn('could not store offsets', { offsets, error: err });
    }
  }

  private notifyProgress(): void {
    const waiters = this.progressWaiters;
    this.progressWaiters = [];
    for (const w of waiters) w();
  }

  private nextProgress(): Promise<void> {
    return new Promise((resolve) => {
      this.progressWaiters.push(resolve);
      // Wakes up even without progress so that a stop request is noticed.
      setTimeout(resolve, 50);
    });
  }

  /** Waits until the given partitions (all when omitted) have no undelivered outputs, or the deadline. */
  private async drain(deadline: number, partitions?: readonly number[]): Promise<boolean> {
    while (Date.now() < deadline) {
      if (this.tracker.pending(partitions) === 0 && (partitions || this.batchesInFlight.size === 0)) return true;
      if (this.fatalError) return false;
      await this.nextProgress();
    }
    return false;
  }

  // ---- rebalance -------------------------------------------------------------------------------

  private onRebalance(err: LibrdKafkaError, assignment: TopicPartition[]): void {
    const cooperative = this.consumer.rebalanceProtocol() === 'COOPERATIVE';
    const partitions = assignment.map((a) => a.partition);
    try {
      if (err.code === ERR_ASSIGN_PARTITIONS) {
        for (const p of partitions) this.assigned.add(p);
        if (cooperative) this.consumer.incrementalAssign(assignment);
        else this.consumer.assign(assignment);
        this.log.info('partitions assigned', { partitions, assigned: this.assignedPartitions });
        this.metrics.assignedPartitions.set({}, this.assigned.size);
      } else if (err.code === ERR_REVOKE_PARTITIONS) {
        for (const p of partitions) {
          this.assigned.delete(p);
          this.revocations.set(p, (this.revocations.get(p) ?? 0) + 1);
          this.metrics.consumerLag.delete({ partition: String(p) });
        }
        this.metrics.assignedPartitions.set({}, this.assigned.size);
        this.rebalancing = this.finishRevoked(partitions).finally(() => {
          try {
            if (cooperative) this.consumer.incrementalUnassign(assignment);
            else this.consumer.unassign();
          } catch (e) {
            this.log.warn('unassign failed', { error: e });
          }
          this.log.info('partitions revoked', { partitions, assigned: this.assignedPartitions });
        });
      } else {
        this.log.error('rebalance error', { error: err.message });
        this.consumer.unassign();
      }
    } catch (e) {
      this.log.warn('rebalance handling failed', { error: e });
    }
  }

  /**
   * Before revoked partitions go: wait for their outputs to be delivered, then store and commit their
   * offsets so that the next owner starts right after the last delivered record.
   */
  private async finishRevoked(partitions: number[]): Promise<void> {
    if (!this.closing) {
      const drained = await this.drain(Date.now() + this.config.shutdownTimeoutMs, partitions);
      if (!drained) this.log.warn('revoked partitions still had undelivered outputs', { partitions });
      this.commit(this.tracker.takeStorable(partitions, true));
    }
    this.tracker.drop(partitions);
  }

  private commit(offsets: PartitionOffset[]): void {
    if (offsets.length === 0) return;
    try {
      this.consumer.offsetsStore(offsets.map((o) => ({ ...o })));
      this.consumer.commitSync(offsets.map((o) => ({ ...o })));
      this.log.info('offsets committed', { offsets });
    } catch (err) {
      this.log.warn('commit failed', { offsets, error: err });
    }
  }

  // ---- errors and shutdown ---------------------------------------------------------------------

  private onClientError(client: string, err: LibrdKafkaError): void {
    if (err.isFatal) {
      this.fail(new Error(`fatal ${client} error: ${err.message}`));
    } else {
      this.log.warn(`${client} error`, { error: err.message, code: err.code });
    }
  }

  private fail(err: Error): void {
    if (this.fatalError) return;
    this.fatalError = err;
    this.log.error('stopping after a fatal error', { error: err });
    void this.stop();
  }

  private async shutdown(): Promise<number> {
    const deadline = Date.now() + this.config.shutdownTimeoutMs;
    this.stopping = true;
    this.log.info('stopping: finishing batches in flight');
    this.notifyProgress();
    await this.fetchLoopDone;
    await this.rebalancing;
    const drained = await this.drain(deadline);
    const flushed = await new Promise<boolean>((resolve) => {
      this.producer.flush(Math.max(1, deadline - Date.now()), (err) => {
        if (err) this.log.error('flush failed', { error: err.message });
        resolve(!err);
      });
    });
    // Whatever was delivered is committed, also after a failure: the tracker never passes a lost output.
    this.commit(this.tracker.takeStorable(this.assignedPartitions, true));
    // Counted now: leaving the group below revokes the partitions, which drops their records.
    const pending = this.tracker.pending();
    this.closing = true;
    await disconnect(this.consumer);
    await disconnect(this.producer);
    const clean = drained && flushed && !this.fatalError;
    if (!clean) {
      this.log.error('stopped with outputs not delivered; they will be processed again after a restart', {
        pending, error: this.fatalError,
      });
    }
    this.log.info('stopped');
    return clean ? EXIT.ok : EXIT.failure;
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

function sourceOf(message: Message): Source {
  return { topic: message.topic, partition: message.partition, offset: message.offset, headers: message.headers };
}

/** The record's own timestamp, or `fallback` when the producer set none. */
function eventTimeOf(message: Message, fallback: number): number {
  return message.timestamp !== undefined && message.timestamp >= 0 ? message.timestamp : fallback;
}

function headerValue(headers: Message['headers'], key: string): string | undefined {
  for (const h of headers ?? []) if (key in h) return String(h[key]);
  return undefined;
}

/** The decision threshold: an explicit setting wins; a model attribute must be a number in [0, 1]. */
export function resolveThreshold(configured: number | undefined, attribute: string | undefined): number {
  if (configured !== undefined) return configured;
  if (attribute === undefined) return 0.5;
  const t = Number(attribute);
  if (attribute.trim() === '' || !Number.isFinite(t) || t < 0 || t > 1) {
    throw new Error(`the model's threshold attribute '${attribute}' is not a number from 0 to 1; pass --threshold`);
  }
  return t;
}

type Connectable = KafkaConsumer | Producer;

function connect(client: Connectable, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    client.connect({ timeout: 30_000 }, (err) => {
      if (err) reject(new Error(`could not connect the ${what}: ${err.message}`));
      else resolve();
    });
  });
}

function disconnect(client: Connectable): Promise<void> {
  return new Promise((resolve) => {
    if (!client.isConnected()) {
      resolve();
      return;
    }
    client.disconnect(() => resolve());
  });
}
