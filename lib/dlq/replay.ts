/**
 * `xgb-stream-dlq replay`: sends dead letters back to be scored once their cause is fixed. Reads the
 * dead-letter topic from where its own consumer group left off up to the end as it was, picks the
 * records that match (reason, time), produces each with its original key, value and headers to the
 * topic it came from (or `--to`), and commits the group's offsets only over records whose replay the
 * broker acknowledged: an interrupted replay resumes where it stopped, and loses nothing.
 */
import type { LibrdKafkaError, Message, Producer } from 'node-rdkafka';
import { kafkaClient } from '../kafka-client';
import { splitKafkaProperties } from '../processor/kafka-properties';
import { readDeadLetter, replayHeaders, type DeadLetter } from './dead-letter';
import { connectConsumer, disconnect, partitionRanges, readRanges } from './topic-reader';

export interface ReplayDeadLettersOptions {
  readonly brokers: string;
  /** The dead-letter topic. */
  readonly topic: string;
  /** Where to send the records; undefined: each to its `xgb.source.topic`, on its source partition. */
  readonly to: string | undefined;
  /** Only records with one of these reasons; undefined: any. */
  readonly reasons: ReadonlySet<string> | undefined;
  /** Only records with a timestamp at or after / before these, ms since the epoch. */
  readonly since: number | undefined;
  readonly until: number | undefined;
  /** Send at most this many. */
  readonly max: number | undefined;
  /** Leave a record that has been replayed this many times where it is. */
  readonly maxReplays: number;
  /** Count what would be sent, send nothing, commit nothing. */
  readonly dryRun: boolean;
  readonly groupId: string;
  readonly kafkaProperties: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: DlqReplayProgress) => void;
}

/** Counts of a replay; `read` = replayed + each kind of skip. */
export interface DlqReplayProgress {
  /** Records of the topic read (from the group's position to the end as it was). */
  readonly read: number;
  /** Records to read in all. */
  readonly total: number;
  /** Sent back (or, with --dry-run, that would be). */
  readonly replayed: number;
  /** Left alone: another reason, or outside the time range. */
  readonly filteredOut: number;
  /** Left alone: already replayed --max-replays times. */
  readonly overMaxReplays: number;
  /** Left alone: the value was cut to fit the dead-letter topic, so it is not the input. */
  readonly truncated: number;
  /** Left alone: no --to and no xgb.source.topic header to send it back to. */
  readonly noTarget: number;
  /** Replayed records by the reason they had. */
  readonly byReason: Readonly<Record<string, number>>;
}

/** A delivery the broker refused: the replay stops, committing nothing past the record. */
export class ReplayDeliveryError extends Error {
  override name = 'ReplayDeliveryError';
}

type Verdict = 'replay' | 'filteredOut' | 'overMaxReplays' | 'truncated' | 'noTarget';

function verdictOf(d: DeadLetter, o: ReplayDeadLettersOptions): Verdict {
  if (o.reasons !== undefined && (d.reason === undefined || !o.reasons.has(d.reason))) return 'filteredOut';
  const t = d.message.timestamp;
  if ((o.since !== undefined || o.until !== undefined) && (t === undefined || t < 0)) return 'filteredOut';
  if (o.since !== undefined && t! < o.since) return 'filteredOut';
  if (o.until !== undefined && t! >= o.until) return 'filteredOut';
  if (d.replayCount >= o.maxReplays) return 'overMaxReplays';
  if (d.truncated) return 'truncated';
  if (o.to === undefined && d.sourceTopic === undefined) return 'noTarget';
  return 'replay';
}

async function connectProducer(o: ReplayDeadLettersOptions): Promise<Producer> {
  const { global, topic } = splitKafkaProperties(o.kafkaProperties);
  const producer = new (kafkaClient().Producer)({
    'bootstrap.servers': o.brokers, 'client.id': 'xgb-stream-dlq', dr_cb: true, 'linger.ms': 5,
    // Idempotent: the producer's own retries neither duplicate nor reorder a partition's replays.
    'enable.idempotence': true, ...global,
  }, { 'message.timeout.ms': 30_000, ...topic });
  await new Promise<void>((resolve, reject) => producer.connect({ timeout: 30_000 }, (err) => (err
    ? reject(new Error(`could not connect to ${o.brokers}: ${err.message}`)) : resolve())));
  producer.setPollInterval(10);
  return producer;
}

/** Produces `records` and resolves once each has a delivery report; rejects on the first failure. */
async function produceAll(producer: Producer, records: ReadonlyArray<{ topic: string; partition: number | null; d: DeadLetter }>): Promise<void> {
  if (records.length === 0) return;
  let pending = records.length;
  let failure: Error | undefined;
  const done = new Promise<void>((resolve) => {
    const onReport = (err: LibrdKafkaError | null, report: { topic: string; partition: number }): void => {
      if (err) failure ??= new ReplayDeliveryError(`replay to ${report.topic} failed: ${err.message}`);
      if (--pending === 0) {
        producer.removeListener('delivery-report', onReport);
        resolve();
      }
    };
    producer.on('delivery-report', onReport);
  });
  for (const r of records) {
    const m = r.d.message;
    for (;;) {
      try {
        producer.produce(r.topic, r.partition, m.value, m.key ?? undefined, Date.now(), undefined, replayHeaders(r.d));
        break;
      } catch (err) {
        // -184: the producer's queue is full; let delivery reports drain it.
        if ((err as LibrdKafkaError).code !== -184) throw err;
        await new Promise((res) => setTimeout(res, 5));
      }
    }
  }
  await done;
  if (failure) throw failure;
}

/** Replays the matching dead letters; see the module comment. Resolves with the final counts. */
export async function replayDeadLetters(o: ReplayDeadLettersOptions): Promise<DlqReplayProgress> {
  const counts = { read: 0, total: 0, replayed: 0, filteredOut: 0, overMaxReplays: 0, truncated: 0, noTarget: 0 };
  const byReason: Record<string, number> = {};
  const progress = (): DlqReplayProgress => ({ ...counts, byReason: { ...byReason } });
  const consumer = await connectConsumer(o.brokers, o.groupId, o.kafkaProperties);
  let producer: Producer | undefined;
  try {
    if (!o.dryRun) producer = await connectProducer(o);
    const ranges = await partitionRanges(consumer, o.topic, 'committed');
    counts.total = ranges.reduce((n, r) => n + Math.max(0, r.end - r.start), 0);
    await readRanges(consumer, o.topic, ranges, async (batch: Message[]) => {
      const out: Array<{ topic: string; partition: number | null; d: DeadLetter }> = [];
      const next = new Map<number, number>();
      let stop = false;
      for (const m of batch) {
        if (o.signal?.aborted || (o.max !== undefined && counts.replayed >= o.max)) {
          stop = true;
          break;
        }
        const d = readDeadLetter(m);
        const verdict = verdictOf(d, o);
        counts.read++;
        next.set(m.partition, m.offset + 1);
        if (verdict !== 'replay') {
          counts[verdict]++;
          continue;
        }
        counts.replayed++;
        byReason[d.reason ?? '(none)'] = (byReason[d.reason ?? '(none)'] ?? 0) + 1;
        // Back to the partition it was read from keeps its order among that partition's records; a
        // topic of the user's choice gets the partitioner's pick by key instead.
        out.push(o.to !== undefined
          ? { topic: o.to, partition: null, d }
          : { topic: d.sourceTopic!, partition: d.sourcePartition ?? null, d });
      }
      if (!o.dryRun) {
        await produceAll(producer!, out);
        if (next.size > 0) {
          consumer.commitSync([...next].map(([partition, offset]) => ({ topic: o.topic, partition, offset })));
        }
      }
      o.onProgress?.(progress());
      return !stop && !(o.max !== undefined && counts.replayed >= o.max) && !o.signal?.aborted;
    });
  } finally {
    if (producer) {
      producer.setPollInterval(0);
      await new Promise<void>((resolve) => producer!.disconnect(5_000, () => resolve()));
    }
    await disconnect(consumer);
  }
  return progress();
}
