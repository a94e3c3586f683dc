/**
 * Loads the native addon (build/Release/xgb_stream_native.node) and describes its surface. Only
 * classifier.ts and exit.ts talk to it: the addon trusts its arguments, which they have checked.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

/** One libxgboost booster handle, as the addon exposes it (native/addon.cc). */
export interface NativeBooster {
  numFeatures(): number;
  /** The booster's feature names; empty when the model has none. */
  featureNames(): string[];
  attribute(key: string): string | undefined;
  /** The learner's configuration (XGBoosterSaveJsonConfig), as JSON text. */
  jsonConfig(): string;
  /** One row of numFeatures() values; returns its prediction. */
  predictOne(row: Float32Array): number;
  /**
   * nRows row-major rows; returns one value per row, from in-place predictions of `rowsPerCall` rows
   * each (0 or absent: one call for all rows). Throws for a model that gives more than one value per row.
   */
  predict(rows: Float32Array, nRows: number, rowsPerCall?: number): Float32Array;
  /** As predict(), on the libuv thread pool; `rows` is held until the promise settles. */
  predictAsync(rows: Float32Array, nRows: number, rowsPerCall?: number): Promise<Float32Array>;
  /** SHAP contributions: nRows x (numFeatures() + 1), the bias last. */
  contributions(rows: Float32Array, nRows: number, approximate: boolean): Float32Array;
  /** The same on the libuv thread pool; `rows` is kept alive until the promise settles. */
  contributionsAsync(rows: Float32Array, nRows: number, approximate: boolean): Promise<Float32Array>;
  close(): void;
}

/** The addon's exports. */
export interface NativeBinding {
  /** Loads a model from a file path or from the model's bytes; nthread 0 keeps xgboost's default. */
  Booster: new (model: string | Uint8Array, nthread: number) => NativeBooster;
  /** Version of the libxgboost linked at run time, "major.minor.patch". */
  xgboostVersion(): string;
  /**
   * Ends the process with `status` at the latest `graceMs` from now, writing `line` to stderr first,
   * without the exit handlers (native/exit_deadline.cc). Only lib/exit.ts calls it.
   */
  armExitDeadline(status: number, graceMs: number, line: string): void;
}

const ADDON = path.join('build', 'Release', 'xgb_stream_native.node');

/** The package root: the nearest directory above this file whose package.json is xgb-stream's, so
 * that the addon is found from lib/ (ts-jest, scripts), dist/ (the published build) alike. */
function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if (JSON.parse(readFileSync(manifest, 'utf8')).name === 'xgb-stream') return dir;
      } catch {
        // an unreadable package.json is not ours; keep walking up
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return path.resolve(__dirname, '..');
    dir = parent;
  }
}

let binding: NativeBinding | undefined;

/**
 * Loads the addon once, on first use, so that importing the package does not fail where the addon
 * is not built until a model is actually loaded.
 * @throws Error saying how to build the addon when it is missing or cannot be loaded.
 */
export function loadNative(): NativeBinding {
  if (binding) return binding;
  const file = path.join(packageRoot(), ADDON);
  if (!existsSync(file)) {
    throw new Error(`xgb-stream native addon not built: ${file} is missing. ` +
      "Run 'npm run build:native' (it fetches the pinned libxgboost first).");
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require(file) as NativeBinding;
  } catch (err) {
    throw new Error(`xgb-stream native addon ${file} failed to load: ${(err as Error).message}. ` +
      "Rebuild it with 'npm run build:native', which fetches the pinned libxgboost into .libxgboost/.",
    { cause: err });
  }
  return binding;
}

/** What the native data path is given; lib/processor/native-path.ts checks every value first. */
export interface NativeDataPathOptions {
  brokers: string;
  groupId: string;
  /** '' for dynamic group membership. */
  instanceId: string;
  inputTopic: string;
  suspiciousTopic: string;
  regularTopic: string;
  deadLetterTopic: string;
  modelPath: string;
  nthread: number;
  threshold: number;
  modelVersion: string;
  batchSize: number;
  maxOutputBytes: number;
  /** At start, the longest wait for the cluster's metadata. */
  connectTimeoutMs: number;
  /** From a stop request, the longest wait for the batch in hand to be delivered. */
  shutdownTimeoutMs: number;
  rejectMissing: boolean;
  maxRecordIdBytes: number;
  /** librdkafka properties set on both clients after the data path's own. */
  kafkaProperties: Array<[string, string]>;
}

/** The data path's counters since its start. */
export interface NativeDataPathStats {
  recordsIn: number;
  suspicious: number;
  regular: number;
  /** Dead letters by reason code; reasons with none are absent. */
  deadLetters: Record<string, number>;
  /** Records with no output at all (not even a dead-letter copy fits), by reason; reasons with none are absent. */
  skipped: Record<string, number>;
  batches: number;
  predictCalls: number;
  predictSeconds: number;
  /** Time waiting for the broker's acknowledgements with nothing else to do (a full pipeline, a stop). */
  flushSeconds: number;
  deliveryFailures: number;
  commitFailures: number;
  /** Records handed to the producer whose offsets are not stored yet. */
  inFlight: number;
  assignedPartitions: number[];
  /** High watermark minus position, by partition, refreshed about once a second. */
  lag: Record<string, number>;
}

/** One log line queued by the loop's thread. */
export interface NativeLogLine {
  level: 'error' | 'warn' | 'info' | 'debug';
  message: string;
  fields: Record<string, string | number>;
}

/** A Kafka client's error event, as librdkafka's error callback gave it. */
export interface NativeClientError {
  client: 'producer' | 'consumer';
  code: number;
  message: string;
  fatal: boolean;
}

/** What the loop queued since the last collection. */
export interface NativeCollected {
  lines: NativeLogLine[];
  /** Log lines the loop dropped for want of room. */
  dropped: number;
  errors: NativeClientError[];
  /** Per prediction, flattened: its rows, then its duration in seconds. */
  batches: Float64Array;
  /** Per delivered output: milliseconds from its input's timestamp to its delivery report. */
  endToEndMs: Float32Array;
  /** Each client's latest statistics JSON, absent when none came. */
  producerStats?: string;
  consumerStats?: string;
}

/** The loop over librdkafka and libxgboost of native/datapath/, one per processor. */
export interface NativeDataPath {
  start(): void;
  /** Resolves once the loop has finished its batch, committed and closed its clients. */
  stop(): Promise<void>;
  /** `running` false once the loop has ended; `failure` says why when it ended by itself. */
  state(): { running: boolean; failure?: string };
  stats(): NativeDataPathStats;
  /** What the loop queued since the last call. */
  collect(): NativeCollected;
  numFeatures(): number;
}

/** The data path addon's exports. */
export interface NativeDataPathBinding {
  DataPath: new (options: NativeDataPathOptions) => NativeDataPath;
  librdkafkaVersion: string;
}

const DATA_PATH_ADDON = path.join('build', 'Release', 'xgb_stream_datapath.node');

/**
 * Loads the native data path addon, built only where node-rdkafka's librdkafka is.
 * @throws Error saying how to build it when it is missing or cannot be loaded.
 */
export function loadDataPathAddon(): NativeDataPathBinding {
  const file = path.join(packageRoot(), DATA_PATH_ADDON);
  if (!existsSync(file)) {
    throw new Error(`the native data path is not built: ${file} is missing. It is built with the addon ` +
      "('npm run build:native') where node-rdkafka has built its librdkafka.");
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(file) as NativeDataPathBinding;
  } catch (err) {
    throw new Error(`the native data path ${file} failed to load: ${(err as Error).message}`, { cause: err });
  }
}
