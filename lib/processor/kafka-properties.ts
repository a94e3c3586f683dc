/**
 * Splits the `-X` properties between librdkafka's global and topic configurations.
 *
 * node-rdkafka installs the topic configuration it is given (its second constructor argument) as the
 * client's `default_topic_conf`, which replaces every topic-level property set on the global
 * configuration. A topic-level `-X message.timeout.ms=2000` or `-X auto.offset.reset=latest` would
 * otherwise be accepted and silently ignored.
 */

/**
 * librdkafka's topic-level properties that have no global namesake (CONFIGURATION.md, "Topic
 * configuration properties"). Properties in both tables, such as compression.type, stay global.
 */
const TOPIC_ONLY = new Set([
  'acks', 'request.required.acks', 'request.timeout.ms', 'message.timeout.ms', 'delivery.timeout.ms',
  'queuing.strategy', 'produce.offset.report', 'partitioner', 'partitioner_cb', 'msg_order_cmp',
  'compression.level', 'auto.commit.enable', 'auto.offset.reset', 'offset.store.path',
  'offset.store.sync.interval.ms', 'consume.callback.max.messages',
]);

/** The properties split into those for the global configuration and those for the topic one. */
export function splitKafkaProperties(properties: Readonly<Record<string, string>>):
  { global: Record<string, string>; topic: Record<string, string> } {
  const global: Record<string, string> = {};
  const topic: Record<string, string> = {};
  for (const [key, value] of Object.entries(properties)) {
    (TOPIC_ONLY.has(key) ? topic : global)[key] = value;
  }
  return { global, topic };
}
