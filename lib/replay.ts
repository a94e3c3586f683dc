#!/usr/bin/env node
/**
 * The `xgb-stream-replay` command: sends the trainer's held-out transactions (or random valid records)
 * to the input topic as PredictRequest records, as fast as possible or at a fixed rate, each keyed by
 * its recordID, stamped with the time of sending and carrying its ground-truth label in a `label`
 * header. The demo and the benchmark call `replay()` in-process.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { performance } from 'node:perf_hooks';
import type { LibrdKafkaError, MessageHeader } from 'node-rdkafka';
import * as path from 'node:path';
import { encodePredictRequest } from './codec';
import {
  ConfigError, parseKafkaProperty, redact, resolveKafkaProperties, type KafkaPropertySetting,
} from './config';
import { frameValue } from './input/framing';
import { KafkaClientMissingError, kafkaClient } from './kafka-client';
import { splitKafkaProperties } from './processor/kafka-properties';

/** The header that carries a replayed record's ground-truth label, "0" or "1". */
export const LABEL_HEADER = 'label';
/** The trainer's replay set, relative to the working directory. */
export const DEFAULT_REPLAY_FILE = 'models/default/replay.ndjson.gz';

const ERR_QUEUE_FULL = -184;
const EXIT_USAGE = 2;

/** One record to send: what the trainer wrote for a held-out transaction, NaN for a missing feature. */
export interface ReplayRecord {
  readonly recordID: string;
  /** Ground truth, when known; random records have none. */
  readonly label?: 0 | 1;
  readonly features: readonly number[];
}

/** A replay file that cannot be used; the message names the file (and line). */
export class ReplayFileError extends Error {
  override name = 'ReplayFileError';
}

/**
 * Reads a replay set: NDJSON, gzipped or not, one `{recordID, label, features}` object per line.
 * `null` features become NaN, which the processor scores as xgboost's "missing".
 */
export function readReplayFile(file: string): ReplayRecord[] {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const hint = e.code === 'ENOENT' ? ' (train the default model with `npm run train`)' : '';
    throw new ReplayFileError(`cannot read replay file ${file}: ${e.code ?? e.message}${hint}`);
  }
  let text: string;
  try {
    text = (raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw).toString('utf8');
  } catch (err) {
    throw new ReplayFileError(`cannot decompress replay file ${file}: ${(err as Error).message}`);
  }
  const records: ReplayRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const where = `${file}:${i + 1}`;
    let obj: { recordID?: unknown; label?: unknown; features?: unknown };
    try {
      obj = JSON.parse(line);
    } catch (err) {
      throw new ReplayFileError(`${where}: not JSON: ${(err as Error).message}`);
    }
    if (typeof obj.recordID !== 'string' || obj.recordID === '') throw new ReplayFileError(`${where}: no recordID`);
    if (!Array.isArray(obj.features)) throw new ReplayFileError(`${where}: features is not an array`);
    const features = obj.features.map((v: unknown, j: number) => {
      if (v === null) return NaN;
      if (typeof v !== 'number') throw new ReplayFileError(`${where}: feature ${j} is ${JSON.stringify(v)}`);
      return v;
    });
    let label: 0 | 1 | undefined;
    if (obj.label === 0 || obj.label === 1) label = obj.label;
    else if (obj.label !== undefined && obj.label !== null) {
      throw new ReplayFileError(`${where}: label must be 0 or 1, got ${JSON.stringify(obj.label)}`);
    }
    records.push({ recordID: obj.recordID, label, features });
  }
  if (records.length === 0) throw new ReplayFileError(`replay file ${file} holds no records`);
  return records;
}

/**
 * `count` random valid records of `numFeatures` finite features, the same for the same seed, so that
 * benchmark runs score the same rows.
 */
export function randomRecords(count: number, numFeatures: number, seed = 1): ReplayRecord[] {
  // mulberry32: small, fast and good enough to spread rows over the model's splits.
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out: ReplayRecord[] = [];
  for (let i = 0; i < count; i++) {
    const features: number[] = [];
    for (let j = 0; j < numFeatures; j++) features.push(Math.round((next() * 2 - 1) * 1e4) / 1e3);
    out.push({ recordID: `rnd-${String(i).padStart(7, '0')}`, features });
  }
  return out;
}

/** How a record's value is written: the processor's `--input-format` and `--input-framing`, as a producer would. */
export interface ValueEncoding {
  /** `json`: features by name; `json-vector`: featuresVector, in column order. */
  readonly format: 'protobuf' | 'json' | 'json-vector';
  /** The model's feature names, for `json`. */
  readonly featureNames?: readonly string[];
  /** Frame each value as a Schema Registry serializer does, with this schema id (message indexes [0]). */
  readonly schemaId?: number;
}

/** JSON's number for a feature; NaN (missing) has none, so it is null. */
function jsonNumber(v: number): number | null {
  return Number.isNaN(v) ? null : v;
}

/** The value of a record in `encoding`. */
export function encodeValue(record: ReplayRecord, encoding: ValueEncoding = { format: 'protobuf' }): Buffer {
  let payload: Buffer;
  if (encoding.format === 'protobuf') {
    payload = encodePredictRequest({ recordID: record.recordID, featuresVector: [...record.features] });
  } else if (encoding.format === 'json-vector') {
    payload = Buffer.from(JSON.stringify({ recordID: record.recordID, featuresVector: record.features.map(jsonNumber) }));
  } else {
    const names = encoding.featureNames;
    if (names === undefined || names.length !== record.features.length) {
      throw new RangeError(`json by name needs ${record.features.length} feature names, got ${names?.length ?? 'none'}`);
    }
    const features: Record<string, number | null> = {};
    names.forEach((name, i) => { features[name] = jsonNumber(record.features[i]); });
    payload = Buffer.from(JSON.stringify({ recordID: record.recordID, features }));
  }
  if (encoding.schemaId === undefined) return payload;
  // The JSON Schema serializer writes no message indexes; the protobuf one writes [0] as one 0 byte.
  return frameValue(encoding.schemaId, payload, encoding.format === 'protobuf' ? [0] : undefined);
}

/** The feature names the trainer wrote beside a replay file (test-vectors/index.json), when there. */
export function featureNamesBeside(file: string): string[] | undefined {
  try {
    const index = JSON.parse(readFileSync(path.join(path.dirname(file), 'test-vectors', 'index.json'), 'utf8')) as { featureNames?: unknown };
    return Array.isArray(index.featureNames) && index.featureNames.every((n) => typeof n === 'string') ? index.featureNames : undefined;
  } catch {
    return undefined;
  }
}

/** The Kafka message of a record: key, PredictRequest value and label header. */
export interface ReplayMessage {
  readonly key: string;
  readonly value: Buffer;
  readonly headers: MessageHeader[];
}

/** Encodes a record as the message the replay tool sends. */
export function toMessage(record: ReplayRecord, encoding?: ValueEncoding): ReplayMessage {
  const value = encodeValue(record, encoding);
  const headers: MessageHeader[] = record.label === undefined ? [] : [{ [LABEL_HEADER]: String(record.label) }];
  return { key: record.recordID, value, headers };
}

/** Progress of a replay, reported every `progressIntervalMs`. */
export interface ReplayProgress {
  /** Records handed to the producer. */
  readonly produced: number;
  /** Records the broker acknowledged. */
  readonly sent: number;
  readonly failed: number;
  readonly total: number;
  readonly elapsedMs: number;
}

/** What to replay, where, and how fast. */
export interface ReplayOptions {
  readonly brokers: string;
  readonly topic: string;
  /** The records to send, in order; cycled when `count` is larger. */
  readonly records: readonly ReplayRecord[];
  /** How many to send (default: each record once). */
  readonly count?: number;
  /** Records per second; 0 (the default) sends as fast as the producer takes them. */
  readonly rate?: number;
  /** librdkafka properties for the producer, e.g. security settings of an existing cluster. */
  readonly kafkaProperties?: Readonly<Record<string, string>>;
  /** How values are written (default: bare protobuf). */
  readonly encoding?: ValueEncoding;
  /** Stops sending early; records already produced are still waited for. */
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: ReplayProgress) => void;
  readonly progressIntervalMs?: number;
}

/** The outcome of a replay. */
export interface ReplaySummary {
  readonly topic: string;
  /** Records the broker acknowledged. */
  readonly sent: number;
  /** Records whose delivery failed (or was never reported before the deadline). */
  readonly failed: number;
  /** From the first send to the last delivery report. */
  readonly elapsedMs: number;
  /** `sent` per second of `elapsedMs`. */
  readonly rate: number;
  /** The rate asked for; 0 means as fast as possible. */
  readonly targetRate: number;
  /** Labels of the records produced: how many 0, 1, and without a label. */
  readonly labels: { readonly '0': number; readonly '1': number; readonly none: number };
  readonly aborted: boolean;
  /** The first delivery error, when there was one. */
  readonly firstError?: string;
  /** Wall-clock time of the first and last send, for joining with other clocks. */
  readonly firstSendMs: number;
  readonly lastSendMs: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Sends `count` records to `topic` and resolves once every one has a delivery report (or the
 * producer's message timeout has passed). At a fixed rate, record i is due `i / rate` seconds after
 * the first is sent, and is sent in the first slice of a millisecond or so after that, so that the
 * achieved rate does not drift with timer jitter.
 */
export async function replay(options: ReplayOptions): Promise<ReplaySummary> {
  const { topic, records } = options;
  if (records.length === 0) throw new RangeError('nothing to replay: no records');
  const total = options.count ?? records.length;
  const rate = options.rate ?? 0;
  if (!Number.isInteger(total) || total < 0) throw new RangeError(`count must be a whole number >= 0, got ${total}`);
  if (!Number.isFinite(rate) || rate < 0) throw new RangeError(`rate must be >= 0 records/s, got ${rate}`);
  // Topic-level ones (acks, message.timeout.ms) only count in the topic configuration (kafka-properties.ts).
  const properties = splitKafkaProperties(options.kafkaProperties ?? {});
  const messageTimeoutMs = Number(properties.topic['message.timeout.ms']
    ?? properties.topic['delivery.timeout.ms'] ?? 30_000);

  const producer = new (kafkaClient().Producer)({
    'bootstrap.servers': options.brokers,
    'client.id': 'xgb-stream-replay',
    'dr_cb': true,
    'linger.ms': 5,
    'enable.idempotence': true,
    ...properties.global,
  }, {
    // A topic that does not exist or a broker that went away fails here within half a minute,
    // not after librdkafka's default of five.
    'message.timeout.ms': messageTimeoutMs,
    ...properties.topic,
  });
  await new Promise<void>((resolve, reject) => producer.connect({ timeout: 30_000 }, (err) => (err
    ? reject(new Error(`could not connect to ${options.brokers}: ${err.message}`)) : resolve())));
  // Without this check a missing topic shows only as every record failing after message.timeout.ms.
  try {
    const metadata = await new Promise<{ topics: Array<{ name: string }> }>((resolve, reject) =>
      producer.getMetadata({ timeout: 30_000 }, (err, m) => (err ? reject(err) : resolve(m))));
    if (!metadata.topics.some((t) => t.name === topic)) {
      throw new Error(`topic ${topic} does not exist on ${options.brokers}: create it first (or pass --create-topic)`);
    }
  } catch (err) {
    await new Promise<void>((resolve) => producer.disconnect(() => resolve()));
    throw err;
  }

  let produced = 0;
  let sent = 0;
  let failed = 0;
  let firstError: string | undefined;
  const labels = { '0': 0, '1': 0, none: 0 };
  let allReported: () => void = () => undefined;
  producer.on('delivery-report', (err: LibrdKafkaError | null) => {
    if (err) {
      failed++;
      firstError ??= err.message;
    } else {
      sent++;
    }
    if (sent + failed === produced) allReported();
  });
  producer.setPollInterval(10);

  // Encoded once per distinct record: cycling a small set into a large benchmark costs no re-encoding.
  const encoded: Array<ReplayMessage | undefined> = new Array(records.length);
  let start = performance.now();
  let firstSendMs = Date.now();
  let lastSendMs = firstSendMs;
  const elapsed = (): number => performance.now() - start;
  const progress = (): ReplayProgress => ({ produced, sent, failed, total, elapsedMs: elapsed() });
  const timer = options.onProgress
    ? setInterval(() => options.onProgress!(progress()), options.progressIntervalMs ?? 250)
    : undefined;

  try {
    while (produced < total && !options.signal?.aborted) {
      // The schedule counts from the first send: time spent before it (the first record's encoding, a
      // busy event loop) would otherwise make the first records due at once, and leave together. So
      // the first record is encoded before the clock starts.
      if (produced === 0) {
        encoded[0] ??= toMessage(records[0], options.encoding);
        start = performance.now();
        firstSendMs = Date.now();
      }
      let due: number;
      if (rate > 0) {
        due = Math.min(total, Math.floor((elapsed() * rate) / 1000) + 1);
        if (due <= produced) {
          const nextDueMs = (produced * 1000) / rate - elapsed();
          await sleep(Math.max(1, Math.min(20, nextDueMs)));
          continue;
        }
      } else {
        due = Math.min(total, produced + 1000);
      }
      while (produced < due) {
        const i = produced % records.length;
        const message = (encoded[i] ??= toMessage(records[i], options.encoding));
        try {
          lastSendMs = Date.now();
          producer.produce(topic, null, message.value, message.key, lastSendMs, undefined,
            message.headers.length > 0 ? message.headers : undefined);
        } catch (err) {
          // The producer's queue is full: let delivery reports drain it.
          if ((err as LibrdKafkaError).code !== ERR_QUEUE_FULL) throw err;
          producer.poll();
          await sleep(5);
          continue;
        }
        produced++;
        const label = records[i].label;
        if (label === undefined) labels.none++;
        else labels[label === 1 ? '1' : '0']++;
      }
      // Lets delivery reports, progress and signals through between bursts.
      if (rate === 0) await new Promise((resolve) => setImmediate(resolve));
    }

    if (sent + failed < produced) {
      const reported = new Promise<void>((resolve) => { allReported = resolve; });
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), messageTimeoutMs + 5_000);
      });
      producer.flush(messageTimeoutMs + 5_000, () => undefined);
      const outcome = await Promise.race([reported, deadline]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        const missing = produced - sent - failed;
        failed += missing;
        firstError ??= `${missing} records had no delivery report after ${messageTimeoutMs + 5_000} ms`;
      }
    }
  } finally {
    if (timer) clearInterval(timer);
    // The poll timer must stop before disconnect destroys the handle (see the processor's disconnect).
    producer.setPollInterval(0);
    await new Promise<void>((resolve) => producer.disconnect(5_000, () => resolve()));
  }
  const elapsedMs = elapsed();
  options.onProgress?.({ produced, sent, failed, total, elapsedMs });
  return {
    topic, sent, failed, elapsedMs, rate: elapsedMs > 0 ? (sent * 1000) / elapsedMs : 0, targetRate: rate,
    labels, aborted: options.signal?.aborted ?? false, firstError, firstSendMs, lastSendMs,
  };
}

/** Creates a topic, or leaves it alone when it exists. */
export async function ensureTopic(brokers: string, topic: string, partitions: number,
  kafkaProperties: Readonly<Record<string, string>> = {}): Promise<void> {
  // The admin client has no topic configuration: only the global properties apply to it.
  const admin = kafkaClient().AdminClient.create({
    'bootstrap.servers': brokers, ...splitKafkaProperties(kafkaProperties).global,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      admin.createTopic({ topic, num_partitions: partitions, replication_factor: 1 }, 30_000, (err) => {
        // 36: TOPIC_ALREADY_EXISTS.
        if (err && err.code !== 36) reject(new Error(`could not create topic ${topic}: ${err.message}`));
        else resolve();
      });
    });
  } finally {
    admin.disconnect();
  }
}

// ---- the command -------------------------------------------------------------------------------

/** The `--help` text; the README's table of replay options is held to it. */
export const HELP = `Usage: xgb-stream-replay [options]

Sends PredictRequest records to a Kafka topic: the trainer's held-out transactions (in event-time
order, with the ground-truth label in a '${LABEL_HEADER}' header) or random valid records. Each record is
keyed by its recordID and stamped with the time it is sent.

Options:
  --brokers <host:port,...>  bootstrap servers (default 127.0.0.1:9092) [KAFKA_BROKERS]
  --topic <name>             topic to send to (default predict-requests)
  --file <path>              replay set, gzipped or plain NDJSON (default ${DEFAULT_REPLAY_FILE})
  --random <n>               send n random valid records instead of the file
  --features <n>             features per random record (default 10)
  --seed <n>                 seed of the random records (default 1)
  --count <n>                records to send: the first n, cycling when n is larger (default: all once)
  --rate <r>                 records per second; 0 sends as fast as possible (default 0)
  --create-topic             create the topic when it does not exist
  --partitions <n>           partitions of a topic made by --create-topic (default 1)
  --format <f>               value format: protobuf, json (features by name), json-vector (default protobuf)
  --feature-names <a,b,...>  names for --format json (default: test-vectors/index.json beside --file)
  --schema-id <n>            frame each value as a Schema Registry serializer does, with this schema id
  --json                     print the summary as JSON on stdout
  --kafka-config <file>      Java properties file of librdkafka properties (security settings,
                             passwords); -X wins over it [KAFKA_CONFIG]
  -X <key=value>             librdkafka property of the producer, repeatable
  -h, --help                 show this text

Records are spread over partitions by librdkafka's default partitioner, which hashes the key.
Exit status: 0 all sent, 1 some failed or could not connect, 2 bad usage or an unreadable file.`;

/** A bad flag: exit status 2, like the processor's own ConfigError (which `-X` parsing throws). */
class UsageError extends ConfigError {}

interface CliOptions {
  brokers: string;
  topic: string;
  file: string;
  random?: number;
  features: number;
  seed: number;
  count?: number;
  rate: number;
  createTopic: boolean;
  partitions: number;
  json: boolean;
  format: ValueEncoding['format'];
  featureNames?: string[];
  schemaId?: number;
  kafkaProperties: Record<string, string>;
  /** Secret property values, never shown. */
  secrets: readonly string[];
  /** What is wrong with the --kafka-config file's permissions, if anything. */
  warnings: readonly string[];
}

function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv): CliOptions | 'help' {
  const o: CliOptions = {
    brokers: env.KAFKA_BROKERS || '127.0.0.1:9092', topic: 'predict-requests', file: DEFAULT_REPLAY_FILE,
    features: 10, seed: 1, rate: 0, createTopic: false, partitions: 1, json: false, format: 'protobuf', kafkaProperties: {},
    secrets: [], warnings: [],
  };
  let kafkaConfig = env.KAFKA_CONFIG || undefined;
  const kafkaSettings: KafkaPropertySetting[] = [];
  const number = (name: string, raw: string, min: number, integer: boolean): number => {
    const n = /^\s*[+]?(\d+\.?\d*|\.\d+)([eE][+]?\d+)?\s*$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
      throw new UsageError(`invalid ${name} '${raw}': expected ${integer ? 'a whole number' : 'a number'} >= ${min}`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq > 0) return arg.slice(eq + 1);
      if (argv[i + 1] === undefined) throw new UsageError(`missing value for ${name}`);
      return argv[++i];
    };
    switch (name) {
      case '-h': case '--help': return 'help';
      case '--brokers': o.brokers = value(); break;
      case '--topic': o.topic = value(); break;
      case '--file': o.file = value(); break;
      case '--random': o.random = number(name, value(), 1, true); break;
      case '--features': o.features = number(name, value(), 1, true); break;
      case '--seed': o.seed = number(name, value(), 0, true); break;
      case '--count': o.count = number(name, value(), 0, true); break;
      case '--rate': o.rate = number(name, value(), 0, false); break;
      case '--create-topic': o.createTopic = true; break;
      case '--partitions': o.partitions = number(name, value(), 1, true); break;
      case '--json': o.json = true; break;
      case '--format': {
        const f = value();
        if (f !== 'protobuf' && f !== 'json' && f !== 'json-vector') {
          throw new UsageError(`invalid --format '${f}': expected one of protobuf, json, json-vector`);
        }
        o.format = f;
        break;
      }
      case '--feature-names': o.featureNames = value().split(',').map((n) => n.trim()); break;
      case '--schema-id': o.schemaId = number(name, value(), 0, true); break;
      case '--kafka-config': kafkaConfig = value(); break;
      case '-X': case '--kafka-property': kafkaSettings.push(parseKafkaProperty(value(), name)); break;
      default: throw new UsageError(`unknown option '${arg}' (see --help)`);
    }
  }
  if (o.brokers.trim() === '') throw new UsageError('--brokers is empty');
  if (o.topic.trim() === '') throw new UsageError('--topic is empty');
  const kafka = resolveKafkaProperties(kafkaConfig, kafkaSettings);
  return { ...o, kafkaProperties: kafka.properties, secrets: kafka.secrets, warnings: kafka.warnings };
}

function formatInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** A progress line on stderr: rewritten in place on a terminal, one line every few seconds otherwise. */
function progressPrinter(topic: string): { update: (p: ReplayProgress) => void; end: () => void } {
  const tty = process.stderr.isTTY === true;
  let lastLine = 0;
  let drawn = false;
  const text = (p: ReplayProgress): string => {
    const pct = p.total > 0 ? ` (${((100 * p.sent) / p.total).toFixed(1)}%)` : '';
    const rate = p.elapsedMs > 0 ? (p.sent * 1000) / p.elapsedMs : 0;
    return `replay: ${formatInt(p.sent)}/${formatInt(p.total)} sent to ${topic}${pct}, `
      + `${formatInt(rate)} records/s${p.failed > 0 ? `, ${formatInt(p.failed)} failed` : ''}`;
  };
  return {
    update: (p) => {
      if (tty) {
        process.stderr.write(`\r${text(p)}\x1b[K`);
        drawn = true;
      } else if (p.elapsedMs - lastLine >= 5_000) {
        lastLine = p.elapsedMs;
        process.stderr.write(`${text(p)}\n`);
      }
    },
    end: () => { if (drawn) process.stderr.write('\n'); },
  };
}

async function main(): Promise<number> {
  let options: CliOptions | 'help';
  let records: ReplayRecord[];
  try {
    options = parseArgs(process.argv.slice(2), process.env);
    if (options === 'help') {
      process.stdout.write(`${HELP}\n`);
      return 0;
    }
    for (const warning of options.warnings) process.stderr.write(`xgb-stream-replay: warning: ${warning}\n`);
    kafkaClient();
    records = options.random !== undefined
      ? randomRecords(options.random, options.features, options.seed)
      : readReplayFile(options.file);
    if (options.format === 'json') {
      options.featureNames ??= options.random === undefined ? featureNamesBeside(options.file) : undefined;
      const n = records[0].features.length;
      if (options.featureNames === undefined || options.featureNames.length !== n) {
        throw new UsageError(`--format json needs ${n} feature names: pass --feature-names`
          + (options.featureNames ? ` (got ${options.featureNames.length})` : ''));
      }
    }
  } catch (err) {
    if (err instanceof ConfigError || err instanceof ReplayFileError || err instanceof KafkaClientMissingError) {
      process.stderr.write(`xgb-stream-replay: ${err.message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }

  const abort = new AbortController();
  const onSignal = (): void => {
    if (abort.signal.aborted) process.exit(130);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const source = options.random !== undefined ? `${options.random} random records` : options.file;
  const printer = progressPrinter(options.topic);
  let summary: ReplaySummary;
  try {
    if (options.createTopic) await ensureTopic(options.brokers, options.topic, options.partitions, options.kafkaProperties);
    summary = await replay({
      brokers: options.brokers, topic: options.topic, records, count: options.count, rate: options.rate,
      kafkaProperties: options.kafkaProperties, signal: abort.signal, onProgress: printer.update,
      encoding: { format: options.format, featureNames: options.featureNames, schemaId: options.schemaId },
    });
  } catch (err) {
    printer.end();
    process.stderr.write(redact(`xgb-stream-replay: ${(err as Error).message}\n`, options.secrets));
    return 1;
  }
  printer.end();

  if (options.json) {
    process.stdout.write(redact(`${JSON.stringify({ source, brokers: options.brokers, ...summary })}\n`, options.secrets));
  } else {
    const target = summary.targetRate > 0 ? ` (asked for ${formatInt(summary.targetRate)})` : '';
    process.stdout.write(
      `sent ${formatInt(summary.sent)} records from ${source} to ${summary.topic} on ${options.brokers}`
      + `${summary.aborted ? ' before being interrupted' : ''}\n`
      + `  failed:   ${formatInt(summary.failed)}${summary.firstError ? ` (first error: ${redact(summary.firstError, options.secrets)})` : ''}\n`
      + `  elapsed:  ${(summary.elapsedMs / 1000).toFixed(2)} s\n`
      + `  rate:     ${formatInt(summary.rate)} records/s${target}\n`
      + `  labels:   ${formatInt(summary.labels['1'])} fraud, ${formatInt(summary.labels['0'])} genuine`
      + `${summary.labels.none > 0 ? `, ${formatInt(summary.labels.none)} unlabelled` : ''}\n`);
  }
  if (summary.aborted) return 130;
  return summary.failed > 0 ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`xgb-stream-replay: ${(err as Error).stack ?? err}\n`);
      process.exit(1);
    },
  );
}
