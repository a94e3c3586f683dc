/**
 * The trainer's outputs as fixtures of the Kafka tests: the default model and rows of its held-out
 * test vectors (read by ./test-vectors, without Python).
 */
import * as path from 'node:path';
import { MODEL_DIR, loadTestVectors, rowOf, type TestVectors } from './test-vectors';

export { MODEL_DIR, loadTestVectors, type TestVectors };
export const MODEL_PATH = path.join(MODEL_DIR, 'model.ubj');

/** Row `i` of the test vectors (cycling), as a plain array for a PredictRequest. */
export function row(v: TestVectors, i: number): number[] {
  return Array.from(rowOf(v, i));
}
export const CANDIDATE_DIR = path.resolve(__dirname, '..', '..', 'models', 'candidate');
