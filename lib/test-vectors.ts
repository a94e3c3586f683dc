/**
 * The trainer's test vectors: a `test-vectors/` directory beside a model, holding held-out rows and
 * the probabilities Python's xgboost gave for them. A model reloaded into a running processor must
 * reproduce them before it serves.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

/** Rows and Python's probabilities for them, as the trainer's index.json describes them. */
export interface ModelTestVectors {
  readonly rows: number;
  readonly numFeatures: number;
  /** Row-major rows × numFeatures, NaN where a value is missing. */
  readonly features: Float32Array;
  readonly probabilities: Float32Array;
  /** The model version the vectors were made with. */
  readonly modelVersion: string | undefined;
}

/** Reads a little-endian float32 file into an aligned Float32Array of its own. */
export function readF32(file: string): Float32Array {
  const bytes = readFileSync(file);
  if (bytes.length % 4 !== 0) throw new Error(`${file}: ${bytes.length} bytes is not a whole number of float32 values`);
  const out = new Float32Array(bytes.length / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

/** The test-vectors directory beside a model file, when there is one. */
export function testVectorsBeside(modelPath: string): string | undefined {
  const dir = path.join(path.dirname(modelPath), 'test-vectors');
  return existsSync(path.join(dir, 'index.json')) ? dir : undefined;
}

/** Reads the rows and probabilities of a test-vectors directory; throws naming what is malformed. */
export function readTestVectors(dir: string): ModelTestVectors {
  const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as {
    rows?: unknown; numFeatures?: unknown; features?: unknown; probabilities?: unknown; modelVersion?: unknown;
  };
  const { rows, numFeatures } = index;
  if (typeof rows !== 'number' || typeof numFeatures !== 'number' || typeof index.features !== 'string'
    || typeof index.probabilities !== 'string') {
    throw new Error(`${dir}/index.json lacks rows, numFeatures, features or probabilities`);
  }
  const features = readF32(path.join(dir, index.features));
  const probabilities = readF32(path.join(dir, index.probabilities));
  if (features.length !== rows * numFeatures || probabilities.length !== rows) {
    throw new Error(`${dir}: ${features.length} feature values and ${probabilities.length} probabilities `
      + `for ${rows} rows of ${numFeatures} features`);
  }
  return {
    rows, numFeatures, features, probabilities,
    modelVersion: typeof index.modelVersion === 'string' ? index.modelVersion : undefined,
  };
}
