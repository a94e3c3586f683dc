/**
 * Start-up check of the four topics. A missing topic stops the processor with a message naming it,
 * unless `--create-topics` asks for it to be created.
 */
import { AdminClient, CODES, type Metadata, type Producer } from 'node-rdkafka';
import type { ProcessorConfig } from '../config';
import type { Logger } from '../log';

const TOPIC_ALREADY_EXISTS = CODES.ERRORS.ERR_TOPIC_ALREADY_EXISTS;

function metadata(producer: Producer): Promise<Metadata> {
  return new Promise((resolve, reject) => {
    producer.getMetadata({ allTopics: true, timeout: 15_000 }, (err, md) => {
      if (err) reject(new Error(`could not read the cluster's topics: ${err.message}`));
      else resolve(md);
    });
  });
}

/** Verifies that the input, output and dead-letter topics exist, creating them when configured to. */
export async function ensureTopics(producer: Producer, config: ProcessorConfig, log: Logger): Promise<void> {
  const wanted = [config.inputTopic, config.suspiciousTopic, config.regularTopic, config.deadLetterTopic];
  const existing = new Set((await metadata(producer)).topics.map((t) => t.name));
  const missing = wanted.filter((t) => !existing.has(t));
  if (missing.length === 0) return;
  if (!config.createTopics) {
    const noun = missing.length === 1 ? 'topic' : 'topics';
    throw new Error(`${noun} ${missing.map((t) => `'${t}'`).join(', ')} not found on ${config.brokers}; `
      + 'create them or pass --create-topics');
  }
  const admin = AdminClient.create({ 'bootstrap.servers': config.brokers, 'client.id': 'xgb-stream-admin',
    ...config.kafkaProperties });
  try {
    for (const topic of missing) {
      await new Promise<void>((resolve, reject) => {
        admin.createTopic({
          topic, num_partitions: config.createPartitions, replication_factor: config.createReplicationFactor,
        }, 30_000, (err) => {
          if (err && err.code !== TOPIC_ALREADY_EXISTS) reject(new Error(`could not create topic '${topic}': ${err.message}`));
          else resolve();
        });
      });
      log.info('topic created', { topic, partitions: config.createPartitions });
    }
  } finally {
    admin.disconnect();
  }
}
