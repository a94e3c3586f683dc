/**
 * The fraud classifier: an XGBoost binary model scored through the native binding to libxgboost.
 *
 * Every argument is checked here, before anything crosses into C++: the addon receives only
 * Float32Arrays of the right length holding finite values or NaN.
 */
import { readFileSync } from 'node:fs';
import { isFloat32Array, isUint8Array } from 'node:util/types';
import {
  compareVersions, LegacyBinaryModelError, ModelFormat, ModelLoadError, ModelVersionError,
  modelFormat, PROBABILITY_OBJECTIVES, savedByVersion, UnsupportedObjectiveError,
} from './model-file';
import { loadNative, NativeBooster } from './native';

export {
  LegacyBinaryModelError, ModelLoadError, ModelVersionError, UnsupportedObjectiveError,
} from './model-file';

/** Options of {@link Classifier.load}. */
export interface ClassifierOptions {
  /**
   * Threads libxgboost may use inside one prediction (its `nthread` parameter). 0 or absent keeps
   * xgboost's default, all cores. For single-record scoring 1 is usually fastest: the thread pool
   * already runs predictions side by side.
   */
  nthread?: number;
}

/** How {@link Classifier.explain} computes contributions. */
export type ExplainMethod = 'approx' | 'exact';

/** Options of {@link Classifier.explain}. */
export interface ExplainOptions {
  /** `'exact'` (default): TreeSHAP; `'approx'`: Saabas' path attribution, cheaper and less faithful. */
  method?: ExplainMethod;
  /** Keep only the `topK` largest contributions by absolute value; all features when absent. */
  topK?: number;
}

/** One feature's contribution to a prediction, in log-odds (margin) units. */
export interface FeatureContribution {
  /** The feature's name in the model, or `f<index>` when the model has no names. */
  readonly feature: string;
  /** Its contribution to the margin; positive pushes towards the positive (fraud) class. */
  readonly value: number;
}

/** Why the model scored a row as it did: bias + Σ contributions = the margin (logit) of the score. */
export interface Explanation {
  /** The expected margin over the training data: the part of the prediction no feature explains. */
  readonly bias: number;
  /** Per-feature contributions, largest absolute value first. */
  readonly contributions: FeatureContribution[];
}

/** What the Classifier learnt about a model when it loaded it. */
export interface ModelInfo {
  /** `json` or `ubj`: the only formats libxgboost 3.1 and later read. */
  readonly format: ModelFormat;
  /** The xgboost release that saved the model (its `version` field), e.g. `"3.4.1"`. */
  readonly savedByXgboost: string;
  /** The libxgboost release that scores it, never older than savedByXgboost. */
  readonly libxgboost: string;
  /** The learning objective, `binary:logistic` or `reg:logistic`. */
  readonly objective: string;
}

const EXPLAIN_METHODS: readonly ExplainMethod[] = ['approx', 'exact'];

/**
 * A loaded XGBoost binary classifier. Methods return the model's probability of the positive class.
 *
 * Predictions on one Classifier may run concurrently: libxgboost (≥ 1.4) predicts thread-safely with
 * tree boosters, and the native layer serialises predictions of other boosters itself.
 *
 * The async methods run on libuv's thread pool (UV_THREADPOOL_SIZE threads, 4 by default), which
 * also serves fs, dns.lookup, crypto and zlib: a burst of predictions delays those. Each pool thread
 * predicting with nthread N runs its own OpenMP team of N threads, so keep pool size × nthread near
 * the number of cores (nthread 1 for record-at-a-time scoring).
 */
export class Classifier {
  /** Number of features each row must have: the model's `num_feature`. */
  readonly numFeatures: number;
  /** The model's feature names, or undefined when it was trained without them. */
  readonly featureNames: readonly string[] | undefined;
  /** Version of the libxgboost that scores, e.g. `"3.4.1"`. */
  readonly xgboostVersion: string;
  /** The model's format, the release that saved it, and its objective. */
  readonly modelInfo: ModelInfo;

  private booster: NativeBooster | undefined;
  /** Where the model came from, for error messages. */
  private readonly source: string;
  /** Reused by the synchronous single-row path, which never lets it escape a call. */
  private readonly scratch: Float32Array;
  private readonly explainNames: readonly string[];

  private constructor(booster: NativeBooster, source: string, modelInfo: ModelInfo) {
    this.booster = booster;
    this.source = source;
    this.numFeatures = booster.numFeatures();
    const names = booster.featureNames();
    this.featureNames = names.length > 0 ? Object.freeze(names) : undefined;
    this.explainNames = this.featureNames ??
      Array.from({ length: this.numFeatures }, (_, i) => `f${i}`);
    this.xgboostVersion = modelInfo.libxgboost;
    this.modelInfo = Object.freeze(modelInfo);
    this.scratch = new Float32Array(this.numFeatures);
  }

  /**
   * Loads a model saved by xgboost as JSON or UBJSON. From a path, xgboost picks the format by the
   * extension (`.json`, `.ubj`, anything else sniffed); from a Buffer, it is sniffed.
   *
   * The model must come from the linked libxgboost's release or an older one, and its objective
   * must give the probability of the positive class: anything else would load and score wrongly.
   * @param pathOrBuffer A model file path, or the model file's bytes.
   * @param options See {@link ClassifierOptions}.
   * @throws TypeError for a wrong argument type; RangeError for a bad `nthread`;
   *   {@link ModelVersionError} for a model saved by a newer xgboost; {@link LegacyBinaryModelError}
   *   for the legacy binary format; {@link UnsupportedObjectiveError} for an objective other than
   *   binary:logistic and reg:logistic; Error naming the path and xgboost's reason when the model is
   *   missing, corrupt, or not a binary classifier.
   */
  static load(pathOrBuffer: string | Buffer, options: ClassifierOptions = {}): Classifier {
    let source: string;
    if (typeof pathOrBuffer === 'string') {
      if (pathOrBuffer.length === 0) throw new TypeError('model path must be a non-empty string');
      if (pathOrBuffer.includes('\0')) throw new TypeError('model path must not contain NUL characters');
      source = pathOrBuffer;
    } else if (isUint8Array(pathOrBuffer)) {
      if (pathOrBuffer.length === 0) throw new Error('Cannot load XGBoost model from an empty buffer');
      source = `a ${pathOrBuffer.length}-byte buffer`;
    } else {
      throw new TypeError(`model must be a file path or a Buffer, got ${describe(pathOrBuffer)}`);
    }
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`options must be an object, got ${describe(options)}`);
    }
    const nthread = options.nthread ?? 0;
    if (typeof nthread !== 'number') throw new TypeError(`nthread must be a number, got ${describe(nthread)}`);
    if (!Number.isInteger(nthread) || nthread < 0 || nthread > 1024) {
      throw new RangeError(`nthread must be an integer from 0 to 1024, got ${nthread}`);
    }

    const native = loadNative();
    const libxgboost = native.xgboostVersion();
    // An unreadable file is left to libxgboost, whose message names the system's reason.
    const bytes = typeof pathOrBuffer === 'string' ? readIfPossible(pathOrBuffer) : pathOrBuffer;
    const format = bytes ? modelFormat(bytes) : 'unknown';
    if (format === 'legacy-binary') throw new LegacyBinaryModelError(source, libxgboost);
    if (bytes && format === 'unknown') {
      throw new ModelLoadError(source, 'NOT_A_MODEL',
        'it is not an XGBoost model: neither JSON, UBJSON nor the legacy binary format');
    }
    let booster: NativeBooster;
    try {
      booster = new native.Booster(pathOrBuffer, nthread);
    } catch (err) {
      throw new Error(`Cannot load XGBoost model from ${source}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const savedByXgboost = bytes && (format === 'json' || format === 'ubj')
        ? versionField(bytes, format) : undefined;
      if (savedByXgboost === undefined) {
        throw new ModelLoadError(source, 'MODEL_WITHOUT_VERSION', 'it has no readable version field, ' +
          'so the xgboost release that saved it is unknown; save it again with xgboost 1.0 or later');
      }
      if (compareVersions(savedByXgboost, libxgboost) > 0) {
        throw new ModelVersionError(source, savedByXgboost, libxgboost);
      }
      const objective = objectiveOf(booster);
      if (!PROBABILITY_OBJECTIVES.includes(objective)) throw new UnsupportedObjectiveError(source, objective);
      checkBinaryModel(booster, source);
      return new Classifier(booster, source, { format, savedByXgboost, libxgboost, objective });
    } catch (err) {
      booster.close();
      throw err;
    }
  }

  /**
   * Reads a string attribute stored in the model (`XGBoosterGetAttr`), e.g. `threshold` or
   * `model_version` as the trainer writes them.
   * @returns The value, or undefined when the model has no such attribute.
   */
  attribute(key: string): string | undefined {
    const booster = this.open('attribute');
    if (typeof key !== 'string') throw new TypeError(`attribute key must be a string, got ${describe(key)}`);
    if (key.includes('\0')) throw new TypeError('attribute key must not contain NUL characters');
    return booster.attribute(key);
  }

  /**
   * Scores one record synchronously (one `nRows = 1` prediction).
   * @param row numFeatures numbers; NaN marks a missing value, as in xgboost.
   * @returns The probability of the positive class.
   * @throws RangeError for a wrong length or an infinite value; TypeError for a non-number; Error after close().
   */
  predict(row: ArrayLike<number>): number {
    const booster = this.open('predict');
    return booster.predictOne(this.checkRow(row, this.scratch));
  }

  /**
   * Scores a batch synchronously, in the split into libxgboost calls that costs least for its size
   * ({@link rowsPerCall}): one call for the batch, or one per row for the smallest batches.
   * @param rows Row-major nRows × numFeatures values; NaN marks a missing value.
   * @param nRows Number of rows in `rows`.
   * @returns One probability per row, in row order.
   * @throws RangeError when rows.length is not nRows × numFeatures or a value is infinite;
   *   TypeError for wrong argument types; Error after close().
   */
  predictBatch(rows: Float32Array, nRows: number): Float32Array {
    const booster = this.open('predictBatch');
    this.checkBatch(rows, nRows);
    if (nRows === 0) return new Float32Array(0);
    return booster.predict(rows, nRows, rowsPerCall(nRows));
  }

  /**
   * Scores one record on the libuv thread pool, leaving the event loop free.
   * @param row numFeatures numbers; copied before the call returns, so the caller may reuse it.
   * @returns A promise of the probability of the positive class; rejected with the same errors as
   *   {@link Classifier.predict}.
   */
  async predictAsync(row: ArrayLike<number>): Promise<number> {
    const booster = this.open('predictAsync');
    const input = this.checkRow(row, new Float32Array(this.numFeatures));
    const out = await booster.predictAsync(input, 1);
    return out[0];
  }

  /**
   * Scores a batch on the libuv thread pool, leaving the event loop free, split into libxgboost calls
   * as {@link Classifier.predictBatch} does: the whole batch is one task on the pool either way.
   * @param rows Row-major nRows × numFeatures values. Not copied: it is kept alive while the
   *   prediction runs, and must not be written to until the promise settles.
   * @param nRows Number of rows in `rows`.
   * @returns A promise of one probability per row; rejected with the same errors as
   *   {@link Classifier.predictBatch}.
   */
  async predictBatchAsync(rows: Float32Array, nRows: number): Promise<Float32Array> {
    const booster = this.open('predictBatchAsync');
    this.checkBatch(rows, nRows);
    if (nRows === 0) return new Float32Array(0);
    return booster.predictAsync(rows, nRows, rowsPerCall(nRows));
  }

  /**
   * Explains one record's score with per-feature contributions (`pred_contribs`).
   * @param row numFeatures numbers, checked as in {@link Classifier.predict}.
   * @param options `method`: `'exact'` TreeSHAP (default) or `'approx'`; `topK`: keep the k largest.
   * @returns The bias and the contributions sorted by decreasing absolute value, in margin units.
   * @throws As {@link Classifier.predict}; RangeError for an unknown method or a topK that is not a
   *   positive integer.
   */
  explain(row: ArrayLike<number>, options: ExplainOptions = {}): Explanation {
    const booster = this.open('explain');
    const { approximate, topK } = this.checkExplainOptions(options);
    const values = booster.contributions(this.checkRow(row, this.scratch), 1, approximate);
    return this.explanation(values, 0, topK);
  }

  /**
   * Explains a batch of records on the libuv thread pool, in one contributions call: what
   * {@link Classifier.explain} gives for each row, without blocking the event loop (exact TreeSHAP
   * costs milliseconds per row on a large model).
   * @param rows Row-major nRows × numFeatures values, checked as in {@link Classifier.predictBatch};
   *   kept alive and not to be written to until the promise settles.
   * @param nRows Number of rows in `rows`.
   * @param options As for {@link Classifier.explain}.
   * @returns A promise of one explanation per row, in row order.
   */
  async explainBatchAsync(rows: Float32Array, nRows: number, options: ExplainOptions = {}): Promise<Explanation[]> {
    const booster = this.open('explainBatchAsync');
    const { approximate, topK } = this.checkExplainOptions(options);
    this.checkBatch(rows, nRows);
    if (nRows === 0) return [];
    const values = await booster.contributionsAsync(rows, nRows, approximate);
    return Array.from({ length: nRows }, (_, r) => this.explanation(values, r * (this.numFeatures + 1), topK));
  }

  private checkExplainOptions(options: ExplainOptions): { approximate: boolean; topK: number } {
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`explain options must be an object, got ${describe(options)}`);
    }
    const method = options.method ?? 'exact';
    if (typeof method !== 'string') throw new TypeError(`method must be a string, got ${describe(method)}`);
    if (!EXPLAIN_METHODS.includes(method)) {
      throw new RangeError(`method must be 'exact' or 'approx', got '${method}'`);
    }
    const topK = options.topK ?? this.numFeatures;
    if (typeof topK !== 'number') throw new TypeError(`topK must be a number, got ${describe(topK)}`);
    if (!Number.isInteger(topK) || topK < 1) throw new RangeError(`topK must be a positive integer, got ${topK}`);
    return { approximate: method === 'approx', topK };
  }

  /** One row's explanation from contributions laid out as numFeatures values then the bias. */
  private explanation(values: Float32Array, offset: number, topK: number): Explanation {
    const n = this.numFeatures;
    const contributions: FeatureContribution[] = [];
    for (let i = 0; i < n; i++) contributions.push({ feature: this.explainNames[i], value: values[offset + i] });
    // Array.prototype.sort is stable: equal magnitudes keep the model's feature order.
    contributions.sort((a, b) => Math.abs(b.value) - Math.abs(a.value));
    return { bias: values[offset + n], contributions: contributions.slice(0, topK) };
  }

  /**
   * Releases the model. Predictions already running finish normally (the native handle is freed
   * when the last one completes); any later call throws. Calling close() again does nothing.
   */
  close(): void {
    this.booster?.close();
    this.booster = undefined;
  }

  private open(method: string): NativeBooster {
    if (!this.booster) throw new Error(`Classifier.${method}: the classifier is closed (model ${this.source})`);
    return this.booster;
  }

  /** Checks one record and writes it into `out` as float32. */
  private checkRow(row: ArrayLike<number>, out: Float32Array): Float32Array {
    if (row === null || typeof row !== 'object' || typeof row.length !== 'number') {
      throw new TypeError(`row must be an array of numbers, got ${describe(row)}`);
    }
    const n = this.numFeatures;
    if (row.length !== n) {
      throw new RangeError(`row has ${row.length} values, expected ${n} (the model's numFeatures)`);
    }
    if (isFloat32Array(row)) {
      for (let i = 0; i < n; i++) {
        const v = row[i];
        if (isInfinite(v)) throw this.infinite(v, i);
      }
      out.set(row);
      return out;
    }
    for (let i = 0; i < n; i++) {
      const v = row[i];
      if (typeof v !== 'number') {
        throw new TypeError(`row[${i}] (${this.explainNames[i]}) must be a number, got ${describe(v)}`);
      }
      out[i] = v;
      // Checked after the float32 conversion: a finite double beyond ±3.4e38 becomes ±Infinity.
      if (isInfinite(out[i])) throw this.infinite(v, i);
    }
    return out;
  }

  private infinite(value: number, index: number): RangeError {
    const what = Number.isFinite(value) ? `${value}, beyond the float32 range,` : String(value);
    return new RangeError(`row[${index}] (${this.explainNames[index]}) is ${what}; ` +
      'features must be finite, or NaN for a missing value');
  }

  private checkBatch(rows: Float32Array, nRows: number): void {
    if (!isFloat32Array(rows)) throw new TypeError(`rows must be a Float32Array, got ${describe(rows)}`);
    if (typeof nRows !== 'number') throw new TypeError(`nRows must be a number, got ${describe(nRows)}`);
    if (!Number.isInteger(nRows) || nRows < 0) {
      throw new RangeError(`nRows must be a non-negative integer, got ${nRows}`);
    }
    const n = this.numFeatures;
    if (rows.length !== nRows * n) {
      throw new RangeError(`rows has ${rows.length} values, expected nRows × numFeatures = ` +
        `${nRows} × ${n} = ${nRows * n}`);
    }
    for (let i = 0; i < rows.length; i++) {
      const v = rows[i];
      if (isInfinite(v)) {
        const r = Math.floor(i / n);
        throw new RangeError(`rows[${i}] (row ${r}, ${this.explainNames[i - r * n]}) is ${v}; ` +
          'features must be finite, or NaN for a missing value');
      }
    }
  }
}

/**
 * Batches of up to this many rows are scored one row per libxgboost call; larger ones in one call.
 * libxgboost 3.4 scores a single row on a fast path (no walk over every tree's depth), so for the
 * smallest batches n calls of one row cost less than one call of n rows; from a few rows on, the
 * fixed cost of a call is shared and one call wins. Measured with `npm run bench:classifier` and
 * native/bench/bench_predict.c (XGB_BENCH_SPLITS=1): see the README, "Small batches".
 */
export const ROW_BY_ROW_MAX_ROWS = 4;

/** Rows per libxgboost call for a batch of nRows: 1 (row by row) for small batches, else 0 (one call). */
export function rowsPerCall(nRows: number): number {
  return nRows <= ROW_BY_ROW_MAX_ROWS ? 1 : 0;
}

/**
 * True for ±Infinity: x - x is 0 for every finite x and NaN for ±Infinity and NaN; the second test
 * lets NaN (a missing value) through. Pure arithmetic on purpose: comparing with the global
 * `Infinity` is a global lookup per element, which is slow inside a vm context (jest, REPLs) and
 * made scanning a large batch take most of a second there.
 */
function isInfinite(x: number): boolean {
  // eslint-disable-next-line no-self-compare
  return x - x !== 0 && x === x;
}

function readIfPossible(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

/** The model's `version` field, or undefined where the document cannot be read for it. */
function versionField(bytes: Uint8Array, format: 'json' | 'ubj'): string | undefined {
  try {
    return savedByVersion(bytes, format);
  } catch {
    return undefined;
  }
}

/** The learning objective, from the configuration libxgboost read out of the model. */
function objectiveOf(booster: NativeBooster): string {
  const config = JSON.parse(booster.jsonConfig()) as { learner?: { objective?: { name?: unknown } } };
  const name = config.learner?.objective?.name;
  return typeof name === 'string' ? name : 'unknown';
}

/** Refuses models whose output is not one value per row, which Classifier cannot interpret. */
function checkBinaryModel(booster: NativeBooster, source: string): void {
  const n = booster.numFeatures();
  if (n < 1) throw new Error(`Cannot load XGBoost model from ${source}: the model has no features`);
  // Counted through the contributions (numFeatures + 1 per output): the value predictions insist on
  // one value per row, and would stop with a less telling message.
  const outputs = booster.contributions(new Float32Array(n).fill(NaN), 1, true).length / (n + 1);
  if (outputs !== 1) {
    throw new Error(`Cannot load XGBoost model from ${source}: it gives ${outputs} values per row; ` +
      'Classifier needs a binary classifier (one probability per row)');
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  if (typeof value === 'object') return 'an object';
  return typeof value === 'number' || typeof value === 'boolean' ? `${typeof value} ${String(value)}` : typeof value;
}
