#!/usr/bin/env node
/**
 * The `xgb-stream` command: parses the configuration, loads the model, starts the processor and the
 * metrics endpoint, stops gracefully on SIGINT or SIGTERM, and reloads the model on SIGHUP.
 */
import * as path from 'node:path';
import { ConfigError, helpText, isSecretProperty, parseConfig, redact } from './config';
import { EXIT, EXIT_GRACE_MS, armExitDeadline } from './exit';
import { KafkaClientMissingError, kafkaClient } from './kafka-client';

/** Secret property values, known once the configuration is parsed: no line this command writes shows them. */
let secrets: readonly string[] = [];

/**
 * Set once the Kafka clients exist: bounds the exit that follows (see lib/exit.ts), with the log
 * line that says so if the bound is reached.
 */
let boundExit: ((status: number) => void) | undefined;

/** Exits with `status`; once the Kafka clients exist, within {@link EXIT_GRACE_MS}. */
function leave(status: number): never {
  try {
    boundExit?.(status);
  } catch (err) {
    say(`exit not bounded: ${(err as Error).message}`);
  }
  process.exit(status);
}

/** Writes one `xgb-stream: ...` line on stderr, secrets redacted. */
function say(message: string): void {
  process.stderr.write(redact(`xgb-stream: ${message}\n`, secrets));
}

async function main(): Promise<number> {
  // Consume calls, flushes and batch predictions all run on libuv's pool; its default of 4 threads
  // is sized before anything uses it, so this must come first.
  process.env.UV_THREADPOOL_SIZE ??= '8';

  let parsed;
  try {
    parsed = parseConfig(process.argv.slice(2), process.env);
  } catch (err) {
    // Checking the librdkafka properties needs node-rdkafka: without it, the same exit as below.
    if (err instanceof ConfigError || err instanceof KafkaClientMissingError) {
      say(err.message);
      return EXIT.usage;
    }
    throw err;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(helpText() + '\n');
    return EXIT.ok;
  }
  if (parsed.kind === 'version') {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    process.stdout.write(`xgb-stream ${require('../package.json').version}\n`);
    return EXIT.ok;
  }
  const config = parsed.config;
  secrets = config.secrets;
  try {
    kafkaClient();
  } catch (err) {
    if (err instanceof KafkaClientMissingError) {
      say(err.message);
      return EXIT.usage;
    }
    throw err;
  }

  // Loaded here rather than at the top so that --help works without the native addon built.
  const { Classifier } = await import('./classifier');
  const { createLogger } = await import('./log');
  const { ProcessorMetrics } = await import('./metrics');
  const { StreamProcessor } = await import('./processor/processor');
  const { NativeDataPathProcessor } = await import('./processor/native-path');
  const { startMetricsServer } = await import('./metrics-server');

  const log = createLogger(config.logLevel, undefined, config.secrets);
  for (const warning of parsed.warnings) log.warn(warning);
  // What the file and the flags came to, for checking a deployment; secrets by name, and the logger
  // redacts their values wherever else they turn up.
  log.info('librdkafka properties', {
    file: config.kafkaConfigFile,
    properties: Object.fromEntries(Object.entries(config.kafkaProperties)
      .map(([key, value]) => [key, isSecretProperty(key) ? '[redacted]' : value])),
  });
  let classifier;
  try {
    classifier = Classifier.load(path.resolve(config.modelPath), { nthread: config.nthread });
  } catch (err) {
    say(`invalid --model: ${(err as Error).message}`);
    return EXIT.usage;
  }

  let shadow;
  if (config.shadowModelPath !== undefined) {
    try {
      shadow = Classifier.load(path.resolve(config.shadowModelPath), { nthread: config.nthread });
    } catch (err) {
      say(`invalid --shadow-model: ${(err as Error).message}`);
      classifier.close();
      return EXIT.usage;
    }
  }

  const metrics = new ProcessorMetrics();
  // The bench's floor: Kafka through node-rdkafka without scoring (lib/processor/score/passthrough.ts).
  const passthrough = process.env.XGB_STREAM_PASSTHROUGH === '1';
  if (passthrough) log.warn('passthrough mode: records are not scored (XGB_STREAM_PASSTHROUGH=1)');
  let processor: InstanceType<typeof StreamProcessor> | InstanceType<typeof NativeDataPathProcessor>;
  if (config.dataPath === 'native') {
    if (passthrough) {
      say('--data-path native does not support passthrough mode (XGB_STREAM_PASSTHROUGH=1)');
      classifier.close();
      return EXIT.usage;
    }
    try {
      processor = new NativeDataPathProcessor({ config, classifier, logger: log, metrics });
    } catch (err) {
      say(`--data-path native: ${(err as Error).message}`);
      classifier.close();
      return EXIT.usage;
    }
  } else {
    const scorer = passthrough ? new (await import('./processor/score/passthrough')).PassthroughScorer(classifier) : classifier;
    try {
      processor = new StreamProcessor({ config, classifier: scorer, shadow, logger: log, metrics });
    } catch (err) {
      say((err as Error).message);
      return EXIT.usage;
    }
  }
  const streamProcessor = processor instanceof StreamProcessor ? processor : undefined;
  boundExit = (status) => {
    let line = '';
    createLogger(config.logLevel, (l) => { line = l; }, config.secrets).warn(
      'exiting without waiting for a Kafka client call still blocked on a thread of libuv\'s pool',
      { status, waitedMs: EXIT_GRACE_MS });
    armExitDeadline(status, line);
  };

  let metricsServer;
  if (config.metricsPort > 0) {
    metricsServer = (await startMetricsServer(config.metricsPort, metrics, processor, {
      reload: config.enableLifecycle && streamProcessor ? () => streamProcessor.reloadModel('POST /-/reload') : undefined,
    })).server;
  }

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      log.error('second signal: exiting without finishing', { signal });
      leave(EXIT.interrupted);
    }
    log.info('signal received: stopping', { signal });
    void processor.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // SIGHUP reloads the model (through the gate) instead of ending the process.
  process.on('SIGHUP', () => {
    if (streamProcessor) void streamProcessor.reloadModel('SIGHUP');
    else log.warn('SIGHUP ignored: --data-path native does not reload the model');
  });

  try {
    await processor.start();
  } catch (err) {
    say((err as Error).message);
    metricsServer?.close();
    classifier.close();
    // A setting the cluster cannot honour is a usage error, like a bad flag.
    return err instanceof ConfigError ? EXIT.usage : EXIT.failure;
  }
  // One human line for someone watching a terminal; logs collected from a pipe stay pure JSON and quiet.
  if (process.stderr.isTTY) {
    say(`scoring ${config.inputTopic} on ${config.brokers} `
      + `(group ${config.groupId}, threshold ${processor.threshold}, model ${processor.modelVersion})`);
  }
  const code = await processor.finished;
  metricsServer?.close();
  classifier.close();
  return code;
}

main().then(
  (code) => leave(code),
  (err) => {
    say(`${(err as Error).stack ?? err}`);
    leave(EXIT.failure);
  },
);
