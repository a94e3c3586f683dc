/**
 * The gate a reloaded model passes before it serves: it loads, it takes the same features, its
 * threshold is valid, it reproduces the trainer's test vectors beside it, and on the last live rows
 * (the canary) its alert rate stays within bounds of the serving model's.
 */
import { Classifier } from '../../classifier';
import { readTestVectors, testVectorsBeside } from '../../test-vectors';
import { ServingModel } from './serving-model';

/** The checks of the gate, in the order they run; the name a rejection reports. */
export type Gate = 'load' | 'features' | 'feature-names' | 'threshold' | 'test-vectors' | 'canary';

/** Largest difference from the trainer's probability that a test vector may show. */
const TEST_VECTOR_TOLERANCE = 1e-6;

/** A candidate that failed a check of the gate. */
export class GateRejection extends Error {
  override name = 'GateRejection';
  /** The canary, when the candidate got that far: it is reported whether it passed or not. */
  constructor(readonly gate: Gate, message: string, readonly canary?: CanaryReport) {
    super(message);
  }
}

/** Both models on the same live rows. */
export interface CanaryReport {
  readonly rows: number;
  /** Fraction of the rows at or above each model's own threshold. */
  readonly servingAlertRate: number;
  readonly candidateAlertRate: number;
  /** Largest |candidate − serving| score over the rows. */
  readonly maxScoreChange: number;
  /** The larger alert rate over the smaller (1 when both are 0, Infinity when only one is). */
  readonly alertRateRatio: number;
}

export interface GateOptions {
  readonly modelPath: string;
  readonly nthread: number;
  readonly configuredThreshold: number | undefined;
  /** Reject when the canary's alert-rate ratio is above this; undefined: report only. */
  readonly maxAlertRateRatio: number | undefined;
  /** The last live rows, row-major; empty when there is no canary (or no traffic yet). */
  readonly canaryRows: Float32Array;
}

/** What a candidate that passed brings: the model to serve, and its canary when there was one. */
export interface Passed {
  readonly model: ServingModel;
  readonly testVectors: number;
  readonly canary: CanaryReport | undefined;
}

/** Loads the file at `options.modelPath` and runs the gate against `serving`. The candidate is closed on rejection. */
export async function admitCandidate(serving: ServingModel, options: GateOptions): Promise<Passed> {
  let candidate: Classifier;
  try {
    candidate = Classifier.load(options.modelPath, { nthread: options.nthread });
  } catch (err) {
    throw new GateRejection('load', (err as Error).message);
  }
  try {
    return await check(serving, candidate, options);
  } catch (err) {
    candidate.close();
    throw err;
  }
}

async function check(serving: ServingModel, candidate: Classifier, options: GateOptions): Promise<Passed> {
  const current = serving.classifier;
  if (candidate.numFeatures !== current.numFeatures) {
    throw new GateRejection('features',
      `the candidate takes ${candidate.numFeatures} features, the serving model ${current.numFeatures}`);
  }
  const names = [candidate.featureNames, current.featureNames];
  if (names[0] !== undefined && names[1] !== undefined) {
    const differ = names[0].findIndex((n, i) => n !== names[1]![i]);
    if (differ >= 0) {
      throw new GateRejection('feature-names', `feature ${differ} is '${names[0][differ]}' in the candidate, `
        + `'${names[1][differ]}' in the serving model`);
    }
  }
  let model: ServingModel;
  try {
    model = new ServingModel(candidate, options.configuredThreshold, true);
  } catch (err) {
    throw new GateRejection('threshold', (err as Error).message);
  }
  const testVectors = await checkTestVectors(candidate, model.version, options.modelPath);
  const canary = await runCanary(serving, model, options.canaryRows);
  if (canary && options.maxAlertRateRatio !== undefined && canary.alertRateRatio > options.maxAlertRateRatio) {
    throw new GateRejection('canary', `on the last ${canary.rows} live rows the candidate alerts on `
      + `${percent(canary.candidateAlertRate)}, the serving model on ${percent(canary.servingAlertRate)}: `
      + `a ratio of ${canary.alertRateRatio.toFixed(2)}, above --max-alert-rate-ratio ${options.maxAlertRateRatio}`, canary);
  }
  return { model, testVectors, canary };
}

/** Every test vector beside the candidate reproduced within {@link TEST_VECTOR_TOLERANCE}; how many there were. */
async function checkTestVectors(candidate: Classifier, version: string, modelPath: string): Promise<number> {
  const dir = testVectorsBeside(modelPath);
  if (dir === undefined) return 0;
  let vectors;
  try {
    vectors = readTestVectors(dir);
  } catch (err) {
    throw new GateRejection('test-vectors', `unreadable test vectors: ${(err as Error).message}`);
  }
  if (vectors.modelVersion !== undefined && vectors.modelVersion !== version) {
    throw new GateRejection('test-vectors', `${dir} belongs to model version ${vectors.modelVersion}, `
      + `the candidate is ${version}`);
  }
  if (vectors.numFeatures !== candidate.numFeatures) {
    throw new GateRejection('test-vectors', `${dir} has rows of ${vectors.numFeatures} features, `
      + `the candidate takes ${candidate.numFeatures}`);
  }
  const scores = await candidate.predictBatchAsync(vectors.features, vectors.rows);
  for (let i = 0; i < vectors.rows; i++) {
    const difference = Math.abs(scores[i] - vectors.probabilities[i]);
    if (!(difference <= TEST_VECTOR_TOLERANCE)) {
      throw new GateRejection('test-vectors', `test vector ${i} of ${vectors.rows} in ${dir}: the candidate `
        + `scores ${scores[i]}, the trainer recorded ${vectors.probabilities[i]}`);
    }
  }
  return vectors.rows;
}

/** Both models score the same live rows; undefined when there are none. */
async function runCanary(serving: ServingModel, candidate: ServingModel, rows: Float32Array): Promise<CanaryReport | undefined> {
  const n = rows.length / candidate.classifier.numFeatures;
  if (n === 0) return undefined;
  const [before, after] = await Promise.all([
    serving.classifier.predictBatchAsync(rows, n), candidate.classifier.predictBatchAsync(rows, n),
  ]);
  let servingAlerts = 0;
  let candidateAlerts = 0;
  let maxScoreChange = 0;
  for (let i = 0; i < n; i++) {
    if (before[i] >= serving.threshold) servingAlerts++;
    if (after[i] >= candidate.threshold) candidateAlerts++;
    maxScoreChange = Math.max(maxScoreChange, Math.abs(after[i] - before[i]));
  }
  const high = Math.max(servingAlerts, candidateAlerts);
  const low = Math.min(servingAlerts, candidateAlerts);
  return {
    rows: n,
    servingAlertRate: servingAlerts / n,
    candidateAlertRate: candidateAlerts / n,
    maxScoreChange,
    alertRateRatio: high === 0 ? 1 : low === 0 ? Infinity : high / low,
  };
}

function percent(rate: number): string {
  return `${(rate * 100).toFixed(2)} %`;
}
