/**
 * The trainer's outputs as fixtures of the Kafka tests: the default model and rows of its held-out
 * test vectors (read by ./test-vectors, without Python).
 */
import * as path from 'node:path';
import { Classifier } from '../../lib/classifier';
import type { ReplayRecord } from '../../lib/replay';
import { MODEL_DIR, loadTestVectors, rowOf, type TestVectors } from './test-vectors';

export { MODEL_DIR, loadTestVectors, type TestVectors };
export const MODEL_PATH = path.join(MODEL_DIR, 'model.ubj');

/**
 * A model loaded for a test's reference scores, with one thread: the tests score one row at a time,
 * and libxgboost's default OpenMP team of every core waits for a core that the other lane of the
 * suite keeps busy (here 75 µs a row alone, 450 beside one busy core). The scores are the same.
 */
export function loadReference(modelPath = MODEL_PATH): Classifier {
  return Classifier.load(modelPath, { nthread: 1 });
}

/** Row `i` of the test vectors (cycling), as a plain array for a PredictRequest. */
export function row(v: TestVectors, i: number): number[] {
  return Array.from(rowOf(v, i));
}
export const CANDIDATE_DIR = path.resolve(__dirname, '..', '..', 'models', 'candidate');

/** `count` valid requests for the replay tool, row `first + i` of the test vectors (cycling) for the i-th, named `<prefix>-<first + i>`. */
export function replayRecords(v: TestVectors, prefix: string, count: number, first = 0): ReplayRecord[] {
  return Array.from({ length: count }, (_, i) => ({ recordID: `${prefix}-${first + i}`, features: row(v, first + i) }));
}
