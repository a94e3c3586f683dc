/**
 * The trainer's outputs as test fixtures: the default model and its held-out test vectors, read
 * without Python.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './kafka';

export const MODEL_DIR = path.join(ROOT, 'models', 'default');
export const MODEL_PATH = path.join(MODEL_DIR, 'model.ubj');

/** Held-out rows and the probabilities Python's xgboost gave for them. */
export interface TestVectors {
  readonly rows: number;
  readonly numFeatures: number;
  readonly featureNames: readonly string[];
  /** Row-major rows x numFeatures, NaN where a value is missing. */
  readonly features: Float32Array;
  readonly probabilities: Float32Array;
  readonly threshold: number;
  readonly modelVersion: string;
}

function readF32(file: string): Float32Array {
  const buf = readFileSync(file);
  const out = new Float32Array(buf.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

/** Reads models/default/test-vectors. */
export function loadTestVectors(): TestVectors {
  const dir = path.join(MODEL_DIR, 'test-vectors');
  const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8'));
  return {
    rows: index.rows,
    numFeatures: index.numFeatures,
    featureNames: index.featureNames,
    features: readF32(path.join(dir, index.features)),
    probabilities: readF32(path.join(dir, index.probabilities)),
    threshold: index.threshold,
    modelVersion: index.modelVersion,
  };
}

/** Row `i` of the test vectors as a plain array. */
export function row(v: TestVectors, i: number): number[] {
  const r = i % v.rows;
  return Array.from(v.features.subarray(r * v.numFeatures, (r + 1) * v.numFeatures));
}
