/**
 * The trainer's test vectors (models/default/test-vectors) as typed arrays: the rows, the
 * probabilities Python's xgboost gave for them, and the SHAP contributions it computed.
 * XGB_STREAM_MODEL_DIR points the classifier tests at another model directory of the same layout.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { readF32 } from '../../lib/test-vectors';

export { readF32 };

export const MODEL_DIR = process.env.XGB_STREAM_MODEL_DIR ??
  path.resolve(__dirname, '..', '..', 'models', 'default');

export interface TestVectors {
  readonly rows: number;
  readonly numFeatures: number;
  readonly featureNames: readonly string[];
  /** Row-major rows × numFeatures, NaN where a value is missing. */
  readonly features: Float32Array;
  /** Python's predicted probability for each row. */
  readonly probabilities: Float32Array;
  /** How many rows have at least one missing value. */
  readonly missingRows: number;
  readonly threshold: number;
  readonly modelVersion: string;
  /** SHAP contributions of the first contributionRows rows: numFeatures + 1 values each, bias last. */
  readonly contributionRows: number;
  readonly contributionsExact: Float32Array;
  readonly contributionsApprox: Float32Array;
}

export function loadTestVectors(dir = path.join(MODEL_DIR, 'test-vectors')): TestVectors {
  const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8'));
  return {
    rows: index.rows,
    numFeatures: index.numFeatures,
    featureNames: index.featureNames,
    features: readF32(path.join(dir, index.features)),
    probabilities: readF32(path.join(dir, index.probabilities)),
    missingRows: index.missingRows,
    threshold: index.threshold,
    modelVersion: index.modelVersion,
    contributionRows: index.contributions.rows,
    contributionsExact: readF32(path.join(dir, index.contributions.file)),
    contributionsApprox: readF32(path.join(dir, index.contributions.approxFile)),
  };
}

/** Row `i` of the test vectors (a view, not a copy). */
export function rowOf(v: TestVectors, i: number): Float32Array {
  const r = i % v.rows;
  return v.features.subarray(r * v.numFeatures, (r + 1) * v.numFeatures);
}

/** `count` rows cycled from the test vectors, row-major, with the expected probability of each. */
export function cycledRows(v: TestVectors, count: number): { rows: Float32Array; expected: Float32Array } {
  const rows = new Float32Array(count * v.numFeatures);
  const expected = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    rows.set(rowOf(v, i), i * v.numFeatures);
    expected[i] = v.probabilities[i % v.rows];
  }
  return { rows, expected };
}

/** Largest absolute difference between two equally long arrays. */
export function worstDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (Number.isNaN(d)) return NaN;
    if (d > worst) worst = d;
  }
  return worst;
}
