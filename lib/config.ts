/**
 * The processor's configuration: command-line flags and environment variables, parsed once at start-up
 * into a frozen, typed object. Flags win over environment variables, which win over defaults. Nothing
 * reads `process.env` after this module has run. librdkafka properties come from a properties file
 * (--kafka-config), KAFKA_PROPERTIES and -X, each checked by librdkafka here; the values of secret ones
 * are collected so that no output shows them.
 */

import { KafkaConfigFileError, readKafkaConfigFile } from './kafka-config-file';
import { KafkaClientMissingError, kafkaClient } from './kafka-client';

/** The value written to the two output topics. */
export type OutputFormat = 'protobuf' | 'json' | 'float';
/** Whether suspicious records carry per-feature contributions, and computed how. */
export type ExplainMode = 'none' | 'approx' | 'exact';
/** What a crash or a rebalance may do to the outputs: duplicate some, or never. */
export type Guarantee = 'at-least-once' | 'exactly-once';
/** The payload of input values: a PredictRequest as protobuf, or as JSON. */
export type InputFormat = 'protobuf' | 'json';
/** Whether input values may carry Confluent Schema Registry framing. */
export type InputFraming = 'none' | 'confluent';
/** Where records are consumed, scored and produced: through node-rdkafka and the Classifier, or in C++. */
export type DataPathKind = 'node' | 'native';
/** Log levels, most severe first. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/** Everything the processor needs to run, validated. */
export interface ProcessorConfig {
  readonly brokers: string;
  readonly groupId: string;
  readonly guarantee: Guarantee;
  /** Static group membership (group.instance.id); also names the transactional producer. */
  readonly instanceId: string | undefined;
  readonly commitIntervalMs: number;
  readonly inputTopic: string;
  readonly suspiciousTopic: string;
  readonly regularTopic: string;
  readonly deadLetterTopic: string;
  readonly modelPath: string;
  /** Reload --model when a new file is renamed into its place. */
  readonly watchModel: boolean;
  /** Serve POST /-/reload on the metrics port. */
  readonly enableLifecycle: boolean;
  /** Live rows a candidate model and the serving one both score before a swap; 0 skips the canary. */
  readonly canaryRows: number;
  /** Reject a candidate whose canary alert rate differs from the serving model's by more than this factor. */
  readonly maxAlertRateRatio: number | undefined;
  /** A second model that scores every batch too, without changing routing. */
  readonly shadowModelPath: string | undefined;
  /** Where the shadow model's ScoredRecords go, when anywhere. */
  readonly shadowTopic: string | undefined;
  /** Explicit threshold; undefined means the model's `threshold` attribute, else 0.5. */
  readonly threshold: number | undefined;
  readonly batchSize: number;
  readonly batchWaitMs: number;
  readonly outputFormat: OutputFormat;
  readonly inputFormat: InputFormat;
  /** JSON by name: an absent or null feature is scored as missing instead of dead-lettered. */
  readonly allowMissingFeatures: boolean;
  /** `confluent` also with --schema-registry, which implies it. */
  readonly inputFraming: InputFraming;
  /** Base URL of a Schema Registry that checks the schema id of each framed value. */
  readonly schemaRegistryUrl: string | undefined;
  /** `user:password` for the registry's HTTP basic auth. */
  readonly schemaRegistryBasicAuth: string | undefined;
  /** Frame scored outputs with the schema id registered under each output topic's subject. */
  readonly outputFraming: 'none' | 'confluent';
  readonly provenanceHeaders: boolean;
  readonly explain: ExplainMode;
  readonly topK: number;
  readonly rejectMissing: boolean;
  readonly maxRecordIdBytes: number;
  readonly maxMessageBytes: number;
  readonly logLevel: LogLevel;
  readonly metricsPort: number;
  readonly createTopics: boolean;
  readonly createPartitions: number;
  readonly createReplicationFactor: number;
  readonly shutdownTimeoutMs: number;
  /** How long start-up waits for each Kafka client to connect and read the cluster's metadata. */
  readonly connectTimeoutMs: number;
  readonly nthread: number;
  /** `native`: the C++ data path of native/datapath/ (see checkNativeDataPath for what it refuses). */
  readonly dataPath: DataPathKind;
  /** A Java properties file of librdkafka properties (--kafka-config), under those of `-X`. */
  readonly kafkaConfigFile: string | undefined;
  /**
   * librdkafka properties of the --kafka-config file, KAFKA_PROPERTIES and `-X key=value`, later ones
   * winning, applied to both the consumer and the producer.
   */
  readonly kafkaProperties: Readonly<Record<string, string>>;
  /** Values of secret properties (passwords, keys), from every source: never shown in any output. */
  readonly secrets: readonly string[];
}

/** A setting that cannot be used; the CLI prints the message and exits with status 2. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The outcome of parsing: a configuration to run, or a request for help or the version. */
export type ParseResult =
  | { kind: 'run'; config: ProcessorConfig; warnings: readonly string[] }
  | { kind: 'help' }
  | { kind: 'version' };

type Kind = 'string' | 'int' | 'number' | 'bool' | 'enum';

interface Option {
  readonly flag: string;
  readonly env: string;
  readonly key: keyof ProcessorConfig;
  readonly kind: Kind;
  readonly help: string;
  readonly def?: string;
  readonly choices?: readonly string[];
  readonly min?: number;
  readonly max?: number;
}

/** The single table behind parsing, `--help` and the README's configuration reference. */
export const OPTIONS: readonly Option[] = [
  { flag: '--brokers', env: 'KAFKA_BROKERS', key: 'brokers', kind: 'string', def: '127.0.0.1:9092',
    help: 'Kafka bootstrap servers (host:port, comma-separated)' },
  { flag: '--group-id', env: 'GROUP_ID', key: 'groupId', kind: 'string', def: 'xgb-stream',
    help: 'consumer group; instances in one group split the input partitions' },
  { flag: '--guarantee', env: 'GUARANTEE', key: 'guarantee', kind: 'enum', def: 'at-least-once',
    choices: ['at-least-once', 'exactly-once'],
    help: 'at-least-once (a crash may output a record twice) or exactly-once (Kafka transactions)' },
  { flag: '--instance-id', env: 'INSTANCE_ID', key: 'instanceId', kind: 'string',
    help: 'this instance\'s stable, unique id: static group membership (group.instance.id), and the transactional.id' },
  { flag: '--commit-interval-ms', env: 'COMMIT_INTERVAL_MS', key: 'commitIntervalMs', kind: 'int', def: '100',
    min: 1, max: 600000, help: 'exactly-once: how often the open transaction commits' },
  { flag: '--kafka-config', env: 'KAFKA_CONFIG', key: 'kafkaConfigFile', kind: 'string',
    help: 'Java properties file of librdkafka properties (security settings, passwords); -X wins over it' },
  { flag: '--input-topic', env: 'INPUT_TOPIC', key: 'inputTopic', kind: 'string', def: 'predict-requests',
    help: 'topic of PredictRequest records' },
  { flag: '--suspicious-topic', env: 'SUSPICIOUS_TOPIC', key: 'suspiciousTopic', kind: 'string',
    def: 'suspicious-events', help: 'topic for records scoring >= threshold' },
  { flag: '--regular-topic', env: 'REGULAR_TOPIC', key: 'regularTopic', kind: 'string', def: 'regular-events',
    help: 'topic for records scoring < threshold' },
  { flag: '--dead-letter-topic', env: 'DEAD_LETTER_TOPIC', key: 'deadLetterTopic', kind: 'string',
    def: 'predict-requests.dlq', help: 'topic for records that cannot be scored, with the reason in headers' },
  { flag: '--model', env: 'MODEL_PATH', key: 'modelPath', kind: 'string', def: 'models/default/model.ubj',
    help: 'XGBoost model file, UBJSON or JSON (convert legacy binary ones: npm run convert-model)' },
  { flag: '--watch-model', env: 'WATCH_MODEL', key: 'watchModel', kind: 'bool', def: 'false',
    help: 'reload --model when a new file is renamed into its place (as SIGHUP does)' },
  { flag: '--enable-lifecycle', env: 'ENABLE_LIFECYCLE', key: 'enableLifecycle', kind: 'bool', def: 'false',
    help: 'serve POST /-/reload on the metrics port (reloads --model, as SIGHUP does)' },
  { flag: '--canary-rows', env: 'CANARY_ROWS', key: 'canaryRows', kind: 'int', def: '10000', min: 0, max: 1_000_000,
    help: 'last live rows that a reloaded model and the serving one both score before the swap (0: no canary)' },
  { flag: '--max-alert-rate-ratio', env: 'MAX_ALERT_RATE_RATIO', key: 'maxAlertRateRatio', kind: 'number', min: 1,
    help: "reject a reloaded model whose canary alert rate differs from the serving model's by more than this factor (default: off)" },
  { flag: '--shadow-model', env: 'SHADOW_MODEL_PATH', key: 'shadowModelPath', kind: 'string',
    help: 'second model that scores every batch too, for comparison; it never changes routing' },
  { flag: '--shadow-topic', env: 'SHADOW_TOPIC', key: 'shadowTopic', kind: 'string',
    help: "topic for the shadow model's ScoredRecords (default: none, metrics only)" },
  { flag: '--threshold', env: 'THRESHOLD', key: 'threshold', kind: 'number', min: 0, max: 1,
    help: "score at or above which a record is suspicious (default: the model's threshold attribute, else 0.5)" },
  { flag: '--batch-size', env: 'BATCH_SIZE', key: 'batchSize', kind: 'int', def: '500', min: 1, max: 100000,
    help: 'most records scored in one prediction call' },
  { flag: '--batch-wait-ms', env: 'BATCH_WAIT_MS', key: 'batchWaitMs', kind: 'int', def: '0', min: 0, max: 60000,
    help: 'extra wait for a batch to fill, from its first record (0: score what is fetched as soon as the scorer is free)' },
  { flag: '--output-format', env: 'OUTPUT_FORMAT', key: 'outputFormat', kind: 'enum', def: 'protobuf',
    choices: ['protobuf', 'json', 'float'],
    help: 'value written to the output topics: ScoredRecord protobuf, JSON, or a 4-byte big-endian float' },
  { flag: '--input-format', env: 'INPUT_FORMAT', key: 'inputFormat', kind: 'enum', def: 'protobuf',
    choices: ['protobuf', 'json'],
    help: 'value read from the input topic: PredictRequest protobuf, or JSON with features by name or as a vector' },
  { flag: '--allow-missing-features', env: 'ALLOW_MISSING_FEATURES', key: 'allowMissingFeatures', kind: 'bool',
    def: 'false', help: 'json input: score an absent or null named feature as missing (NaN) instead of dead-lettering the record' },
  { flag: '--input-framing', env: 'INPUT_FRAMING', key: 'inputFraming', kind: 'enum', def: 'none',
    choices: ['none', 'confluent'],
    help: 'confluent: accept values framed by a Schema Registry serializer (magic byte 0, schema id, message indexes), ids unchecked' },
  { flag: '--schema-registry', env: 'SCHEMA_REGISTRY_URL', key: 'schemaRegistryUrl', kind: 'string',
    help: "Schema Registry base URL: implies --input-framing confluent, and checks each schema id once against PredictRequest" },
  { flag: '--schema-registry-basic-auth', env: 'SCHEMA_REGISTRY_BASIC_AUTH', key: 'schemaRegistryBasicAuth', kind: 'string',
    help: "user:password for the registry's HTTP basic auth (or user:password@ in the URL)" },
  { flag: '--output-framing', env: 'OUTPUT_FRAMING', key: 'outputFraming', kind: 'enum', def: 'none',
    choices: ['none', 'confluent'],
    help: 'confluent: register ScoredRecord under each output topic\'s <topic>-value subject and frame scored outputs (needs --schema-registry)' },
  { flag: '--provenance-headers', env: 'PROVENANCE_HEADERS', key: 'provenanceHeaders', kind: 'bool', def: 'false',
    help: 'also write xgb.source.topic/partition/offset and xgb.model.version headers on scored outputs' },
  { flag: '--explain', env: 'EXPLAIN', key: 'explain', kind: 'enum', def: 'none', choices: ['none', 'approx', 'exact'],
    help: 'add per-feature contributions to suspicious records (protobuf and json formats)' },
  { flag: '--top-k', env: 'TOP_K', key: 'topK', kind: 'int', def: '3', min: 1, max: 1000,
    help: 'number of contributions kept, largest |value| first' },
  { flag: '--reject-missing', env: 'REJECT_MISSING', key: 'rejectMissing', kind: 'bool', def: 'false',
    help: 'dead-letter records with NaN features instead of scoring NaN as missing' },
  { flag: '--max-record-id-bytes', env: 'MAX_RECORD_ID_BYTES', key: 'maxRecordIdBytes', kind: 'int', def: '4096',
    min: 1, max: 1_000_000, help: 'dead-letter a request whose recordID is longer, in UTF-8 bytes, before scoring it' },
  { flag: '--max-message-bytes', env: 'MAX_MESSAGE_BYTES', key: 'maxMessageBytes', kind: 'int', def: '1048588',
    min: 1024, max: 1_000_000_000,
    help: "largest record the output topics accept: their max.message.bytes (default: the broker's default)" },
  { flag: '--log-level', env: 'LOG_LEVEL', key: 'logLevel', kind: 'enum', def: 'warn',
    choices: ['error', 'warn', 'info', 'debug'], help: 'least severe level logged (JSON lines on stderr)' },
  { flag: '--metrics-port', env: 'METRICS_PORT', key: 'metricsPort', kind: 'int', def: '0', min: 0, max: 65535,
    help: 'port of the /metrics, /healthz and /readyz endpoint; 0 turns it off' },
  { flag: '--create-topics', env: 'CREATE_TOPICS', key: 'createTopics', kind: 'bool', def: 'false',
    help: 'create missing topics instead of stopping with an error' },
  { flag: '--create-partitions', env: 'CREATE_PARTITIONS', key: 'createPartitions', kind: 'int', def: '1', min: 1,
    max: 10000, help: 'partitions of topics made by --create-topics' },
  { flag: '--create-replication-factor', env: 'CREATE_REPLICATION_FACTOR', key: 'createReplicationFactor',
    kind: 'int', def: '1', min: 1, max: 100, help: 'replication factor of topics made by --create-topics' },
  { flag: '--shutdown-timeout-ms', env: 'SHUTDOWN_TIMEOUT_MS', key: 'shutdownTimeoutMs', kind: 'int', def: '30000',
    min: 100, max: 600000, help: 'bound on finishing in-flight batches, flushing and committing at shutdown' },
  { flag: '--connect-timeout-ms', env: 'CONNECT_TIMEOUT_MS', key: 'connectTimeoutMs', kind: 'int', def: '30000',
    min: 100, max: 600000, help: 'bound on connecting each Kafka client at start-up' },
  { flag: '--nthread', env: 'NTHREAD', key: 'nthread', kind: 'int', def: '1', min: 0, max: 256,
    help: 'xgboost threads per prediction call (0: all cores)' },
  { flag: '--data-path', env: 'DATA_PATH', key: 'dataPath', kind: 'enum', def: 'node', choices: ['node', 'native'],
    help: 'native: consume, score and produce in C++ over librdkafka, about half the CPU per record '
      + '(at-least-once, protobuf in, --output-format float out; no reload, shadow or explanations)' },
];

const BOOL_TRUE = new Set(['1', 'true', 'yes', 'on']);
const BOOL_FALSE = new Set(['0', 'false', 'no', 'off']);

function parseValue(opt: Option, raw: string, source: string): unknown {
  const bad = (expected: string): ConfigError =>
    new ConfigError(`invalid ${source} '${raw}': expected ${expected}`);
  switch (opt.kind) {
    case 'string':
      if (raw.trim() === '') throw bad('a non-empty value');
      return raw;
    case 'bool': {
      const v = raw.toLowerCase();
      if (BOOL_TRUE.has(v)) return true;
      if (BOOL_FALSE.has(v)) return false;
      throw bad('true or false');
    }
    case 'enum':
      if (!opt.choices!.includes(raw)) throw bad(`one of ${opt.choices!.join(', ')}`);
      return raw;
    case 'int':
    case 'number': {
      const range = `${opt.min ?? '-inf'} to ${opt.max ?? 'inf'}`;
      const kind = opt.kind === 'int' ? 'an integer' : 'a number';
      const n = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isFinite(n) || (opt.kind === 'int' && !Number.isInteger(n))
        || (opt.min !== undefined && n < opt.min) || (opt.max !== undefined && n > opt.max)) {
        throw bad(`${kind} from ${range}`);
      }
      return n;
    }
  }
}

/** Renders the `--help` text from the option table. */
export function helpText(): string {
  const lines = [
    'Usage: xgb-stream [options]',
    '',
    'Scores PredictRequest records from a Kafka topic with an XGBoost model and routes each to the',
    'suspicious or the regular topic; records that cannot be scored go to the dead-letter topic.',
    '',
    'Options (each also read from the environment variable shown):',
  ];
  for (const o of OPTIONS) {
    const arg = o.kind === 'bool' ? '' : ` <${o.kind === 'enum' ? o.choices!.join('|') : o.kind === 'string' ? 'value' : 'n'}>`;
    lines.push(`  ${o.flag}${arg}`);
    lines.push(`      ${o.help}${o.def !== undefined && o.kind !== 'bool' ? ` (default ${o.def})` : ''} [${o.env}]`);
  }
  lines.push('  -X, --kafka-property <key=value>');
  lines.push('      librdkafka property for the consumer and producer, repeatable, over --kafka-config, e.g. -X linger.ms=2');
  lines.push('      [KAFKA_PROPERTIES: key=value pairs separated by commas]');
  lines.push('  -h, --help      show this text');
  lines.push('  -V, --version   show the version');
  return lines.join('\n');
}

/** Adds one librdkafka `key=value` property to `into`; `source` names the flag or variable it came from. */
export function addKafkaProperty(raw: string, source: string, into: Record<string, string>): void {
  const { key, value } = parseKafkaProperty(raw, source);
  into[key] = value;
}

/** A librdkafka property as given, and where: `-X`, `KAFKA_PROPERTIES` or `FILE:LINE`. */
export interface KafkaPropertySetting {
  readonly key: string;
  readonly value: string;
  readonly source: string;
}

/** Splits a `key=value` property as `-X` and KAFKA_PROPERTIES take it. */
export function parseKafkaProperty(raw: string, source: string): KafkaPropertySetting {
  const eq = raw.indexOf('=');
  if (eq <= 0) throw new ConfigError(`invalid ${source} '${raw}': expected key=value`);
  return { key: raw.slice(0, eq).trim(), value: raw.slice(eq + 1), source };
}

/**
 * Properties whose values are secrets: the credentials of SASL and TLS, the Java client's JAAS line
 * (which carries a password), and those librdkafka itself marks sensitive. Any name ending in
 * "password" or "secret" counts too.
 */
const SECRET_PROPERTIES = new Set([
  'sasl.password', 'sasl.jaas.config', 'ssl.key.password', 'ssl.keystore.password', 'sasl.oauthbearer.client.secret',
  'ssl.key.pem', 'ssl_key', 'sasl.oauthbearer.config',
]);

/** Whether a librdkafka property holds a secret, whose value must never be shown. */
export function isSecretProperty(key: string): boolean {
  return SECRET_PROPERTIES.has(key) || /(password|secret)$/i.test(key);
}

/** The secret values of `settings`: whole values, and the passwords quoted inside a JAAS configuration. */
function secretValuesOf(settings: readonly KafkaPropertySetting[]): string[] {
  const secrets = new Set<string>();
  for (const { key, value } of settings) {
    if (!isSecretProperty(key) || value === '') continue;
    secrets.add(value);
    for (const m of value.matchAll(/password\s*=\s*"([^"]+)"/gi)) secrets.add(m[1]);
  }
  return [...secrets];
}

/** Replaces each secret in `text` with [redacted]. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  // Longest first: a secret that contains another is replaced whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(s).join('[redacted]');
  return out;
}

/**
 * librdkafka's complaint about one property, or undefined when it takes it. A client configuration
 * is only built here, never connected: librdkafka checks each property as it is set, so an unknown
 * name or a bad value shows now, next to the line that gave it, instead of when the processor starts.
 */
function librdkafkaRejects(key: string, value: string): string | undefined {
  try {
    new (kafkaClient().Producer)({ [key]: value });
    return undefined;
  } catch (err) {
    if (err instanceof KafkaClientMissingError) throw err;
    const message = (err as Error).message;
    // An alias such as linger.ms is reported under its canonical name.
    const alias = message.includes(`"${key}"`) ? '' : ` (given as ${key})`;
    if (key === 'sasl.jaas.config') {
      return `${message.replace(/,? see .*$/, '')}: librdkafka takes sasl.mechanisms, sasl.username and sasl.password`;
    }
    return `${message}${alias}`;
  }
}

/** The properties, where each came from, their secrets, and warnings about the file. */
export interface ResolvedKafkaProperties {
  readonly properties: Record<string, string>;
  /** The source of each property's value: the flag, the variable or FILE:LINE. */
  readonly sources: Record<string, string>;
  readonly secrets: string[];
  readonly warnings: string[];
  /** The Schema Registry settings of the file, which are the registry client's, not librdkafka's. */
  readonly registry: RegistryFileSettings;
}

/**
 * The Schema Registry settings a Confluent client properties file carries beside the cluster's:
 * `schema.registry.url`, and the basic auth as `basic.auth.user.info` (or
 * `schema.registry.basic.auth.user.info`) with `basic.auth.credentials.source=USER_INFO`. Each with
 * the FILE:LINE it came from.
 */
export interface RegistryFileSettings {
  readonly url?: { readonly value: string; readonly source: string };
  readonly basicAuth?: { readonly value: string; readonly source: string };
}

const REGISTRY_URL_KEY = 'schema.registry.url';
const REGISTRY_USER_INFO_KEYS = new Set(['basic.auth.user.info', 'schema.registry.basic.auth.user.info']);
const REGISTRY_CREDENTIALS_SOURCE_KEY = 'basic.auth.credentials.source';

/** Takes the Schema Registry settings out of a file's properties; see {@link RegistryFileSettings}. */
function takeRegistrySettings(settings: KafkaPropertySetting[]): RegistryFileSettings {
  let url: RegistryFileSettings['url'];
  let basicAuth: RegistryFileSettings['basicAuth'];
  let credentialsSource: KafkaPropertySetting | undefined;
  for (let i = settings.length - 1; i >= 0; i--) {
    const s = settings[i];
    if (s.key === REGISTRY_URL_KEY) url ??= { value: s.value, source: s.source };
    else if (REGISTRY_USER_INFO_KEYS.has(s.key)) basicAuth ??= { value: s.value, source: s.source };
    else if (s.key === REGISTRY_CREDENTIALS_SOURCE_KEY) credentialsSource ??= s;
    else continue;
    settings.splice(i, 1);
  }
  if (credentialsSource !== undefined && credentialsSource.value !== 'USER_INFO') {
    throw new ConfigError(`${credentialsSource.source}: ${REGISTRY_CREDENTIALS_SOURCE_KEY}=${credentialsSource.value} is not supported: `
      + `give the registry's credentials as basic.auth.user.info=user:password (${REGISTRY_CREDENTIALS_SOURCE_KEY}=USER_INFO)`);
  }
  if (basicAuth !== undefined && !basicAuth.value.includes(':')) {
    throw new ConfigError(`${basicAuth.source}: invalid basic.auth.user.info: expected user:password`);
  }
  return { url, basicAuth };
}

/** The passwords in the Schema Registry's settings: its basic auth's, and one written into its URL. */
function registrySecrets(url: string | undefined, basicAuth: string | undefined): string[] {
  const secrets: string[] = [];
  const basicPassword = basicAuth?.slice(basicAuth.indexOf(':') + 1);
  if (basicPassword) secrets.push(basicPassword);
  let inUrl = '';
  try {
    inUrl = url === undefined ? '' : new URL(url).password;
  } catch {
    // not a URL: the check of --schema-registry says so
  }
  // As written (percent-encoded) and as sent.
  if (inUrl) secrets.push(inUrl, decodeURIComponent(inUrl));
  return secrets;
}

/**
 * Merges the librdkafka properties of the --kafka-config `file` (first) and of `given` (in order, later
 * ones winning), checking every one with librdkafka. Throws ConfigError naming the file and line, or
 * the flag, of the first that librdkafka refuses; no message shows a secret's value.
 */
export function resolveKafkaProperties(file: string | undefined, given: readonly KafkaPropertySetting[]):
  ResolvedKafkaProperties {
  const settings: KafkaPropertySetting[] = [];
  const warnings: string[] = [];
  if (file !== undefined) {
    let read;
    try {
      read = readKafkaConfigFile(file);
    } catch (err) {
      if (err instanceof KafkaConfigFileError) throw new ConfigError(err.message);
      throw err;
    }
    for (const p of read.properties) settings.push({ key: p.key, value: p.value, source: `${file}:${p.line}` });
    if (read.warning !== undefined) warnings.push(read.warning);
  }
  const registry = takeRegistrySettings(settings);
  settings.push(...given);
  const secrets = [...secretValuesOf(settings), ...registrySecrets(registry.url?.value, registry.basicAuth?.value)];
  const properties: Record<string, string> = {};
  const sources: Record<string, string> = {};
  for (const s of settings) {
    const rejected = librdkafkaRejects(s.key, s.value);
    if (rejected !== undefined) throw new ConfigError(`${s.source}: ${redact(rejected, secrets)}`);
    properties[s.key] = s.value;
    sources[s.key] = s.source;
  }
  return { properties, sources, secrets, warnings, registry };
}

/** librdkafka settings that exactly-once delivery sets itself, with the value it needs. */
const EXACTLY_ONCE_NEEDS: Readonly<Record<string, string | undefined>> = {
  'enable.idempotence': 'true',
  'enable.auto.commit': 'false',
  'isolation.level': 'read_committed',
  'transactional.id': undefined,
};

function checkExactlyOnceProperties(resolved: ResolvedKafkaProperties): void {
  for (const [key, needed] of Object.entries(EXACTLY_ONCE_NEEDS)) {
    const given = resolved.properties[key];
    if (given === undefined || given === needed) continue;
    // A flag or variable is named as -X, the way it is documented; a file by its line.
    const source = resolved.sources[key];
    const where = source.startsWith('-') || source === 'KAFKA_PROPERTIES' ? '-X ' : `${source}: `;
    throw new ConfigError(needed === undefined
      ? `${where}${key} cannot be set with --guarantee exactly-once: it is derived from --group-id and --instance-id`
      : `${where}${key}=${given} cannot be used with --guarantee exactly-once, which needs ${key}=${needed}`);
  }
}

/**
 * Checks the input settings against each other; `framingGiven`: --input-framing was set, not defaulted.
 * --schema-registry turns framing on, which is written into the (still unfrozen) config.
 */
function checkInputSettings(config: ProcessorConfig, framingGiven: boolean): void {
  if (config.allowMissingFeatures && config.inputFormat !== 'json') {
    throw new ConfigError('--allow-missing-features applies to --input-format json only (protobuf requests carry NaN for a missing feature)');
  }
  if (config.schemaRegistryBasicAuth !== undefined && config.schemaRegistryUrl === undefined) {
    throw new ConfigError('--schema-registry-basic-auth needs --schema-registry');
  }
  if (config.schemaRegistryBasicAuth !== undefined && !config.schemaRegistryBasicAuth.includes(':')) {
    throw new ConfigError("invalid --schema-registry-basic-auth: expected user:password");
  }
  if (config.outputFraming === 'confluent') {
    if (config.schemaRegistryUrl === undefined) throw new ConfigError('--output-framing confluent needs --schema-registry');
    if (config.outputFormat !== 'protobuf') {
      throw new ConfigError(`--output-framing confluent frames ScoredRecord protobuf: it cannot go with --output-format ${config.outputFormat}`);
    }
  }
  if (config.schemaRegistryUrl === undefined) return;
  let url: URL;
  try {
    url = new URL(config.schemaRegistryUrl);
  } catch {
    throw new ConfigError(`invalid --schema-registry '${config.schemaRegistryUrl}': expected an http:// or https:// URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`invalid --schema-registry '${config.schemaRegistryUrl}': expected an http:// or https:// URL`);
  }
  if (config.inputFormat !== 'protobuf') {
    throw new ConfigError('--schema-registry checks protobuf schemas: it needs --input-format protobuf (use --input-framing confluent for framed JSON)');
  }
  if (framingGiven && config.inputFraming === 'none') {
    throw new ConfigError('--schema-registry reads framed values: it cannot go with --input-framing none');
  }
  (config as { inputFraming: InputFraming }).inputFraming = 'confluent';
}

/**
 * The settings the native data path does not implement, each refused by name: it does the node path's
 * core (at-least-once, protobuf in, `float` out) at half the CPU, and nothing around it.
 */
function checkNativeDataPath(config: ProcessorConfig): void {
  const refuse = (what: string): never => {
    throw new ConfigError(`--data-path native does not support ${what}; use --data-path node`);
  };
  if (config.guarantee !== 'at-least-once') refuse(`--guarantee ${config.guarantee} (at-least-once only)`);
  if (config.outputFormat !== 'float') refuse(`--output-format ${config.outputFormat} (it writes --output-format float only)`);
  if (config.inputFormat !== 'protobuf') refuse(`--input-format ${config.inputFormat} (protobuf only)`);
  if (config.inputFraming !== 'none') refuse(`--input-framing ${config.inputFraming} or --schema-registry`);
  if (config.outputFraming !== 'none') refuse(`--output-framing ${config.outputFraming}`);
  if (config.shadowModelPath !== undefined) refuse('--shadow-model');
  if (config.explain !== 'none') refuse(`--explain ${config.explain}`);
  if (config.provenanceHeaders) refuse('--provenance-headers');
  if (config.watchModel) refuse('--watch-model (no model reload)');
  if (config.enableLifecycle) refuse('--enable-lifecycle (no model reload)');
  if (config.maxAlertRateRatio !== undefined) refuse('--max-alert-rate-ratio (no model reload)');
  if (config.batchWaitMs !== 0) refuse('--batch-wait-ms (batches are what is fetched)');
  if (config.createTopics) refuse('--create-topics');
}

/**
 * Parses flags (`argv` without node and the script) and environment variables into a configuration.
 * Throws ConfigError naming the setting at the first one that is unknown or invalid.
 */
export function parseConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParseResult {
  const values: Record<string, unknown> = {};
  const kafkaSettings: KafkaPropertySetting[] = [];
  const byFlag = new Map(OPTIONS.map((o) => [o.flag, o]));

  for (const o of OPTIONS) {
    const raw = env[o.env];
    if (raw !== undefined && raw !== '') values[o.key] = parseValue(o, raw, `${o.env}`);
  }
  if (env.KAFKA_PROPERTIES) {
    for (const pair of env.KAFKA_PROPERTIES.split(',')) {
      if (pair.trim()) kafkaSettings.push({ ...parseKafkaProperty(pair.trim(), 'KAFKA_PROPERTIES entry'), source: 'KAFKA_PROPERTIES' });
    }
  }

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') return { kind: 'help' };
    if (arg === '-V' || arg === '--version') return { kind: 'version' };
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    const takeValue = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined) throw new ConfigError(`missing value for ${name}`);
      i++;
      return next;
    };
    if (name === '-X' || name === '--kafka-property') {
      kafkaSettings.push(parseKafkaProperty(takeValue(), name));
      continue;
    }
    const opt = byFlag.get(name);
    if (!opt) throw new ConfigError(`unknown option '${arg}' (see --help)`);
    values[opt.key] = opt.kind === 'bool' && inline === undefined ? true : parseValue(opt, takeValue(), name);
  }

  const framingGiven = values.inputFraming !== undefined;
  for (const o of OPTIONS) {
    if (values[o.key] === undefined && o.def !== undefined) values[o.key] = parseValue(o, o.def, o.flag);
  }
  const kafka = resolveKafkaProperties(values.kafkaConfigFile as string | undefined, kafkaSettings);
  // The registry is used when asked for by flag or variable; the file may hold its credentials (a
  // secret's place), which the flag or variable overrides.
  const warnings = [...kafka.warnings];
  if (values.schemaRegistryUrl === undefined && kafka.registry.url !== undefined) {
    warnings.push(`${kafka.registry.url.source}: ${REGISTRY_URL_KEY} is not used by itself: give --schema-registry `
      + '(SCHEMA_REGISTRY_URL) to check input schemas against the registry');
  }
  if (values.schemaRegistryUrl !== undefined) values.schemaRegistryBasicAuth ??= kafka.registry.basicAuth?.value;
  const secrets = [...kafka.secrets, ...registrySecrets(values.schemaRegistryUrl as string | undefined,
    values.schemaRegistryBasicAuth as string | undefined)];
  const config = {
    ...values, kafkaProperties: Object.freeze(kafka.properties), secrets: Object.freeze([...new Set(secrets)]),
  } as unknown as ProcessorConfig;
  if (config.guarantee === 'exactly-once') checkExactlyOnceProperties(kafka);
  const topics = [config.inputTopic, config.suspiciousTopic, config.regularTopic, config.deadLetterTopic];
  if (config.shadowTopic !== undefined) topics.push(config.shadowTopic);
  if (new Set(topics).size !== topics.length) {
    const names = config.shadowTopic !== undefined ? 'regular, dead-letter and shadow' : 'regular and dead-letter';
    throw new ConfigError(`the input, suspicious, ${names} topics must differ: ${topics.join(', ')}`);
  }
  checkInputSettings(config, framingGiven);
  if (config.shadowTopic !== undefined && config.shadowModelPath === undefined) {
    throw new ConfigError('--shadow-topic needs --shadow-model');
  }
  if (config.dataPath === 'native') checkNativeDataPath(config);
  return { kind: 'run', config: Object.freeze(config), warnings };
}
