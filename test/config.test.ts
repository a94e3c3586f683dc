import { ConfigError, helpText, OPTIONS, parseConfig, type ProcessorConfig } from '../lib/config';

function run(argv: string[], env: Record<string, string> = {}): ProcessorConfig {
  const r = parseConfig(argv, env);
  if (r.kind !== 'run') throw new Error(`expected a run configuration, got ${r.kind}`);
  return r.config;
}

function error(argv: string[], env: Record<string, string> = {}): string {
  try {
    parseConfig(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('has the documented defaults', () => {
    const c = run([]);
    expect(c).toEqual({
      brokers: '127.0.0.1:9092', groupId: 'xgb-stream', guarantee: 'at-least-once', instanceId: undefined,
      commitIntervalMs: 100, inputTopic: 'predict-requests',
      suspiciousTopic: 'suspicious-events', regularTopic: 'regular-events', deadLetterTopic: 'predict-requests.dlq',
      modelPath: 'models/default/model.ubj', watchModel: false, enableLifecycle: false, canaryRows: 10000,
      maxAlertRateRatio: undefined, shadowModelPath: undefined, shadowTopic: undefined,
      threshold: undefined, batchSize: 500, batchWaitMs: 0,
      outputFormat: 'protobuf', inputFormat: 'protobuf', allowMissingFeatures: false, inputFraming: 'none',
      schemaRegistryUrl: undefined, schemaRegistryBasicAuth: undefined, outputFraming: 'none', provenanceHeaders: false, explain: 'none', topK: 3, rejectMissing: false,
      maxRecordIdBytes: 4096, maxMessageBytes: 1048588, logLevel: 'warn', metricsPort: 0,
      createTopics: false, createPartitions: 1, createReplicationFactor: 1, shutdownTimeoutMs: 30000, connectTimeoutMs: 30000, nthread: 1, dataPath: 'node',
      kafkaConfigFile: undefined, kafkaProperties: {}, secrets: [],
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads environment variables and lets flags win over them', () => {
    const c = run(['--batch-size', '64', '--threshold=0.25'], { BATCH_SIZE: '8', GROUP_ID: 'fraud', THRESHOLD: '0.9' });
    expect(c.batchSize).toBe(64);
    expect(c.threshold).toBe(0.25);
    expect(c.groupId).toBe('fraud');
  });

  it('passes librdkafka properties through -X and KAFKA_PROPERTIES', () => {
    const c = run(['-X', 'security.protocol=SASL_SSL', '--kafka-property', 'sasl.password=a=b'],
      { KAFKA_PROPERTIES: 'linger.ms=20,security.protocol=PLAINTEXT' });
    expect(c.kafkaProperties).toEqual({ 'linger.ms': '20', 'security.protocol': 'SASL_SSL', 'sasl.password': 'a=b' });
  });

  it('checks the rollout settings', () => {
    expect(run(['--canary-rows', '0', '--max-alert-rate-ratio', '1.5', '--enable-lifecycle', '--watch-model']))
      .toMatchObject({ canaryRows: 0, maxAlertRateRatio: 1.5, enableLifecycle: true, watchModel: true });
    expect(() => run(['--max-alert-rate-ratio', '0.5'])).toThrow(
      "invalid --max-alert-rate-ratio '0.5': expected a number from 1 to inf");
    expect(() => run(['--shadow-topic', 'shadow'])).toThrow('--shadow-topic needs --shadow-model');
    expect(() => run(['--shadow-model', 'm.ubj', '--shadow-topic', 'regular-events'])).toThrow(
      'the input, suspicious, regular, dead-letter and shadow topics must differ: '
      + 'predict-requests, suspicious-events, regular-events, predict-requests.dlq, regular-events');
  });

  it('takes boolean flags with and without a value', () => {
    expect(run(['--create-topics']).createTopics).toBe(true);
    expect(run(['--create-topics=false']).createTopics).toBe(false);
    expect(run([], { REJECT_MISSING: 'yes' }).rejectMissing).toBe(true);
  });

  it.each([
    [['--threshold', '1.5'], "invalid --threshold '1.5': expected a number from 0 to 1"],
    [['--threshold', 'abc'], "invalid --threshold 'abc': expected a number from 0 to 1"],
    [['--batch-size', '0'], "invalid --batch-size '0': expected an integer from 1 to 100000"],
    [['--batch-size', '2.5'], "invalid --batch-size '2.5': expected an integer from 1 to 100000"],
    [['--output-format', 'avro'], "invalid --output-format 'avro': expected one of protobuf, json, float"],
    [['--explain', 'shap'], "invalid --explain 'shap': expected one of none, approx, exact"],
    [['--bogus'], "unknown option '--bogus' (see --help)"],
    [['--model'], 'missing value for --model'],
    [['-X', 'linger.ms'], "invalid -X 'linger.ms': expected key=value"],
    [['--regular-topic', 'predict-requests'],
      'the input, suspicious, regular and dead-letter topics must differ: predict-requests, suspicious-events, predict-requests, predict-requests.dlq'],
  ])('rejects %j with a message naming the setting', (argv, message) => {
    expect(error(argv)).toBe(message);
  });

  it('checks the input settings against each other', () => {
    expect(run(['--input-format', 'json', '--allow-missing-features'])).toMatchObject(
      { inputFormat: 'json', allowMissingFeatures: true, inputFraming: 'none' });
    expect(run([], { SCHEMA_REGISTRY_URL: 'http://registry:8081', SCHEMA_REGISTRY_BASIC_AUTH: 'svc:pw' })).toMatchObject(
      { inputFraming: 'confluent', schemaRegistryUrl: 'http://registry:8081', schemaRegistryBasicAuth: 'svc:pw' });
    expect(run(['--input-format', 'json', '--input-framing', 'confluent']).inputFraming).toBe('confluent');
    expect(error(['--allow-missing-features'])).toBe(
      '--allow-missing-features applies to --input-format json only (protobuf requests carry NaN for a missing feature)');
    expect(error(['--schema-registry', 'registry:8081'])).toBe(
      "invalid --schema-registry 'registry:8081': expected an http:// or https:// URL");
    expect(error(['--schema-registry', 'http://r:8081', '--input-format', 'json'])).toBe(
      '--schema-registry checks protobuf schemas: it needs --input-format protobuf (use --input-framing confluent for framed JSON)');
    expect(error(['--schema-registry', 'http://r:8081', '--input-framing', 'none'])).toBe(
      '--schema-registry reads framed values: it cannot go with --input-framing none');
    expect(error(['--schema-registry-basic-auth', 'a:b'])).toBe('--schema-registry-basic-auth needs --schema-registry');
    expect(error(['--schema-registry', 'http://r:8081', '--schema-registry-basic-auth', 'ab'])).toBe(
      'invalid --schema-registry-basic-auth: expected user:password');
    expect(error(['--input-format', 'avro'])).toBe("invalid --input-format 'avro': expected one of protobuf, json");
    expect(error(['--output-framing', 'confluent'])).toBe('--output-framing confluent needs --schema-registry');
    expect(error(['--output-framing', 'confluent', '--schema-registry', 'http://r:8081', '--output-format', 'float'])).toBe(
      '--output-framing confluent frames ScoredRecord protobuf: it cannot go with --output-format float');
  });

  it('names the environment variable of a bad value', () => {
    expect(error([], { METRICS_PORT: '70000' })).toBe("invalid METRICS_PORT '70000': expected an integer from 0 to 65535");
    expect(error([], { LOG_LEVEL: 'loud' })).toBe("invalid LOG_LEVEL 'loud': expected one of error, warn, info, debug");
  });

  it('answers --help and --version', () => {
    expect(parseConfig(['--batch-size', '3', '--help'], {})).toEqual({ kind: 'help' });
    expect(parseConfig(['-V'], {})).toEqual({ kind: 'version' });
  });

  it('documents every option and its environment variable in --help', () => {
    const text = helpText();
    for (const o of OPTIONS) {
      expect(text).toContain(o.flag);
      expect(text).toContain(`[${o.env}]`);
    }
  });
});

describe('librdkafka settings under --guarantee exactly-once', () => {
  it.each([
    ['enable.auto.commit=true', '-X enable.auto.commit=true cannot be used with --guarantee exactly-once, which needs enable.auto.commit=false'],
    ['isolation.level=read_uncommitted',
      '-X isolation.level=read_uncommitted cannot be used with --guarantee exactly-once, which needs isolation.level=read_committed'],
  ])('refuses -X %s, naming the value it needs', (property, message) => {
    expect(error(['--guarantee', 'exactly-once', '-X', property])).toBe(message);
  });

  it('refuses the same settings from KAFKA_PROPERTIES', () => {
    expect(error(['--guarantee', 'exactly-once'], { KAFKA_PROPERTIES: 'linger.ms=5,enable.auto.commit=true' }))
      .toBe('-X enable.auto.commit=true cannot be used with --guarantee exactly-once, which needs enable.auto.commit=false');
  });

  it('accepts them set to what exactly-once needs; under at-least-once the check does not apply', () => {
    expect(run(['--guarantee', 'exactly-once', '-X', 'enable.auto.commit=false', '-X', 'isolation.level=read_committed'])
      .kafkaProperties).toEqual({ 'enable.auto.commit': 'false', 'isolation.level': 'read_committed' });
    expect(run(['-X', 'enable.auto.commit=true', '-X', 'isolation.level=read_uncommitted']).kafkaProperties)
      .toEqual({ 'enable.auto.commit': 'true', 'isolation.level': 'read_uncommitted' });
  });
});
