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
import { loadDataPathAddon, type NativeClientError, type NativeDataPath, type NativeDataPathStats } from '../native';
import { BrokerHealth } from './broker-health';
import { splitKafkaProperties } from './kafka-properties';
import { ServingModel, type ServedClassifier } from './model/serving-model';

/** librdkafka's default message.max.bytes. */
const LIBRDKAFKA_MESSAGE_MAX_BYTES = 1_000_000;
/**
 * How often counters and log lines are collected: often enough that a log line is timely and a
 * scrape is at most this stale, rarely enough to cost nothing next to the loop.
 */
const POLL_MS = 250;
/**
 * Past --shutdown-timeout-ms (the loop's own bound on the outputs' delivery), how long a stop waits
 * for the commit and the consumer's close before it gives up on them: the records since the last
 * commit are then read again after a restart (at least once).
 */
const CLOSE_GRACE_MS = 5_000;
/**
 * The same with the brokers unreachable when the stop begins: the commit and the close cannot
 * succeed, so the stop waits for the delivery of what is in flight and no longer (as the node path
 * leaves its clients unclosed then).
 */
const CLOSE_GRACE_IN_OUTAGE_MS = 500;

/** What the native data path needs from outside. */
export interface NativePathOptions {
  readonly config: ProcessorConfig;
  /** The model, loaded by the Classifier: its threshold, version and feature count. The loop loads its own copy. */
  readonly classifier: ServedClassifier;
  readonly logger: Logger;
  readonly metrics: ProcessorMetrics;
}

/**
 * When librdkafka wrote these statistics (their `time`, whole seconds, rounded down), not when the
 * loop served them: a consumer's statistics wait in its queue for the next consume call, and those
 * written before an outage began must not end it.
 */
function emittedAt(json: string, now: number): number {
  const seconds = /"time":\s*(\d+)/.exec(json)?.[1];
  return seconds === undefined ? now : Math.min(now, Number(seconds) * 1000);
}

/** Runs and watches the native loop; the readiness source of the metrics endpoint. */
export class NativeDataPathProcessor {
  private readonly config: ProcessorConfig;
  private readonly log: Logger;
  private readonly metrics: ProcessorMetrics;
  private readonly serving: ServingModel;
  private readonly loop: NativeDataPath;
  private readonly health: BrokerHealth;
  private readonly endToEnd: { observe(value: number): void };
  private timer: NodeJS.Timeout | undefined;
  private last: NativeDataPathStats | undefined;
  private stopping = false;
  private stopped: Promise<number> | undefined;
  private resolveFinished!: (code: number) => void;
  /** Resolves with the exit status once the loop has stopped, by request or by a failure. */
  readonly finished: Promise<number> = new Promise((resolve) => { this.resolveFinished = resolve; });

  constructor(options: NativePathOptions) {
    const { config, classifier, logger, metrics } = options;
    this.config = config;
    this.log = logger;
    this.metrics = metrics;
    this.health = new BrokerHealth(config.brokers, logger, metrics);
    this.endToEnd = metrics.endToEndSeconds.child();
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
    return !this.stopping && this.assignedPartitions.length > 0 && this.health.outage === undefined;
  }

  get notReadyReason(): string | undefined {
    return this.stopping ? 'stopping' : this.health.outage;
  }

  /** The loop measures lag itself, about once a second; a scrape takes the latest. */
  refreshLag(): void {
    this.collect();
  }

  /** Subscribes and starts the loop's thread; log lines and counters are collected from now on. */
  async start(): Promise<void> {
    this.loop.start();
    this.log.info('processor started', {
      dataPath: 'native', brokers: this.config.brokers, inputTopic: this.config.inputTopic, groupId: this.config.groupId,
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
    const outage = this.health.outage;
    if (outage !== undefined) this.log.warn('stopping with the brokers unreachable: the commit and the close are not waited for', { reason: outage });
    const boundMs = this.config.shutdownTimeoutMs + (outage === undefined ? CLOSE_GRACE_MS : CLOSE_GRACE_IN_OUTAGE_MS);
    let bound: NodeJS.Timeout | undefined;
    const stoppedInTime = await Promise.race([
      this.loop.stop().then(() => true),
      new Promise<boolean>((resolve) => { bound = setTimeout(resolve, boundMs, false); }),
    ]);
    clearTimeout(bound);
    this.collect();
    if (!stoppedInTime) {
      // A librdkafka call that does not return (a consumer close in the middle of a rebalance with the
      // cluster in trouble): what the loop did not commit is read again after a restart.
      this.log.error('the native data path did not stop in time', {
        waitedMs: boundMs, shutdownTimeoutMs: this.config.shutdownTimeoutMs,
      });
    }
    const failure = this.loop.state().failure
      ?? (stoppedInTime ? undefined : `the loop did not stop within ${boundMs} ms${outage === undefined ? '' : ' (the brokers unreachable)'}`);
    const code = failure !== undefined ? EXIT.failure : status;
    if (failure !== undefined) this.log.error('the native data path failed', { error: failure });
    this.log.info('processor stopped', { exitCode: code });
    this.resolveFinished(code);
    return code;
  }

  /**
   * Collects, and notices a loop that failed (a failed delivery, a fatal client error) or ended by
   * itself: its stop is then bounded as a requested one is, even when the loop's own close hangs.
   */
  private watch(): void {
    this.collect();
    const state = this.loop.state();
    if (!this.stopping && (!state.running || state.failure !== undefined)) void this.stop();
  }

  /**
   * Moves what the loop queued into the logger, the broker health and the metrics, and its counters'
   * increments into the metrics.
   */
  private collect(): void {
    const got = this.loop.collect();
    for (const line of got.lines) this.log[line.level](line.message, line.fields);
    if (got.dropped > 0) this.log.warn('native data path log lines dropped', { dropped: got.dropped });
    for (const err of got.errors) this.onClientError(err);
    const now = Date.now();
    if (got.producerStats !== undefined) this.health.onStats(got.producerStats, 'producer', now, emittedAt(got.producerStats, now));
    if (got.consumerStats !== undefined) this.health.onStats(got.consumerStats, 'consumer', now, emittedAt(got.consumerStats, now));
    for (let i = 0; i < got.batches.length; i += 2) {
      this.metrics.batchSize.observe(got.batches[i]);
      this.metrics.inferenceSeconds.observe(got.batches[i + 1]);
    }
    for (const ms of got.endToEndMs) this.endToEnd.observe(ms / 1000);
    this.count(this.loop.stats());
  }

  /** As the node path: a fatal error was already the loop's failure; connection errors go to the outage's lines. */
  private onClientError(err: NativeClientError): void {
    if (!err.fatal) {
      this.health.onClientError(err.client, err);
      return;
    }
    this.health.onError(err);
    this.log.error(`${err.client} error`, { error: err.message, code: err.code, fatal: true });
  }

  private count(now: NativeDataPathStats): void {
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
    for (const [reason, n] of Object.entries(now.skipped)) {
      const d = delta(n, before?.skipped[reason]);
      if (d > 0) m.recordsSkipped.inc({ reason }, d);
    }
    m.deliveryFailures.inc({}, delta(now.deliveryFailures, before?.deliveryFailures));
    m.commitFailures.inc({}, delta(now.commitFailures, before?.commitFailures));
    m.assignedPartitions.set({}, now.assignedPartitions.length);
    m.inFlight.set({}, now.inFlight);
    for (const partition of Object.keys(before?.lag ?? {})) {
      if (!(partition in now.lag)) m.consumerLag.delete({ partition });
    }
    for (const [partition, behind] of Object.entries(now.lag)) m.consumerLag.set({ partition }, behind);
    this.last = now;
  }
}
