/**
 * Shadow scoring: a second model scores every batch beside the serving one. It never changes routing;
 * it shows how often the two agree on the alert decision, how many alerts each would raise, and how
 * far their scores are apart, and optionally writes its own ScoredRecords to a topic of their own.
 */
import type { Logger } from '../../log';
import type { ProcessorMetrics } from '../../metrics';
import type { ServingModel } from './serving-model';

type Inc = { inc(by?: number): void };

export class ShadowScorer {
  private readonly records: Inc;
  private readonly agreements: Inc;
  private readonly servingAlerts: Inc;
  private readonly shadowAlerts: Inc;
  private readonly difference: { observe(value: number): void };
  /** Off once the shadow serves (promoted by a reload): comparing a model with itself says nothing. */
  active = true;

  constructor(readonly model: ServingModel, private readonly metrics: ProcessorMetrics, private readonly log: Logger) {
    this.records = metrics.shadowRecords.child({});
    this.agreements = metrics.shadowAgreements.child({});
    this.servingAlerts = metrics.shadowAlerts.child({ model: 'serving' });
    this.shadowAlerts = metrics.shadowAlerts.child({ model: 'shadow' });
    this.difference = metrics.shadowScoreDifference.child();
    metrics.shadowActive.set({}, 1);
  }

  /** The shadow's scores of a batch's rows; undefined (logged) when its prediction fails. */
  async predict(rows: Float32Array, n: number): Promise<Float32Array | undefined> {
    try {
      return await this.model.classifier.predictBatchAsync(rows, n);
    } catch (err) {
      this.log.warn('shadow prediction failed; the batch is served without it', { rows: n, error: err });
      return undefined;
    }
  }

  /** Counts one row scored by both models. */
  compare(servingScore: number, servingThreshold: number, shadowScore: number): void {
    const servingAlert = servingScore >= servingThreshold;
    const shadowAlert = shadowScore >= this.model.threshold;
    this.records.inc();
    if (servingAlert === shadowAlert) this.agreements.inc();
    if (servingAlert) this.servingAlerts.inc();
    if (shadowAlert) this.shadowAlerts.inc();
    this.difference.observe(Math.abs(shadowScore - servingScore));
  }

  /** After each batch: the agreement rate so far. */
  endBatch(): void {
    const compared = this.metrics.shadowRecords.get();
    if (compared > 0) this.metrics.shadowAgreementRatio.set({}, this.metrics.shadowAgreements.get() / compared);
  }

  /** The shadow's version now serves: stop comparing. */
  promoted(): void {
    this.active = false;
    this.metrics.shadowActive.set({}, 0);
    this.log.info('the shadow model now serves: shadow scoring stops', { modelVersion: this.model.version });
  }
}
