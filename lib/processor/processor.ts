/**
 * The stream processor: consumes PredictRequest records in a consumer group and writes each to the
 * suspicious, regular or dead-letter topic. The stages, each in its own module:
 * - `fetch/`: a source of batches, with natural batching;
 * - `score/`: validate, predict, explain, and build each record's output;
 * - `deliver/`: send, and acknowledge per batch (a flush, or a transaction's commit);
 * - `partitions/`: the owner of partition state: the assignment, the ledger of records in flight and
 *   acknowledged, commits, revocations and rewinds; the other stages report to it;
 * - `model/`: the model lifecycle: reload, gate, the serving model, shadow, canary rows.
 * This module creates the Kafka clients, wires the stages together and runs the lifecycle.
 */
import { CODES, KafkaConsumer, Producer, type LibrdKafkaError, type TopicPartition } from 'node-rdkafka';
import { EXIT } from '../exit';
import type { ProcessorConfig } from '../config';
import type { Logger } from '../log';
import type { ProcessorMetrics } from '../metrics';
import { hostname } from 'node:os';
import { ConfigError } from '../config';
import { AtLeastOnceDelivery, type Delivery, type DeliveryContext } from './deliver/at-least-once';
import { ExactlyOnceDelivery, initTransactions } from './deliver/exactly-once';
import { ShadowWriter } from './deliver/shadow-writer';
import { RecordSource, type AdmittedBatch } from './fetch/source';
import { PartitionOwner } from './partitions/owner';
import { BatchScorer, type Scorer } from './score/score';
import { ModelReloader, type ReloadOutcome } from './model/reload';
import { ServingModel, type ServedClassifier } from './model/serving-model';
import { ShadowScorer } from './model/shadow';
import { BrokerHealth } from './broker-health';
import { Progress } from './progress';
import { ensureTopics } from './topics';
import { splitKafkaProperties } from './kafka-properties';

export type { Scorer } from './score/score';
export type { ReloadOutcome } from './model/reload';

/** librdkafka's default message.max.bytes. */
const LIBRDKAFKA_MESSAGE_MAX_BYTES = 1_000_000;
/**
 * Batches in flight at once beyond those in the score stage: scored, their outputs waiting to be handed
 * to the producer behind the batches before them.
 */
const MAX_BATCHES_SCORED_UNSENT = 2;
/**
 * Connection errors librdkafka recovers from by itself: folded into the outage's lines. node-rdkafka
 * hands some over as text alone (code -1).
 */
/** The least time each client gets to disconnect at shutdown, even past the deadline. */
const SHUTDOWN_DISCONNECT_MIN_MS = 1_000;
/** How long a fenced producer gets to close before it is left behind. */
const RENEW_DISCONNECT_MS = 5_000;
/** At most one warn line about failing offset commits per this long. */
const COMMIT_WARN_INTERVAL_MS = 60_000;

/** A producer's global and topic configuration, kept to make a new one like it. */
interface ProducerSettings {
  readonly global: Record<string, unknown>;
  readonly topic: Record<string, unknown>;
}

/** What the processor needs from outside: the model, settings, a logger and metrics. */
export interface ProcessorOptions {
  readonly config: ProcessorConfig;
  readonly classifier: Scorer;
  /** --shadow-model, loaded: scores every batch beside the serving model, closed by the processor. */
  readonly shadow?: ServedClassifier;
  readonly logger: Logger;
  readonly metrics: ProcessorMetrics;
}

/** Scores a stream of PredictRequest records; see the module comment. */
export class StreamProcessor {
  private readonly config: ProcessorConfig;
  private readonly log: Logger;
  private readonly metrics: ProcessorMetrics;
  private readonly consumer: KafkaConsumer;
  /** The main outputs' producer; under exactly-once a fenced one is replaced by a new one. */
  private producer: Producer;
  private readonly producerConfig: ProducerSettings;
  /** The shadow outputs' own producer, with --shadow-topic: its failures never touch the main stream. */
  private readonly shadowProducer: Producer | undefined;
  /** Offset commits that failed since the last warn line about them. */
  private commitFailuresUnreported = 0;
  private commitFailureWarnedAt = 0;
  private readonly owner: PartitionOwner;
  private readonly source: RecordSource;
  private readonly scorer: BatchScorer;
  private readonly delivery: Delivery;
  private readonly health: BrokerHealth;
  private readonly reloader: ModelReloader;
  private readonly shadow: ShadowScorer | undefined;
  private readonly maxInFlight: number;
  /** The producer's transactional.id under exactly-once: the group id and the instance id (or host name). */
  private readonly transactionalId: string;
  private readonly exactlyOnce: boolean;

  private stopping = false;
  private fetchLoopDone: Promise<void> = Promise.resolve();
  private batchesInFlight = 0;
  /**
   * Batches in the score stage: the next one is fetched while the stage has room for it, so one batch
   * is decoded while the ones before it are predicted, and under load a batch grows while it waits.
   */
  private batchesScoring = 0;
  private readonly progress = new Progress();
  private fatalError: Error | undefined;
  private stopped: Promise<number> | undefined;
  private resolveFinished!: (code: number) => void;
  /** Resolves with the exit status once the processor has stopped, by request or by a fatal error. */
  readonly finished: Promise<number> = new Promise((resolve) => { this.resolveFinished = resolve; });

  constructor(options: ProcessorOptions) {
    const { config, classifier, logger, metrics } = options;
    this.config = config;
    this.log = logger;
    this.metrics = metrics;
    const serving = new ServingModel(classifier, config.threshold, false);
    this.maxInFlight = Math.max(10_000, config.batchSize * 8);
    metrics.modelInfo.set(serving.infoLabels, 1);
    if (options.shadow) {
      if (options.shadow.numFeatures !== classifier.numFeatures) {
        throw new ConfigError(`--shadow-model takes ${options.shadow.numFeatures} features, --model ${classifier.numFeatures}`);
      }
      this.shadow = new ShadowScorer(new ServingModel(options.shadow, config.threshold, true), metrics, logger);
    }

    const properties = splitKafkaProperties(config.kafkaProperties);
    // An output larger than either limit would be refused: the producer's own message.max.bytes
    // (librdkafka's default 1,000,000) or the output topics' max.message.bytes (--max-message-bytes).
    const producerMax = Number(properties.global['message.max.bytes'] ?? LIBRDKAFKA_MESSAGE_MAX_BYTES);
    const maxOutputBytes = Math.min(config.maxMessageBytes, producerMax);
    const common = {
      'bootstrap.servers': config.brokers,
      'client.id': 'xgb-stream',
      // Delivers librdkafka's log lines as events, which the logger shows at debug level.
      'event_cb': 'debug' in config.kafkaProperties,
      ...properties.global,
    };
    const exactlyOnce = config.guarantee === 'exactly-once';
    this.exactlyOnce = exactlyOnce;
    /** Stable across restarts, unique per instance: initTransactions then aborts what a crash left open. */
    this.transactionalId = `${config.groupId}.${config.instanceId ?? hostname()}`;
    this.consumer = new KafkaConsumer({
      'group.id': config.groupId,
      // At-least-once: offsets are stored by hand, only after delivery, and auto-commit commits what was
      // stored. Exactly-once: offsets are committed inside the transactions, never by the consumer.
      'enable.auto.commit': !exactlyOnce,
      'enable.auto.offset.store': false,
      ...(config.instanceId !== undefined ? { 'group.instance.id': config.instanceId } : {}),
      // Commits once a second what was stored: bounds what a crash makes the next owner score again.
      'auto.commit.interval.ms': 1000,
      'enable.partition.eof': false,
      'fetch.wait.max.ms': 100,
      // Once a second: the broker connection states that make an outage visible (broker-health.ts).
      'statistics.interval.ms': 1000,
      ...common,
      // Statistics arrive through the event callback, so the consumer always has it.
      'event_cb': true,
      // Commit results, so that failing commits are seen (counted and logged) as they happen.
      'offset_commit_cb': true,
      'rebalance_cb': (err: LibrdKafkaError, assignment: TopicPartition[]) => this.owner.onRebalance(err, assignment),
    }, { 'auto.offset.reset': 'earliest', ...properties.topic });
    this.producerConfig = {
      global: {
        // Idempotence makes the producer's own retries safe (no duplicates, no reordering); it needs acks=all.
        'enable.idempotence': true,
        // 1 ms: natural batching already hands librdkafka a batch's outputs at once; a longer linger only
        // adds latency at low load.
        'linger.ms': 1,
        // Reports of failed deliveries only, with the value to tell which output failed: outputs are
        // acknowledged per batch by a flush or a transaction's commit (output-sink.ts).
        'dr_msg_cb': true,
        'delivery.report.only.error': true,
        // Also bounds the batches librdkafka builds, so that many small outputs never make one batch
        // larger than the topics accept.
        'message.max.bytes': maxOutputBytes,
        // 10 s, as Kafka Streams sets it under exactly-once: a crashed instance that is not restarted
        // holds back read_committed readers of its output partitions for that long, not for a minute.
        ...(exactlyOnce ? { 'transactional.id': this.transactionalId, 'transaction.timeout.ms': 10_000 } : {}),
        // The producer's statistics too (broker-health.ts): node-rdkafka polls it on a timer, while the
        // consumer's arrive only with a consume call, which a full pipeline holds back.
        'statistics.interval.ms': 1000,
        ...common,
        'event_cb': true,
      },
      topic: { 'acks': -1, ...properties.topic },
    };
    this.producer = new Producer(this.producerConfig.global, this.producerConfig.topic);
    // Best effort, outside transactions and offsets: one report per shadow output, for its metrics.
    this.shadowProducer = config.shadowTopic === undefined ? undefined : new Producer({
      'linger.ms': 5, 'dr_cb': true, 'message.max.bytes': maxOutputBytes, ...common, 'client.id': 'xgb-stream-shadow',
    }, { ...properties.topic });
    const shadowWriter = this.shadowProducer
      ? new ShadowWriter(this.shadowProducer, logger, metrics, config.shadowTopic!) : undefined;

    this.health = new BrokerHealth(config.brokers, logger, metrics);
    this.scorer = new BatchScorer(serving, config, logger, metrics, maxOutputBytes, this.shadow);
    this.reloader = new ModelReloader(config, this.scorer, logger, metrics);
    // The owner first: the source and the delivery mode report to it, and it releases revoked
    // partitions through the delivery mode.
    this.owner = new PartitionOwner({ consumer: this.consumer, config, log: logger, metrics });
    const deliveryContext: DeliveryContext = {
      producer: this.producer, owner: this.owner, inputTopic: config.inputTopic,
      deadLetterTopic: config.deadLetterTopic, shadow: shadowWriter,
      outputTopics: [config.suspiciousTopic, config.regularTopic, config.deadLetterTopic], maxOutputBytes,
      log: logger, metrics,
      onProgress: () => this.notifyProgress(),
    };
    this.delivery = exactlyOnce
      ? new ExactlyOnceDelivery({
        ...deliveryContext, consumer: this.consumer, commitIntervalMs: config.commitIntervalMs,
        transactionalId: this.transactionalId, renewProducer: () => this.renewProducer(),
      })
      : new AtLeastOnceDelivery(deliveryContext);
    this.owner.serve(this.delivery);
    this.source = new RecordSource({
      consumer: this.consumer, config, log: logger, owner: this.owner,
      stopping: () => this.stopping,
      hasRoom: () => this.batchesScoring < this.scorer.capacity
        && this.batchesInFlight < this.scorer.capacity + MAX_BATCHES_SCORED_UNSENT
        && this.owner.ledger.inFlight < this.maxInFlight,
      nextProgress: () => this.nextProgress(),
    });
    void this.owner.fatal.raised.then((err) => this.fail(err));
  }

  /** Whether the processor holds partitions and reaches the cluster: what `/readyz` reports. */
  get ready(): boolean {
    return !this.stopping && this.owner.assignedPartitions.length > 0 && this.health.outage === undefined;
  }

  /** Why `/readyz` says not ready, when there is more to say than an empty assignment. */
  get notReadyReason(): string | undefined {
    if (this.stopping) return 'stopping';
    return this.health.outage;
  }

  /** Decision threshold of the serving model: the flag, else its `threshold` attribute, else 0.5. */
  get threshold(): number {
    return this.scorer.model.threshold;
  }

  /** The version of the serving model, written into every output it scores. */
  get modelVersion(): string {
    return this.scorer.model.version;
  }

  /** Reloads --model through the gate; see model-reload.ts. `trigger` names who asked, for the log. */
  reloadModel(trigger: string): Promise<ReloadOutcome> {
    return this.reloader.reload(trigger);
  }

  /** Input partitions currently assigned to this instance. */
  get assignedPartitions(): number[] {
    return this.owner.assignedPartitions;
  }

  /** Connects, checks (or creates) the topics, subscribes and starts consuming. */
  async start(): Promise<void> {
    await connect(this.producer, 'producer', this.config.connectTimeoutMs);
    try {
      await ensureTopics(this.producer, this.config, this.log);
      await this.scorer.prepareOutputs();
      if (this.exactlyOnce) await this.initTransactions(this.producer);
      if (this.shadowProducer) await connect(this.shadowProducer, 'shadow producer', this.config.connectTimeoutMs);
      await connect(this.consumer, 'consumer', this.config.connectTimeoutMs);
      if (this.delivery instanceof ExactlyOnceDelivery) await this.delivery.seal();
    } catch (err) {
      await disconnect(this.producer);
      if (this.shadowProducer) await disconnect(this.shadowProducer);
      throw err;
    }
    this.watchProducer(this.producer);
    if (this.shadowProducer) {
      this.shadowProducer.setPollInterval(20);
      // Its errors are the shadow's alone: logged, never fatal to the processor.
      this.shadowProducer.on('event.error', (err) => this.log.debug('shadow producer error', { error: err.message, code: err.code }));
    }
    this.consumer.on('event.error', (err) => this.onClientError('consumer', err));
    this.consumer.on('offset.commit', (err: LibrdKafkaError | null) => this.onCommitted(err));
    this.consumer.on('event.stats', (stats: { message: string }) => this.health.onStats(stats.message, 'consumer'));
    // librdkafka's own debug log, asked for with -X debug=<contexts>.
    const librdkafkaLog = (client: string) => (entry: { fac: string; message: string }): void => {
      this.log.debug(`librdkafka ${client}`, { facility: entry.fac, detail: entry.message });
    };
    this.consumer.on('event.log', librdkafkaLog('consumer'));
    this.consumer.subscribe([this.config.inputTopic]);
    this.log.info('processor started', {
      brokers: this.config.brokers, inputTopic: this.config.inputTopic, groupId: this.config.groupId,
      threshold: this.threshold, ...this.modelFacts(), batchSize: this.config.batchSize,
      guarantee: this.config.guarantee, instanceId: this.config.instanceId,
    });
    this.fetchLoopDone = this.source.run((batch) => this.dispatch(batch)).catch((err) => this.fail(err as Error));
    if (this.config.watchModel) this.reloader.watch();
  }

  /** The serving model's version, the xgboost release that saved it and the libxgboost that scores it. */
  private modelFacts(): Record<string, string> {
    const { savedByXgboost, libxgboost, objective } = this.scorer.model.classifier.modelInfo;
    return {
      modelVersion: this.modelVersion, modelSavedByXgboost: savedByXgboost, libxgboost, objective,
      ...(this.shadow ? { shadowModelVersion: this.shadow.model.version } : {}),
    };
  }

  /** Polls a main producer and routes its errors and librdkafka log lines. */
  private watchProducer(producer: Producer): void {
    producer.setPollInterval(5);
    producer.on('event.error', (err) => this.onClientError('producer', err));
    producer.on('event.stats', (stats: { message: string }) => this.health.onStats(stats.message, 'producer'));
    producer.on('event.log', (entry: { fac: string; message: string }) => {
      this.log.debug('librdkafka producer', { facility: entry.fac, detail: entry.message });
    });
  }

  /**
   * A runtime failure (exit 1), not a usage error: the brokers may be away for a while, or not support
   * transactions; the message says which it looked like.
   */
  private async initTransactions(producer: Producer): Promise<void> {
    try {
      await initTransactions(producer);
    } catch (err) {
      const e = err as LibrdKafkaError;
      const hint = e.code === CODES.ERRORS.ERR__TIMED_OUT || e.isRetriable
        ? 'the transaction coordinator did not answer in time; are the brokers up?'
        : 'the brokers need Kafka 2.5 or newer with a transaction state log (transaction.state.log.replication.factor '
          + 'no larger than the brokers), and ACLs that allow this transactional.id';
      throw new Error(`--guarantee exactly-once: the brokers at ${this.config.brokers} did not start transactions for `
        + `transactional.id '${this.transactionalId}' (${e.message}): ${hint}`);
    }
    this.log.info('transactions ready', { transactionalId: this.transactionalId });
  }

  /**
   * Under exactly-once, after a fence: the fenced producer is closed (bounded: a fenced handle may not
   * answer) and a new one with the same transactional.id takes its place, which bumps the epoch again.
   */
  private async renewProducer(): Promise<Producer> {
    const fenced = this.producer;
    void disconnect(fenced, RENEW_DISCONNECT_MS);
    const producer = new Producer(this.producerConfig.global, this.producerConfig.topic);
    await connect(producer, 'producer', this.config.connectTimeoutMs);
    try {
      await this.initTransactions(producer);
    } catch (err) {
      await disconnect(producer, RENEW_DISCONNECT_MS);
      throw err;
    }
    this.watchProducer(producer);
    this.producer = producer;
    return producer;
  }

  /** librdkafka's result of each offset commit: failures are counted, and logged at most once a minute. */
  private onCommitted(err: LibrdKafkaError | null): void {
    // Nothing to commit is not a failure.
    if (!err || err.code === CODES.ERRORS.ERR__NO_OFFSET) return;
    this.metrics.commitFailures.inc();
    this.commitFailuresUnreported++;
    const now = Date.now();
    if (now - this.commitFailureWarnedAt < COMMIT_WARN_INTERVAL_MS) return;
    this.commitFailureWarnedAt = now;
    this.log.warn('offset commit failed', { failures: this.commitFailuresUnreported, error: err.message, code: err.code });
    this.commitFailuresUnreported = 0;
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
    if (this.stopping) return;
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

  /** Scores a fetched batch and hands its outputs to the deliver stage, which keeps batch order. */
  private dispatch({ messages, tracked }: AdmittedBatch): void {
    this.metrics.recordsIn.inc({}, messages.length);
    this.metrics.batchSize.observe(messages.length);
    this.metrics.inFlight.set({}, this.owner.ledger.inFlight);
    const outputs = this.scorer.score(messages);
    this.batchesScoring++;
    this.batchesInFlight++;
    void outputs.catch(() => undefined).finally(() => {
      this.batchesScoring--;
      this.notifyProgress();
    });
    this.delivery.send(tracked, outputs)
      .catch((err) => this.fail(err as Error))
      .finally(() => {
        this.batchesInFlight--;
        this.notifyProgress();
      });
  }

  private notifyProgress(): void {
    this.progress.signal();
  }

  private nextProgress(): Promise<void> {
    return this.progress.next();
  }

  // ---- errors and shutdown ---------------------------------------------------------------------

  private onClientError(client: string, err: LibrdKafkaError): void {
    if (!err.isFatal) {
      this.health.onClientError(client, err);
      return;
    }
    this.health.onError(err);
    // Under exactly-once a fenced producer is replaced by the deliver stage, which sees the same error.
    if (client === 'producer' && this.exactlyOnce) {
      this.log.warn('producer error', { error: err.message, code: err.code, fatal: true });
      return;
    }
    this.fail(new Error(`fatal ${client} error: ${err.message}`));
  }

  private fail(err: Error): void {
    if (this.fatalError) return;
    this.fatalError = err;
    // Every stage sees it: waiting for acknowledgements is then pointless.
    this.owner.fatal.raise(err);
    this.log.error('stopping after a fatal error', { error: err });
    void this.stop();
  }

  private async shutdown(): Promise<number> {
    const deadline = Date.now() + this.config.shutdownTimeoutMs;
    this.stopping = true;
    this.log.info('stopping: finishing batches in flight');
    this.notifyProgress();
    // Both wait for a rewind or a release under way, which asks the brokers: bounded by the deadline.
    const untilDeadline = new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())).unref());
    await Promise.race([Promise.all([this.fetchLoopDone, this.owner.rebalancing]), untilDeadline]);
    const delivered = await this.delivery.finish(this.assignedPartitions, deadline);
    // Counted now: leaving the group below revokes the partitions, which drops their records.
    const pending = this.owner.ledger.pending();
    if (this.health.outage === undefined) {
      await disconnect(this.consumer, Math.max(SHUTDOWN_DISCONNECT_MIN_MS, deadline - Date.now()));
      await disconnect(this.producer, Math.max(SHUTDOWN_DISCONNECT_MIN_MS, deadline - Date.now()));
      if (this.shadowProducer) await disconnect(this.shadowProducer, SHUTDOWN_DISCONNECT_MIN_MS);
    } else {
      // Closing would wait for brokers that are not there (leaving the group, a last commit) on
      // threads the process must join before it exits: what was not committed is read again anyway.
      this.log.warn('not closing the Kafka clients: the brokers are unreachable', { reason: this.health.outage });
    }
    this.reloader.close();
    this.shadow?.model.retire();
    this.scorer.model.retire();
    const clean = delivered && !this.fatalError;
    if (!clean) {
      this.log.error('stopped with outputs not delivered; they will be processed again after a restart', {
        pending, error: this.fatalError,
      });
    }
    this.log.info('stopped');
    return clean ? EXIT.ok : EXIT.failure;
  }
}

type Connectable = KafkaConsumer | Producer;

function connect(client: Connectable, what: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    client.connect({ timeout: timeoutMs }, (err) => {
      if (err) reject(new Error(`could not connect the ${what}: ${err.message}`));
      else resolve();
    });
  });
}

/**
 * Disconnects a client, waiting at most `timeoutMs`: with the brokers away, leaving the group or
 * flushing can take as long as the session or message timeout.
 */
function disconnect(client: Connectable, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve) => {
    if (!client.isConnected()) {
      resolve();
      return;
    }
    setTimeout(resolve, timeoutMs).unref();
    // node-rdkafka's poll timer calls librdkafka on the main thread without the lock that guards
    // the handle, while disconnect destroys the handle on a pool thread: a tick landing then is a
    // use-after-free (a segfault). Stopping the timer first closes that window; flush still serves
    // the last delivery reports.
    if (client instanceof Producer) client.setPollInterval(0);
    client.disconnect(() => resolve());
  });
}
