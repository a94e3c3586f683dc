/**
 * The processor's metrics, on prom-client: its own counters, gauges and histograms (names, labels and
 * help texts are the README's contract) plus prom-client's default process metrics (CPU, resident
 * memory, heap, event-loop lag, GC) under their standard names, in one registry per processor.
 *
 * Hot-path updates go through series bound once (`child`), so a delivery report formats no labels.
 * Counters and gauges also keep their own values, so that tests and callers read them synchronously
 * (prom-client's own reads are asynchronous).
 */
import * as client from 'prom-client';

type Labels = Readonly<Record<string, string>>;

function labelKey(labels: Labels): string {
  return Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(',');
}

/** A monotonically increasing count. */
export class Counter {
  private readonly metric: client.Counter<string>;
  private readonly values = new Map<string, { value: number }>();

  constructor(registry: client.Registry, readonly name: string, help: string, labelNames: readonly string[] = []) {
    this.metric = new client.Counter({ name, help, labelNames: [...labelNames], registers: [registry] });
  }

  private cell(labels: Labels): { value: number } {
    const k = labelKey(labels);
    let c = this.values.get(k);
    if (!c) this.values.set(k, (c = { value: 0 }));
    return c;
  }

  inc(labels: Labels = {}, by = 1): void {
    this.cell(labels).value += by;
    this.metric.inc(labels, by);
  }

  /** One series bound once, for per-record updates: its inc() formats no labels. It starts at 0. */
  child(labels: Labels): { inc(by?: number): void } {
    const c = this.cell(labels);
    const series = this.metric.labels(labels);
    series.inc(0);
    return { inc: (by = 1) => { c.value += by; series.inc(by); } };
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels))?.value ?? 0;
  }
}

/** A value that goes up and down. */
export class Gauge {
  private readonly metric: client.Gauge<string>;
  private readonly values = new Map<string, number>();

  constructor(registry: client.Registry, readonly name: string, help: string, labelNames: readonly string[] = []) {
    this.metric = new client.Gauge({ name, help, labelNames: [...labelNames], registers: [registry] });
  }

  set(labels: Labels, value: number): void {
    this.values.set(labelKey(labels), value);
    this.metric.set(labels, value);
  }

  delete(labels: Labels): void {
    this.values.delete(labelKey(labels));
    this.metric.remove(labels);
  }

  get(labels: Labels = {}): number | undefined {
    return this.values.get(labelKey(labels));
  }
}

/** Observations counted into cumulative buckets. */
export class Histogram {
  private readonly metric: client.Histogram<string>;

  constructor(registry: client.Registry, readonly name: string, help: string, buckets: readonly number[]) {
    this.metric = new client.Histogram({ name, help, buckets: [...buckets], registers: [registry] });
  }

  observe(value: number): void {
    this.metric.observe(value);
  }

  /** The series bound once, for per-record observations. */
  child(): { observe(value: number): void } {
    return { observe: (value) => this.observe(value) };
  }
}

/** The processor's metrics, by name. */
export class ProcessorMetrics {
  /** Every metric of this processor, prom-client's default ones included. */
  readonly registry = new client.Registry();
  readonly recordsIn = new Counter(this.registry, 'xgb_stream_records_in_total', 'Records consumed from the input topic.');
  readonly recordsOut = new Counter(this.registry, 'xgb_stream_records_out_total',
    'Records delivered to an output topic (acknowledged by the broker), by topic.', ['topic']);
  readonly deadLetters = new Counter(this.registry, 'xgb_stream_dead_letters_total',
    'Records sent to the dead-letter topic, by reason.', ['reason']);
  readonly deliveryFailures = new Counter(this.registry, 'xgb_stream_delivery_failures_total',
    'Main outputs (scored records and dead letters) that librdkafka could not deliver.');
  readonly shadowDeliveryFailures = new Counter(this.registry, 'xgb_stream_shadow_delivery_failures_total',
    'Shadow outputs that were not delivered: best effort, they never hold back the main stream.');
  readonly commitFailures = new Counter(this.registry, 'xgb_stream_commit_failures_total',
    'Offset commits (or transactions) that failed.');
  readonly recordsSkipped = new Counter(this.registry, 'xgb_stream_records_skipped_total',
    'Records with no output at all: not even a cut dead-letter copy fits the size limit, by reason.', ['reason']);
  readonly batchSize = new Histogram(this.registry, 'xgb_stream_batch_size', 'Records per scored batch.',
    [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000]);
  readonly inferenceSeconds = new Histogram(this.registry, 'xgb_stream_inference_seconds', 'Time of one batch prediction.',
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]);
  readonly endToEndSeconds = new Histogram(this.registry, 'xgb_stream_end_to_end_latency_seconds',
    "From a record's timestamp to the delivery report of its output.",
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);
  readonly consumerLag = new Gauge(this.registry, 'xgb_stream_consumer_lag',
    'High watermark minus consumed position, by partition.', ['partition']);
  readonly assignedPartitions = new Gauge(this.registry, 'xgb_stream_assigned_partitions',
    'Input partitions assigned to this instance.');
  readonly modelInfo = new Gauge(this.registry, 'xgb_stream_model_info',
    'The loaded model (value 1): its version, the xgboost release that saved it, the libxgboost that scores it.',
    ['version', 'saved_by_xgboost', 'libxgboost']);
  readonly inFlight = new Gauge(this.registry, 'xgb_stream_records_in_flight', 'Records consumed but not yet delivered.');
  readonly brokersUp = new Gauge(this.registry, 'xgb_stream_brokers_up',
    'Whether the processor can reach the cluster (1) or not (0).');
  readonly ready = new Gauge(this.registry, 'xgb_stream_ready',
    'Whether the processor is ready (1: partitions assigned, the cluster reachable) or not (0), as /readyz answers.');
  readonly modelReloads = new Counter(this.registry, 'xgb_stream_model_reloads_total',
    'Model reloads (SIGHUP, POST /-/reload, --watch-model), by result: success or rejected.', ['result']);
  readonly modelReloadRejections = new Counter(this.registry, 'xgb_stream_model_reload_rejections_total',
    'Reloaded models refused, by the check of the gate they failed.', ['gate']);
  readonly canaryRows = new Gauge(this.registry, 'xgb_stream_canary_rows',
    'Live rows of the last canary: a reloaded model and the serving one both scored them.');
  readonly canaryAlertRate = new Gauge(this.registry, 'xgb_stream_canary_alert_rate',
    'Fraction of the last canary\'s rows each model alerts on, by model: serving or candidate.', ['model']);
  readonly canaryMaxScoreChange = new Gauge(this.registry, 'xgb_stream_canary_max_score_change',
    'Largest score difference between the candidate and the serving model in the last canary.');
  readonly shadowActive = new Gauge(this.registry, 'xgb_stream_shadow_active',
    'Whether a shadow model scores every batch (1) or not (0).');
  readonly shadowRecords = new Counter(this.registry, 'xgb_stream_shadow_records_total',
    'Records scored by both the serving and the shadow model.');
  readonly shadowAgreements = new Counter(this.registry, 'xgb_stream_shadow_agreements_total',
    'Records on which the shadow model makes the same alert decision as the serving one.');
  readonly shadowAgreementRatio = new Gauge(this.registry, 'xgb_stream_shadow_agreement_ratio',
    'Agreements over records scored by both models, since start.');
  readonly shadowAlerts = new Counter(this.registry, 'xgb_stream_shadow_alerts_total',
    'Alerts (score at or above the threshold) among records scored by both models, by model: serving or shadow.',
    ['model']);
  readonly shadowScoreDifference = new Histogram(this.registry, 'xgb_stream_shadow_score_difference',
    'Absolute difference between the shadow and the serving score of a record.',
    [0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1]);

  constructor() {
    // Series without labels exist from the start, at 0: an alert on "failures > 0" or a rate() needs
    // the zero sample, not an absent series.
    this.recordsIn.inc({}, 0);
    this.deliveryFailures.inc({}, 0);
    this.shadowDeliveryFailures.inc({}, 0);
    this.commitFailures.inc({}, 0);
    this.assignedPartitions.set({}, 0);
    this.inFlight.set({}, 0);
    this.ready.set({}, 0);
    for (const result of ['success', 'rejected']) this.modelReloads.inc({ result }, 0);
    this.shadowActive.set({}, 0);
    client.collectDefaultMetrics({ register: this.registry });
  }

  /** The text exposition of every metric (Prometheus text format 0.0.4). */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
