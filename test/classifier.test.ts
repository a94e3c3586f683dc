/**
 * The Classifier against the trainer's outputs: parity with Python's xgboost on the test vectors for
 * every model format, the error paths, concurrency on one booster, and the event loop staying free.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Classifier } from '../lib';
import {
  cycledRows, loadTestVectors, MODEL_DIR, readF32, rowOf, TestVectors, worstDifference,
} from './helpers/test-vectors';

const ROOT = path.resolve(__dirname, '..');
const TOLERANCE = 1e-6;

let v: TestVectors;
let scratch: string;

beforeAll(() => {
  v = loadTestVectors();
  scratch = mkdtempSync(path.join(tmpdir(), 'xgb-stream-classifier-'));
});

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

function report(what: string, worst: number): void {
  process.stdout.write(`  worst |difference| vs Python, ${what}: ${worst.toExponential(3)}\n`);
}

type Source = { name: string; load: () => Classifier };
const SOURCES: Source[] = [
  { name: 'JSON (model.json)', load: () => Classifier.load(path.join(MODEL_DIR, 'model.json')) },
  { name: 'UBJSON (model.ubj)', load: () => Classifier.load(path.join(MODEL_DIR, 'model.ubj')) },
  { name: 'UBJSON from a Buffer', load: () => Classifier.load(readFileSync(path.join(MODEL_DIR, 'model.ubj'))) },
  { name: 'JSON from a Buffer', load: () => Classifier.load(readFileSync(path.join(MODEL_DIR, 'model.json'))) },
];

describe.each(SOURCES)('parity with Python on the test vectors: $name', ({ name, load }) => {
  let classifier: Classifier;
  beforeAll(() => { classifier = load(); });
  afterAll(() => classifier.close());

  it('predict() scores each row as Python did, missing values included', () => {
    expect(v.missingRows).toBeGreaterThan(0);
    const scores = new Float64Array(v.rows);
    for (let i = 0; i < v.rows; i++) scores[i] = classifier.predict(rowOf(v, i));
    const worst = worstDifference(scores, v.probabilities);
    report(`${name}, predict`, worst);
    expect(worst).toBeLessThanOrEqual(TOLERANCE);
  });

  it('predict() accepts a plain array of numbers', () => {
    const scores = Array.from({ length: v.rows }, (_, i) => classifier.predict(Array.from(rowOf(v, i))));
    expect(worstDifference(scores, v.probabilities)).toBeLessThanOrEqual(TOLERANCE);
  });

  it('predictBatch() scores all rows in one call as Python did', () => {
    const scores = classifier.predictBatch(v.features, v.rows);
    expect(scores).toHaveLength(v.rows);
    const worst = worstDifference(scores, v.probabilities);
    report(`${name}, predictBatch`, worst);
    expect(worst).toBeLessThanOrEqual(TOLERANCE);
  });

  it('predictAsync() scores each row as Python did', async () => {
    const scores = await Promise.all(Array.from({ length: v.rows }, (_, i) => classifier.predictAsync(rowOf(v, i))));
    const worst = worstDifference(scores, v.probabilities);
    report(`${name}, predictAsync`, worst);
    expect(worst).toBeLessThanOrEqual(TOLERANCE);
  });

  it('predictBatchAsync() scores all rows as Python did', async () => {
    const scores = await classifier.predictBatchAsync(v.features, v.rows);
    expect(scores).toHaveLength(v.rows);
    const worst = worstDifference(scores, v.probabilities);
    report(`${name}, predictBatchAsync`, worst);
    expect(worst).toBeLessThanOrEqual(TOLERANCE);
  });

  it('reads the model metadata', () => {
    expect(classifier.numFeatures).toBe(v.numFeatures);
    expect(Number(classifier.attribute('threshold'))).toBe(v.threshold);
    expect(classifier.attribute('model_version')).toBe(v.modelVersion);
    expect(classifier.attribute('no_such_attribute')).toBeUndefined();
  });
});

describe('metadata', () => {
  let classifier: Classifier;
  beforeAll(() => { classifier = Classifier.load(path.join(MODEL_DIR, 'model.ubj')); });
  afterAll(() => classifier.close());

  it('exposes the feature names stored in the booster', () => {
    expect(classifier.featureNames).toEqual(v.featureNames);
    expect(Object.isFrozen(classifier.featureNames)).toBe(true);
  });

  it('has no feature names for a model trained without them', () => {
    const unnamed = Classifier.load(path.join(ROOT, 'models', 'matrix', '3.4.1', 'model.json'));
    expect(unnamed.featureNames).toBeUndefined();
    expect(unnamed.numFeatures).toBe(v.numFeatures);
    unnamed.close();
  });

  it('reports the pinned libxgboost, the release the trainer used, and the model\'s own facts', () => {
    expect(classifier.xgboostVersion).toBe('3.4.1');
    expect(classifier.attribute('xgboost_version')).toBe('3.4.1');
    expect(classifier.modelInfo).toEqual({
      format: 'ubj', savedByXgboost: '3.4.1', libxgboost: '3.4.1', objective: 'binary:logistic',
    });
  });
});

describe('explain', () => {
  let classifier: Classifier;
  beforeAll(() => { classifier = Classifier.load(path.join(MODEL_DIR, 'model.ubj')); });
  afterAll(() => classifier.close());

  function expectMatches(method: 'exact' | 'approx', expected: Float32Array): void {
    const width = v.numFeatures + 1;
    let worst = 0;
    for (let r = 0; r < v.contributionRows; r++) {
      const { bias, contributions } = classifier.explain(rowOf(v, r), { method });
      expect(contributions).toHaveLength(v.numFeatures);
      worst = Math.max(worst, Math.abs(bias - expected[r * width + v.numFeatures]));
      for (const { feature, value } of contributions) {
        const j = v.featureNames.indexOf(feature);
        expect(j).toBeGreaterThanOrEqual(0);
        worst = Math.max(worst, Math.abs(value - expected[r * width + j]));
      }
    }
    report(`explain ${method} (${v.contributionRows} rows)`, worst);
    expect(worst).toBeLessThanOrEqual(TOLERANCE);
  }

  it('gives the exact TreeSHAP contributions Python gave', () => {
    expectMatches('exact', v.contributionsExact);
  });

  it('gives the approximate contributions Python gave', () => {
    expectMatches('approx', v.contributionsApprox);
  });

  it('uses exact TreeSHAP by default', () => {
    expect(classifier.explain(rowOf(v, 0))).toEqual(classifier.explain(rowOf(v, 0), { method: 'exact' }));
  });

  it('sorts contributions by decreasing absolute value, and they add up to the score', () => {
    for (let r = 0; r < 20; r++) {
      const { bias, contributions } = classifier.explain(rowOf(v, r));
      const magnitudes = contributions.map((c) => Math.abs(c.value));
      expect(magnitudes).toEqual([...magnitudes].sort((a, b) => b - a));
      const margin = bias + contributions.reduce((s, c) => s + c.value, 0);
      expect(1 / (1 + Math.exp(-margin))).toBeCloseTo(v.probabilities[r], 4);
    }
  });

  it('keeps only the topK largest contributions', () => {
    const all = classifier.explain(rowOf(v, 3));
    const top = classifier.explain(rowOf(v, 3), { topK: 3 });
    expect(top.contributions).toEqual(all.contributions.slice(0, 3));
    expect(top.bias).toBe(all.bias);
  });

  it.each(['exact', 'approx'] as const)('explains a batch off the event loop exactly as row by row (%s)', async (method) => {
    const rows = v.features.slice(0, v.contributionRows * v.numFeatures);
    const batch = await classifier.explainBatchAsync(rows, v.contributionRows, { method, topK: 4 });
    expect(batch).toHaveLength(v.contributionRows);
    batch.forEach((e, r) => expect(e).toEqual(classifier.explain(rowOf(v, r), { method, topK: 4 })));
    await expect(classifier.explainBatchAsync(rows, 3)).rejects.toThrow(new RangeError(
      `rows has ${rows.length} values, expected nRows × numFeatures = 3 × ${v.numFeatures} = ${3 * v.numFeatures}`));
    await expect(classifier.explainBatchAsync(rows, v.contributionRows, { topK: 0 })).rejects.toThrow(
      new RangeError('topK must be a positive integer, got 0'));
  });
});

describe('argument checks', () => {
  let classifier: Classifier;
  beforeAll(() => { classifier = Classifier.load(path.join(MODEL_DIR, 'model.ubj')); });
  afterAll(() => classifier.close());

  const n = (): number => v.numFeatures;
  const good = (): number[] => Array.from(rowOf(v, 0));

  it('rejects a row of the wrong length with a RangeError naming both lengths', () => {
    const short = good().slice(1);
    const message = `row has ${n() - 1} values, expected ${n()} (the model's numFeatures)`;
    expect(() => classifier.predict(short)).toThrow(new RangeError(message));
    expect(() => classifier.predict([...good(), 1])).toThrow(RangeError);
    expect(() => classifier.predict([...good(), 1])).toThrow(`row has ${n() + 1} values, expected ${n()}`);
    expect(() => classifier.explain(short)).toThrow(new RangeError(message));
    return expect(classifier.predictAsync(short)).rejects.toThrow(new RangeError(message));
  });

  it('rejects a non-numeric value with a TypeError naming its index and feature', async () => {
    const row: unknown[] = good();
    row[3] = '0.5';
    const message = `row[3] (${v.featureNames[3]}) must be a number, got the string "0.5"`;
    expect(() => classifier.predict(row as number[])).toThrow(new TypeError(message));
    row[3] = null;
    expect(() => classifier.predict(row as number[])).toThrow(TypeError);
    await expect(classifier.predictAsync(row as number[])).rejects.toThrow(TypeError);
    expect(() => classifier.predict('0123456789' as unknown as number[])).toThrow(
      new TypeError('row must be an array of numbers, got the string "0123456789"'));
    expect(() => classifier.predict(undefined as unknown as number[])).toThrow(TypeError);
  });

  it('rejects ±Infinity with a RangeError, since NaN is what marks a missing value', async () => {
    for (const bad of [Infinity, -Infinity]) {
      const row = good();
      row[2] = bad;
      const message = `row[2] (${v.featureNames[2]}) is ${bad}; features must be finite, or NaN for a missing value`;
      expect(() => classifier.predict(row)).toThrow(new RangeError(message));
      expect(() => classifier.predict(Float32Array.from(row))).toThrow(new RangeError(message));
      expect(() => classifier.explain(row)).toThrow(new RangeError(message));
      await expect(classifier.predictAsync(row)).rejects.toThrow(new RangeError(message));
    }
  });

  it('rejects a finite value that overflows float32 with a RangeError', () => {
    const row = good();
    row[0] = 1e39;
    expect(() => classifier.predict(row)).toThrow(RangeError);
    expect(() => classifier.predict(row)).toThrow('row[0] (' + v.featureNames[0] + ') is 1e+39, beyond the float32 range,');
  });

  it('accepts NaN as a missing value', () => {
    const score = classifier.predict(new Array(n()).fill(NaN));
    expect(score).toBeGreaterThan(0);
    expect(score).toBeLessThan(1);
  });

  it('rejects a batch whose length is not nRows × numFeatures with a RangeError', async () => {
    const rows = v.features.subarray(0, 3 * n() - 1);
    const message = `rows has ${3 * n() - 1} values, expected nRows × numFeatures = 3 × ${n()} = ${3 * n()}`;
    expect(() => classifier.predictBatch(rows, 3)).toThrow(new RangeError(message));
    await expect(classifier.predictBatchAsync(rows, 3)).rejects.toThrow(new RangeError(message));
    expect(() => classifier.predictBatch(v.features.subarray(0, 2 * n()), 3)).toThrow(RangeError);
  });

  it('rejects ±Infinity in a batch with a RangeError naming the row and feature', async () => {
    const rows = v.features.slice(0, 4 * n());
    rows[2 * n() + 1] = -Infinity;
    const message = `rows[${2 * n() + 1}] (row 2, ${v.featureNames[1]}) is -Infinity; ` +
      'features must be finite, or NaN for a missing value';
    expect(() => classifier.predictBatch(rows, 4)).toThrow(new RangeError(message));
    await expect(classifier.predictBatchAsync(rows, 4)).rejects.toThrow(new RangeError(message));
  });

  it('rejects batch arguments of the wrong type or value', async () => {
    expect(() => classifier.predictBatch(Array.from(v.features) as unknown as Float32Array, v.rows))
      .toThrow(new TypeError('rows must be a Float32Array, got an array'));
    expect(() => classifier.predictBatch(new Float64Array(n()) as unknown as Float32Array, 1))
      .toThrow(new TypeError('rows must be a Float32Array, got a Float64Array'));
    expect(() => classifier.predictBatch(v.features, '3' as unknown as number)).toThrow(TypeError);
    expect(() => classifier.predictBatch(v.features, 1.5)).toThrow(
      new RangeError('nRows must be a non-negative integer, got 1.5'));
    await expect(classifier.predictBatchAsync(v.features, -1)).rejects.toThrow(RangeError);
  });

  it('returns an empty result for an empty batch without calling xgboost', async () => {
    expect(classifier.predictBatch(new Float32Array(0), 0)).toHaveLength(0);
    expect(await classifier.predictBatchAsync(new Float32Array(0), 0)).toHaveLength(0);
  });

  it('rejects bad explain options', () => {
    expect(() => classifier.explain(good(), { method: 'shap' as 'exact' })).toThrow(
      new RangeError("method must be 'exact' or 'approx', got 'shap'"));
    expect(() => classifier.explain(good(), { topK: 0 })).toThrow(
      new RangeError('topK must be a positive integer, got 0'));
    expect(() => classifier.explain(good(), { topK: '3' as unknown as number })).toThrow(TypeError);
  });

  it('rejects an attribute key that is not a string', () => {
    expect(() => classifier.attribute(3 as unknown as string)).toThrow(
      new TypeError('attribute key must be a string, got number 3'));
  });
});

describe('loading errors', () => {
  it('names the path and xgboost\'s reason when the model file is missing', () => {
    for (const file of ['missing.json', 'missing.ubj', 'missing.bin']) {
      const missing = path.join(scratch, file);
      expect(() => Classifier.load(missing)).toThrow(Error);
      expect(() => Classifier.load(missing)).toThrow(`Cannot load XGBoost model from ${missing}: `);
      expect(() => Classifier.load(missing)).toThrow(/No such file or directory/);
    }
  });

  it('names the path and xgboost\'s reason when the model is corrupt', () => {
    for (const ext of ['json', 'ubj']) {
      const corrupt = path.join(scratch, `truncated.${ext}`);
      writeFileSync(corrupt, readFileSync(path.join(MODEL_DIR, `model.${ext}`)).subarray(0, 2000));
      let error: unknown;
      try { Classifier.load(corrupt); } catch (err) { error = err; }
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(
        new RegExp(`^Cannot load XGBoost model from ${escape(corrupt)}: XGBoosterLoadModel failed: .+`));
    }
  });

  it('says when a buffer or file is no XGBoost model at all', () => {
    const bytes = Buffer.from('this is not an xgboost model');
    expect(() => Classifier.load(bytes)).toThrow(new Error('Cannot load XGBoost model from a 28-byte buffer: ' +
      'it is not an XGBoost model: neither JSON, UBJSON nor the legacy binary format'));
    const file = path.join(scratch, 'notes.txt');
    writeFileSync(file, bytes);
    expect(() => Classifier.load(file)).toThrow(new Error(`Cannot load XGBoost model from ${file}: ` +
      'it is not an XGBoost model: neither JSON, UBJSON nor the legacy binary format'));
    expect(() => Classifier.load(Buffer.alloc(0))).toThrow(new Error('Cannot load XGBoost model from an empty buffer'));
  });

  it('rejects a model argument that is neither a path nor a Buffer', () => {
    expect(() => Classifier.load(42 as unknown as string)).toThrow(
      new TypeError('model must be a file path or a Buffer, got number 42'));
    expect(() => Classifier.load('')).toThrow(TypeError);
  });

  it('rejects a bad nthread', () => {
    const model = path.join(MODEL_DIR, 'model.ubj');
    expect(() => Classifier.load(model, { nthread: -1 })).toThrow(
      new RangeError('nthread must be an integer from 0 to 1024, got -1'));
    expect(() => Classifier.load(model, { nthread: 1.5 })).toThrow(RangeError);
    expect(() => Classifier.load(model, { nthread: '2' as unknown as number })).toThrow(TypeError);
  });

  it('predicts the same with an explicit nthread', () => {
    const classifier = Classifier.load(path.join(MODEL_DIR, 'model.ubj'), { nthread: 1 });
    expect(worstDifference(classifier.predictBatch(v.features, v.rows), v.probabilities)).toBeLessThanOrEqual(TOLERANCE);
    classifier.close();
  });
});

describe('close', () => {
  it('makes every later call throw an Error naming the method', async () => {
    const classifier = Classifier.load(path.join(MODEL_DIR, 'model.ubj'));
    classifier.close();
    const closed = /^Classifier\.\w+: the classifier is closed \(model .*model\.ubj\)$/;
    expect(() => classifier.predict(rowOf(v, 0))).toThrow(new Error(
      `Classifier.predict: the classifier is closed (model ${path.join(MODEL_DIR, 'model.ubj')})`));
    expect(() => classifier.predictBatch(v.features, v.rows)).toThrow(closed);
    expect(() => classifier.explain(rowOf(v, 0))).toThrow(closed);
    await expect(classifier.explainBatchAsync(v.features, v.rows)).rejects.toThrow(closed);
    expect(() => classifier.attribute('threshold')).toThrow(closed);
    await expect(classifier.predictAsync(rowOf(v, 0))).rejects.toThrow(closed);
    await expect(classifier.predictBatchAsync(v.features, v.rows)).rejects.toThrow(closed);
    expect(() => classifier.close()).not.toThrow();
  });

  it('lets predictions already in flight finish with the right scores', async () => {
    const classifier = Classifier.load(path.join(MODEL_DIR, 'model.ubj'));
    const batch = classifier.predictBatchAsync(v.features, v.rows);
    const single = classifier.predictAsync(rowOf(v, 7));
    classifier.close();
    expect(worstDifference(await batch, v.probabilities)).toBeLessThanOrEqual(TOLERANCE);
    expect(Math.abs((await single) - v.probabilities[7])).toBeLessThanOrEqual(TOLERANCE);
  });
});

describe('concurrency', () => {
  let classifier: Classifier;
  beforeAll(() => { classifier = Classifier.load(path.join(MODEL_DIR, 'model.ubj')); });
  afterAll(() => classifier.close());

  it('resolves 10,000 concurrent predictAsync calls on one Classifier to the right scores', async () => {
    const count = 10_000;
    const { expected } = cycledRows(v, count);
    const scores = await Promise.all(Array.from({ length: count }, (_, i) => classifier.predictAsync(rowOf(v, i))));
    const worst = worstDifference(scores, expected);
    report('10,000 concurrent predictAsync', worst);
    expect(worst).toBeLessThanOrEqual(TOLERANCE);
  });

  it('keeps batches and single rows apart when they run side by side', async () => {
    const { rows, expected } = cycledRows(v, 3 * v.rows);
    const work: Array<Promise<number | Float32Array>> = [];
    for (let i = 0; i < 200; i++) {
      work.push(classifier.predictAsync(rowOf(v, i)));
      if (i % 20 === 0) work.push(classifier.predictBatchAsync(rows, 3 * v.rows));
    }
    const results = await Promise.all(work);
    let single = 0;
    for (const result of results) {
      if (typeof result === 'number') {
        expect(Math.abs(result - v.probabilities[single++])).toBeLessThanOrEqual(TOLERANCE);
      } else {
        expect(worstDifference(result, expected)).toBeLessThanOrEqual(TOLERANCE);
      }
    }
  });

  it('keeps the event loop turning during a large predictBatchAsync, and blocks it in predictBatch', async () => {
    // How long the loop waits is a figure for the bench (npm run bench:classifier); what is tested here
    // is the property: the loop turns while an async prediction runs, and not while a sync one does.
    const nRows = 200_000;
    const { rows, expected } = cycledRows(v, nRows);
    let turns = 0;
    let settled = false;
    const countTurns = (): void => {
      if (settled) return;
      turns++;
      setImmediate(countTurns);
    };
    setImmediate(countTurns);
    classifier.predictBatch(rows, nRows);
    expect(turns).toBe(0);
    const pending = classifier.predictBatchAsync(rows, nRows).finally(() => { settled = true; });
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    const scores = await pending;
    expect(turns).toBeGreaterThan(1);
    expect(worstDifference(scores, expected)).toBeLessThanOrEqual(TOLERANCE);
  });
});

describe('non-tree boosters', () => {
  it('serialises predictions of a gblinear model, which xgboost does not make thread-safe, and scores them right', async () => {
    // A small gblinear model trained here on the test vectors: the trainer makes only tree models.
    const dir = path.join(scratch, 'gblinear');
    execFileSync('bash', [path.join(ROOT, 'scripts', 'python.sh'), '-c', `
import sys, numpy as np, xgboost as xgb
x = np.fromfile(sys.argv[1], dtype='<f4').reshape(-1, ${v.numFeatures})
y = (np.nan_to_num(x[:, 0]) > 0).astype(np.float32)
b = xgb.train({'booster': 'gblinear', 'objective': 'binary:logistic'}, xgb.DMatrix(x, label=y), 20)
import os; os.makedirs(sys.argv[2], exist_ok=True)
b.save_model(os.path.join(sys.argv[2], 'model.json'))
b.predict(xgb.DMatrix(x)).astype('<f4').tofile(os.path.join(sys.argv[2], 'probabilities.f32'))
`, path.join(MODEL_DIR, 'test-vectors', 'features.f32'), dir], { stdio: 'inherit' });
    const classifier = Classifier.load(path.join(dir, 'model.json'));
    const expected = readF32(path.join(dir, 'probabilities.f32'));
    const scores = await Promise.all(Array.from({ length: v.rows }, (_, i) => classifier.predictAsync(rowOf(v, i))));
    expect(worstDifference(scores, expected)).toBeLessThanOrEqual(TOLERANCE);
    expect(worstDifference(await classifier.predictBatchAsync(v.features, v.rows), expected)).toBeLessThanOrEqual(TOLERANCE);
    classifier.close();
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
