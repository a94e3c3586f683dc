/**
 * The control plane of the native data path (`--data-path native`): starts the C++ loop of
 * native/datapath/, which consumes, scores and produces on a thread of its own, and stops it; moves its
 * counters into the processor's metrics and its log lines into the logger. JavaScript never sees a record.
 */
import * as path from 'node:path';
import type { ProcessorConfig } from '../config';
import { EXIT } from '../exit';
import type { Logger } from '../log';
import type { ProcessorMetrics } from '../metrics';
import { loadDataPathAddon, type NativeDataPath, type NativeDataPathStats } from '../native';
import { splitKafkaProperties } from './kafka-properties';
import { ServingModel, type ServedClassifier } from './model/serving-model';

/** librdkafka's default message.max.bytes. */
const LIBRDKAFKA_MESSAGE_MAX_BYTES = 1_000_000;
/**
 * How often counters and log lines are collected: often enough that a log line is timely and a
 * scrape is at most this stale, rarely enough to cost nothing next to the loop.
 */
const POLL_MS = 250;

/** What the native data path needs from outside. */
export interface NativePathOptions {
  readonly config: ProcessorConfig;
  /** The model, loaded by the Classifier: its threshold, version and feature count. The loop loads its own copy. */
  readonly classifier: ServedClassifier;
  readonly logger: Logger;
  readonly metrics: ProcessorMetrics;
  /** Score the next batch while the broker acknowledges the last (the bench's XGB_STREAM_NATIVE_PIPELINED=1). */
  readonly pipelined?: boolean;
}

/** Runs and watches the native loop; the readiness source of the metrics endpoint. */
export class NativeDataPathProcessor {
  private readonly config: ProcessorConfig;
  private readonly log: Logger;
  private readonly metrics: ProcessorMetrics;
  private readonly serving: ServingModel;
  private readonly loop: NativeDataPath;
  private readonly pipelined: boolean;
  private timer: NodeJS.Timeout | undefined;
  private last: NativeDataPathStats | undefined;
  private stopping = false;
  private stopped: Promise<number> | undefined;
  private resolveFinished!: (code: number) => void;
  /** Resolves with the exit status once the loop has stopped, by request or by a failure. */
  readonly finished: Promise<number> = new Promise((resolve) => { this.resolveFinished = resolve; });

  constructor(options: NativePathOptions) {
    const { config, classifier, logger, metrics, pipelined = false } = options;
    this.config = config;
    this.pipelined = pipelined;
    this.log = logger;
    this.metrics = metrics;
    this.serving = new ServingModel(classifier, config.threshold, false);
    metrics.modelInfo.set(this.serving.infoLabels, 1);
    const properties = splitKafkaProperties(config.kafkaProperties);
    const producerMax = Number(properties.global['message.max.bytes'] ?? LIBRDKAFKA_MESSAGE_MAX_BYTES);
    const { DataPath } = loadDataPathAddon();
    this.loop = new DataPath({
      brokers: config.brokers,
      groupId: config.groupId,
      instanceId: config.instanceId ?? '',
      inputTopic: config.inputTopic,
      suspiciousTopic: config.suspiciousTopic,
      regularTopic: config.regularTopic,
      deadLetterTopic: config.deadLetterTopic,
      modelPath: path.resolve(config.modelPath),
      nthread: config.nthread,
      threshold: this.serving.threshold,
      modelVersion: this.serving.version,
      batchSize: config.batchSize,
      maxOutputBytes: Math.min(config.maxMessageBytes, producerMax),
      shutdownTimeoutMs: config.shutdownTimeoutMs,
      connectTimeoutMs: config.connectTimeoutMs,
      pipelined,
      rejectMissing: config.rejectMissing,
      maxRecordIdBytes: config.maxRecordIdBytes,
      // Set on the global configuration, which takes topic-level properties too: there is no
      // separate default topic configuration to override them.
      kafkaProperties: Object.entries(config.kafkaProperties),
    });
    if (this.loop.numFeatures() !== classifier.numFeatures) {
      throw new Error(`the native data path read ${this.loop.numFeatures()} features from --model, the Classifier ${classifier.numFeatures}`);
    }
  }

  get threshold(): number {
    return this.serving.threshold;
  }

  get modelVersion(): string {
    return this.serving.version;
  }

  get assignedPartitions(): number[] {
    return this.last?.assignedPartitions ?? [];
  }

  get ready(): boolean {
    return !this.stopping && this.assignedPartitions.length > 0;
  }

  get notReadyReason(): string | undefined {
    return this.stopping ? 'stopping' : undefined;
  }

  /** The loop measures lag itself, about once a second; a scrape takes the latest. */
  refreshLag(): void {
    this.collect();
  }

  /** Subscribes and starts the loop's thread; log lines and counters are collected from now on. */
  async start(): Promise<void> {
    this.loop.start();
    this.log.info('processor started', {
      dataPath: 'native', pipelined: this.pipelined, brokers: this.config.brokers, inputTopic: this.config.inputTopic, groupId: this.config.groupId,
      threshold: this.threshold, modelVersion: this.modelVersion, batchSize: this.config.batchSize,
      guarantee: this.config.guarantee,
    });
    this.timer = setInterval(() => this.watch(), POLL_MS);
  }

  /** Stops the loop after its batch; it commits what it stored and leaves the group. Idempotent. */
  stop(): Promise<number> {
    this.stopped ??= this.stopLoop(EXIT.ok);
    return this.stopped;
  }

  private async stopLoop(status: number): Promise<number> {
    this.stopping = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.loop.stop();
    this.collect();
    const failure = this.loop.state().failure;
    const code = failure !== undefined ? EXIT.failure : status;
    if (failure !== undefined) this.log.error('the native data path failed', { error: failure });
    this.log.info('processor stopped', { exitCode: code });
    this.resolveFinished(code);
    return code;
  }

  /** Collects, and notices a loop that ended by itself (a failed delivery, a fatal client error). */
  private watch(): void {
    this.collect();
    if (!this.stopping && !this.loop.state().running) void this.stop();
  }

  /** Moves the loop's log lines into the logger and its counters' increments into the metrics. */
  private collect(): void {
    const { lines, dropped } = this.loop.takeLog();
    for (const line of lines) this.log[line.level](line.message, line.fields);
    if (dropped > 0) this.log.warn('native data path log lines dropped', { dropped });
    const batches = this.loop.takeBatches();
    for (let i = 0; i < batches.length; i += 2) {
      this.metrics.batchSize.observe(batches[i]);
      this.metrics.inferenceSeconds.observe(batches[i + 1]);
    }
    const now = this.loop.stats();
    const before = this.last;
    const delta = (a: number, b: number | undefined): number => a - (b ?? 0);
    const m = this.metrics;
    m.recordsIn.inc({}, delta(now.recordsIn, before?.recordsIn));
    m.recordsOut.inc({ topic: this.config.suspiciousTopic }, delta(now.suspicious, before?.suspicious));
    m.recordsOut.inc({ topic: this.config.regularTopic }, delta(now.regular, before?.regular));
    let deadLetters = 0;
    for (const [reason, n] of Object.entries(now.deadLetters)) {
      const d = delta(n, before?.deadLetters[reason]);
      deadLetters += n;
      if (d > 0) m.deadLetters.inc({ reason }, d);
    }
    const deadBefore = Object.values(before?.deadLetters ?? {}).reduce((a, b) => a + b, 0);
    m.recordsOut.inc({ topic: this.config.deadLetterTopic }, deadLetters - deadBefore);
    m.deliveryFailures.inc({}, delta(now.deliveryFailures, before?.deliveryFailures));
    m.commitFailures.inc({}, delta(now.commitFailures, before?.commitFailures));
    m.assignedPartitions.set({}, now.assignedPartitions.length);
    for (const partition of Object.keys(before?.lag ?? {})) {
      if (!(partition in now.lag)) m.consumerLag.delete({ partition });
    }
    for (const [partition, behind] of Object.entries(now.lag)) m.consumerLag.set({ partition }, behind);
    this.last = now;
  }
}
