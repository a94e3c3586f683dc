/**
 * Reads a topic from chosen offsets up to its end as it was when the read started: a dead-letter
 * topic keeps growing while the processor runs (and, after a replay, with the records that fail
 * again), so a tool that read to the live end might never finish.
 */
import type { KafkaConsumer, Message } from 'node-rdkafka';
import { kafkaClient } from '../kafka-client';
import { splitKafkaProperties } from '../processor/kafka-properties';

/** One partition's range to read: [start, end). */
export interface PartitionRange {
  readonly partition: number;
  readonly start: number;
  readonly end: number;
}

/** A consumer of one topic, in the given group, that never commits by itself. */
export async function connectConsumer(brokers: string, groupId: string,
  kafkaProperties: Readonly<Record<string, string>>): Promise<KafkaConsumer> {
  const { global, topic } = splitKafkaProperties(kafkaProperties);
  const consumer = new (kafkaClient().KafkaConsumer)({
    'bootstrap.servers': brokers, 'group.id': groupId, 'enable.auto.commit': false,
    'enable.auto.offset.store': false, 'enable.partition.eof': false, ...global,
  }, { 'auto.offset.reset': 'earliest', ...topic });
  await new Promise<void>((resolve, reject) => consumer.connect({ timeout: 30_000 }, (err) => (err
    ? reject(new Error(`could not connect to ${brokers}: ${err.message}`)) : resolve())));
  return consumer;
}

export async function disconnect(consumer: KafkaConsumer): Promise<void> {
  await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
}

/**
 * Each partition's range from `from` (the group's committed offset, or the start of the partition)
 * to the end as it is now. Throws when the topic does not exist.
 */
export async function partitionRanges(consumer: KafkaConsumer, topic: string, from: 'beginning' | 'committed'):
  Promise<PartitionRange[]> {
  const metadata = await new Promise<{ topics: Array<{ name: string; partitions: Array<{ id: number }> }> }>(
    (resolve, reject) => consumer.getMetadata({ topic, timeout: 30_000 }, (err, m) => (err ? reject(err) : resolve(m))));
  const found = metadata.topics.find((t) => t.name === topic);
  if (!found || found.partitions.length === 0) throw new Error(`topic ${topic} does not exist`);
  const ids = found.partitions.map((p) => p.id).sort((a, b) => a - b);
  const committed = from === 'committed'
    ? await new Promise<Array<{ partition: number; offset?: number }>>((resolve, reject) => consumer.committed(
      ids.map((partition) => ({ topic, partition })), 30_000, (err, tp) => (err ? reject(err) : resolve(tp))))
    : [];
  const ranges: PartitionRange[] = [];
  for (const partition of ids) {
    const w = await new Promise<{ lowOffset: number; highOffset: number }>((resolve, reject) =>
      consumer.queryWatermarkOffsets(topic, partition, 30_000, (err, o) => (err ? reject(err) : resolve(o))));
    const done = committed.find((c) => c.partition === partition)?.offset;
    // A committed offset below the low watermark points at deleted records: start at what is left.
    const start = done !== undefined && done >= 0 ? Math.max(done, w.lowOffset) : w.lowOffset;
    ranges.push({ partition, start, end: w.highOffset });
  }
  return ranges;
}

/**
 * Reads every record of `ranges`, handing them over in batches; `onBatch` returning false stops the
 * read early. Records past a partition's end (written since the read started) are left alone.
 */
export async function readRanges(consumer: KafkaConsumer, topic: string, ranges: readonly PartitionRange[],
  onBatch: (batch: Message[]) => Promise<boolean>): Promise<void> {
  const left = new Map(ranges.filter((r) => r.start < r.end).map((r) => [r.partition, r.end]));
  if (left.size === 0) return;
  consumer.assign(ranges.filter((r) => left.has(r.partition)).map((r) => ({ topic, partition: r.partition, offset: r.start })));
  consumer.setDefaultConsumeTimeout(200);
  let idleSince = Date.now();
  try {
    while (left.size > 0) {
      const got = await new Promise<Message[]>((resolve, reject) =>
        consumer.consume(500, (err, m) => (err ? reject(err) : resolve(m))));
      const batch: Message[] = [];
      for (const m of got) {
        const end = left.get(m.partition);
        if (end === undefined || m.offset >= end) continue;
        batch.push(m);
        if (m.offset >= end - 1) left.delete(m.partition);
      }
      if (got.length > 0) idleSince = Date.now();
      // Transaction markers and compacted-away records leave offsets below the end that no record
      // ever takes: a partition that yields nothing for a while has been read to its end.
      else if (Date.now() - idleSince > 10_000) {
        for (const r of ranges) {
          if (!left.has(r.partition)) continue;
          const pos = consumer.position([{ topic, partition: r.partition }])[0]?.offset;
          if (pos !== undefined && pos >= r.end - 1) left.delete(r.partition);
        }
        if (left.size > 0 && Date.now() - idleSince > 60_000) {
          throw new Error(`no record of ${topic} partitions ${[...left.keys()].join(', ')} for 60 s before their end`);
        }
      }
      if (batch.length > 0 && !(await onBatch(batch))) return;
    }
  } finally {
    consumer.unassign();
  }
}
