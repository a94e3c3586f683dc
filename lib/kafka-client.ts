/**
 * node-rdkafka, loaded on first use. It is an optional dependency: a project that wants only the
 * Classifier installs xgb-stream with `--omit=optional` and never builds librdkafka, so nothing on
 * the Classifier's import path may load it, and the commands that need it say how to get it.
 */
import type * as NodeRdkafka from 'node-rdkafka';

/** The version this release is built and tested against (package.json's optionalDependencies). */
export const KAFKA_CLIENT_VERSION = '3.6.1';

/** node-rdkafka is not installed: the message says how to install it, on one line. */
export class KafkaClientMissingError extends Error {
  override name = 'KafkaClientMissingError';
  constructor() {
    super(`node-rdkafka is not installed (xgb-stream was installed without optional dependencies); `
      + `the Kafka commands need it: npm install node-rdkafka@${KAFKA_CLIENT_VERSION}`);
  }
}

let loaded: typeof NodeRdkafka | undefined;

/** node-rdkafka's exports; throws {@link KafkaClientMissingError} when the package is absent. */
export function kafkaClient(): typeof NodeRdkafka {
  if (loaded) return loaded;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    loaded = require('node-rdkafka') as typeof NodeRdkafka;
  } catch (err) {
    // Only the package itself missing; a broken build of it (a missing .node file) keeps its own error.
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'MODULE_NOT_FOUND' && /Cannot find module 'node-rdkafka'/.test(e.message)) {
      throw new KafkaClientMissingError();
    }
    throw err;
  }
  return loaded;
}
