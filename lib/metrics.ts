/**
 * A small Prometheus registry: counters, gauges and histograms with labels, rendered in the text
 * exposition format (version 0.0.4). Enough for the processor's own metrics without a dependency.
 */

type Labels = Readonly<Record<string, string>>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',');
}

function line(name: string, key: string, value: number): string {
  const v = Number.isFinite(value) ? String(value) : value > 0 ? '+Inf' : value < 0 ? '-Inf' : 'NaN';
  return key ? `${name}{${key}} ${v}` : `${name} ${v}`;
}

interface Metric {
  readonly name: string;
  readonly help: string;
  render(): string[];
}

/** A monotonically increasing count. */
export class Counter implements Metric {
  private readonly values = new Map<string, { value: number }>();
  constructor(readonly name: string, readonly help: string) {}
  private cell(labels: Labels): { value: number } {
    const k = labelKey(labels);
    let c = this.values.get(k);
    if (!c) this.values.set(k, (c = { value: 0 }));
    return c;
  }
  inc(labels: Labels = {}, by = 1): void {
    this.cell(labels).value += by;
  }
  /** One series bound once, for per-record updates: its inc() formats no labels. It starts at 0. */
  child(labels: Labels): { inc(by?: number): void } {
    const c = this.cell(labels);
    return { inc: (by = 1) => { c.value += by; } };
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels))?.value ?? 0;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, c] of this.values) out.push(line(this.name, k, c.value));
    return out;
  }
}

/** A value that goes up and down. */
export class Gauge implements Metric {
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  set(labels: Labels, value: number): void {
    this.values.set(labelKey(labels), value);
  }
  delete(labels: Labels): void {
    this.values.delete(labelKey(labels));
  }
  get(labels: Labels = {}): number | undefined {
    return this.values.get(labelKey(labels));
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const [k, v] of this.values) out.push(line(this.name, k, v));
    return out;
  }
}

interface HistogramSeries {
  readonly counts: number[];
  sum: number;
  count: number;
}

/** Observations counted into cumulative buckets. */
export class Histogram implements Metric {
  private readonly series = new Map<string, HistogramSeries>();
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {}
  private seriesOf(labels: Labels): HistogramSeries {
    const k = labelKey(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { counts: new Array(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    return s;
  }
  observe(value: number, labels: Labels = {}): void {
    this.record(this.seriesOf(labels), value);
  }
  /** One series bound once, for per-record observations: its observe() formats no labels. */
  child(labels: Labels = {}): { observe(value: number): void } {
    const s = this.seriesOf(labels);
    return { observe: (value) => this.record(s, value) };
  }
  private record(s: HistogramSeries, value: number): void {
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }
  count(labels: Labels = {}): number {
    return this.series.get(labelKey(labels))?.count ?? 0;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.series) {
      const sep = k ? ',' : '';
      this.buckets.forEach((b, i) => out.push(line(`${this.name}_bucket`, `${k}${sep}le="${b}"`, s.counts[i])));
      out.push(line(`${this.name}_bucket`, `${k}${sep}le="+Inf"`, s.count));
      out.push(line(`${this.name}_sum`, k, s.sum));
      out.push(line(`${this.name}_count`, k, s.count));
    }
    return out;
  }
}

/** The processor's metrics, by name. */
export class ProcessorMetrics {
  readonly recordsIn = new Counter('xgb_stream_records_in_total', 'Records consumed from the input topic.');
  readonly recordsOut = new Counter('xgb_stream_records_out_total',
    'Records delivered to an output topic (acknowledged by the broker), by topic.');
  readonly deadLetters = new Counter('xgb_stream_dead_letters_total', 'Records sent to the dead-letter topic, by reason.');
  readonly deliveryFailures = new Counter('xgb_stream_delivery_failures_total', 'Outputs whose delivery failed.');
  readonly recordsSkipped = new Counter('xgb_stream_records_skipped_total',
    'Records with no output at all: not even a cut dead-letter copy fits the size limit, by reason.');
  readonly batchSize = new Histogram('xgb_stream_batch_size', 'Records per scored batch.',
    [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000]);
  readonly inferenceSeconds = new Histogram('xgb_stream_inference_seconds', 'Time of one batch prediction.',
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]);
  readonly endToEndSeconds = new Histogram('xgb_stream_end_to_end_latency_seconds',
    "From a record's timestamp to the delivery report of its output.",
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);
  readonly consumerLag = new Gauge('xgb_stream_consumer_lag', 'High watermark minus consumed position, by partition.');
  readonly assignedPartitions = new Gauge('xgb_stream_assigned_partitions', 'Input partitions assigned to this instance.');
  readonly modelInfo = new Gauge('xgb_stream_model_info', 'The loaded model (value 1): its version, the xgboost release that saved it, the libxgboost that scores it.');
  readonly inFlight = new Gauge('xgb_stream_records_in_flight', 'Records consumed but not yet delivered.');
  readonly brokersUp = new Gauge('xgb_stream_brokers_up', 'Whether the processor can reach the cluster (1) or not (0).');

  private readonly all: Metric[] = [this.recordsIn, this.recordsOut, this.deadLetters, this.deliveryFailures,
    this.recordsSkipped,
    this.batchSize, this.inferenceSeconds, this.endToEndSeconds, this.consumerLag, this.assignedPartitions,
    this.modelInfo, this.inFlight, this.brokersUp];

  constructor() {
    // Series without labels exist from the start, at 0: an alert on "failures > 0" or a rate() needs
    // the zero sample, not an absent series.
    this.recordsIn.inc({}, 0);
    this.deliveryFailures.inc({}, 0);
    this.assignedPartitions.set({}, 0);
    this.inFlight.set({}, 0);
  }

  /** The text exposition of every metric. */
  render(): string {
    return this.all.flatMap((m) => m.render()).join('\n') + '\n';
  }
}
