/**
 * The bench's passthrough mode (XGB_STREAM_PASSTHROUGH=1): every valid record scores 0 without
 * calling libxgboost, so that a run measures what Kafka through node-rdkafka costs on its own (the
 * same consume, validate, encode, produce, delivery-report and commit path). Never for production: every
 * record would go to the regular topic.
 */
import type { Scorer } from './score';

export class PassthroughScorer implements Scorer {
  constructor(private readonly model: Scorer) {}
  get numFeatures(): number { return this.model.numFeatures; }
  get modelInfo(): Scorer['modelInfo'] { return this.model.modelInfo; }
  attribute(key: string): string | undefined { return this.model.attribute(key); }
  /** The wrapped model's names, so that a run with --input-format json decodes as the real one does. */
  get featureNames(): readonly string[] | undefined { return (this.model as { featureNames?: readonly string[] }).featureNames; }
  predict(): number { return 0; }
  predictBatchAsync(_rows: Float32Array, nRows: number): Promise<Float32Array> {
    return Promise.resolve(new Float32Array(nRows));
  }
  explainBatchAsync: Scorer['explainBatchAsync'] = (rows, nRows, options) =>
    this.model.explainBatchAsync(rows, nRows, options);
}
