/**
 * The processor binary against the real broker: routing and scores, dead letters, output formats,
 * and the delivery guarantee across SIGTERM, SIGKILL and a second instance in the group.
 */
import type { Message } from 'node-rdkafka';
import { Classifier } from '../lib/classifier';
import { decodeScoredRecord, encodePredictRequest, encodeScoredRecord, scoredRecordToJson } from '../lib/codec';
import {
  Collector, ProcessorProcess, committedOffsets, createTopicSet, header, outputTopics, produceAll, readToEnd,
  topicFlags, uniqueName, type OutgoingRecord, type TopicSet,
} from './helpers/kafka';
import { until } from './helpers/in-process';
import { badRequests, expectDeadLetterCopies, interleave } from './helpers/bad-inputs';
import { MODEL_PATH, loadTestVectors, row, type TestVectors, loadReference } from './helpers/fixtures';

let vectors: TestVectors;
let classifier: Classifier;
let threshold: number;
let modelVersion: string;

beforeAll(() => {
  vectors = loadTestVectors();
  classifier = loadReference();
  threshold = Number(classifier.attribute('threshold') ?? '0.5');
  modelVersion = classifier.attribute('model_version')!;
});
afterAll(() => classifier.close());

/**
 * Event times of the test records: recent, because the broker deletes records whose timestamps are
 * older than its retention, which would make a restarted consumer's committed offset out of range.
 */
const EVENT_TIME = Date.now() - 60_000;

/** `n` valid requests built from the test vectors, spread over `partitions` partitions. */
function requests(n: number, prefix: string, partitions = 1): OutgoingRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    key: `${prefix}-${i}`,
    value: encodePredictRequest({ recordID: `${prefix}-${i}`, featuresVector: row(vectors, i) }),
    partition: i % partitions,
    timestamp: EVENT_TIME + i,
    headers: [{ 'trace-id': `t${i}` }],
  }));
}

function recordIndex(recordID: string): number {
  return Number(recordID.slice(recordID.lastIndexOf('-') + 1));
}

/** Reads a scored output (protobuf format), with its topic. */
function scored(m: Message) {
  return { topic: m.topic, record: decodeScoredRecord(m.value!) };
}

/** Counts how often each recordID appears among the outputs. */
function countIds(messages: readonly Message[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of messages) {
    const id = m.key!.toString();
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

async function withProcessor<T>(args: string[], fn: (p: ProcessorProcess) => Promise<T>): Promise<T> {
  const p = ProcessorProcess.start(['--log-level', 'info', ...args]);
  try {
    return await fn(p);
  } finally {
    if (p.child.exitCode === null && p.child.signalCode === null) await p.kill('SIGTERM');
  }
}

describe('stream processor on a real broker', () => {
  it('scores 5,000 records exactly once each into the topic their score says, with their provenance', async () => {
    const n = 5000;
    const topics = await createTopicSet('route', 2);
    await produceAll(topics.input, requests(n, 'r', 2));
    const progress = await Collector.start(outputTopics(topics));
    try {
      await withProcessor([...topicFlags(topics), '--batch-size', '256'], async (p) => {
        await progress.waitFor(n, 90_000);
        expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
      });
      const all = await readToEnd(outputTopics(topics));
      expect(all.length).toBe(n);
      expect(all.filter((m) => m.topic === topics.deadLetter)).toHaveLength(0);
      const counts = countIds(all);
      expect(counts.size).toBe(n);
      expect([...counts.values()].every((c) => c === 1)).toBe(true);

      let suspicious = 0;
      for (const m of all) {
        const { topic, record } = scored(m);
        const i = recordIndex(record.recordID);
        const expected = classifier.predict(row(vectors, i));
        expect(record.score).toBe(expected);
        expect(record.suspicious).toBe(expected >= threshold);
        expect(topic).toBe(expected >= threshold ? topics.suspicious : topics.regular);
        if (record.suspicious) suspicious++;
        expect(record.modelVersion).toBe(modelVersion);
        expect(record.eventTimestampMs).toBe(EVENT_TIME + i);
        expect(record.scoredTimestampMs).toBeGreaterThanOrEqual(record.eventTimestampMs);
        expect(record.sourceTopic).toBe(topics.input);
        expect(record.sourcePartition).toBe(i % 2);
        expect(record.sourceOffset).toBe(Math.floor(i / 2));
        // The input's own headers are carried over; the provenance is in the value, so no header of ours.
        expect(m.headers).toEqual([{ 'trace-id': Buffer.from(`t${i}`) }]);
      }
      // The test vectors hold both classes, so both topics must have been used.
      expect(suspicious).toBeGreaterThan(0);
      expect(suspicious).toBeLessThan(n);
      process.stdout.write(`routing: ${suspicious} suspicious, ${n - suspicious} regular of ${n}\n`);
    } finally {
      await progress.stop();
    }
  });

  it('dead-letters every kind of bad input with its reason and scores the valid records around it', async () => {
    const topics = await createTopicSet('bad');
    const bad = badRequests(row(vectors, 0));
    const good = requests(bad.length, 'g');
    const input = interleave(good, bad);
    await produceAll(topics.input, input);
    const progress = await Collector.start(outputTopics(topics));
    try {
      await withProcessor(topicFlags(topics), async (p) => {
        await progress.waitFor(good.length + bad.length, 60_000);
        expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
      });
      const all = await readToEnd(outputTopics(topics));
      expect(all).toHaveLength(good.length + bad.length);
      expectDeadLetterCopies(all.filter((m) => m.topic === topics.deadLetter), bad, topics.input);
      const scoredIds = all.filter((m) => m.topic !== topics.deadLetter).map((m) => scored(m).record.recordID).sort();
      expect(scoredIds).toEqual(good.map((g) => g.key as string).sort());
    } finally {
      await progress.stop();
    }
  });

  it('scores NaN as missing by default and dead-letters it with --reject-missing', async () => {
    const withNaN = row(vectors, 0).map((v, i) => (i === 2 ? NaN : v));
    const record = { key: 'nan', value: encodePredictRequest({ recordID: 'nan', featuresVector: withNaN }) };
    for (const reject of [false, true]) {
      const topics = await createTopicSet(reject ? 'nan-reject' : 'nan');
      await produceAll(topics.input, [record]);
      const progress = await Collector.start(outputTopics(topics));
      try {
        await withProcessor([...topicFlags(topics), ...(reject ? ['--reject-missing'] : [])], async (p) => {
          await progress.waitFor(1, 60_000);
          expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
        });
        const all = await readToEnd(outputTopics(topics));
        expect(all).toHaveLength(1);
        const m = all[0];
        if (reject) {
          expect(m.topic).toBe(topics.deadLetter);
          expect(header(m, 'xgb.error.reason')).toBe('missing-feature');
          expect(header(m, 'xgb.error.message')).toBe('feature 2 is NaN (missing)');
        } else {
          expect(scored(m).record.score).toBe(classifier.predict(withNaN));
        }
      } finally {
        await progress.stop();
      }
    }
  });

  describe('output formats', () => {
    const n = 40;
    let topics: TopicSet;
    let sent: OutgoingRecord[];

    async function run(args: string[]): Promise<Message[]> {
      topics = await createTopicSet('fmt');
      sent = requests(n, 'f');
      await produceAll(topics.input, sent);
      const progress = await Collector.start(outputTopics(topics));
      try {
        await withProcessor([...topicFlags(topics), ...args], async (p) => {
          await progress.waitFor(n, 60_000);
          expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
        });
        const all = await readToEnd(outputTopics(topics));
        expect(all).toHaveLength(n);
        return all;
      } finally {
        await progress.stop();
      }
    }

    it('writes a 4-byte big-endian float keyed by recordID, its provenance in one header, with --output-format float', async () => {
      for (const m of await run(['--output-format', 'float'])) {
        const i = recordIndex(m.key!.toString());
        const expected = Buffer.alloc(4);
        expected.writeFloatBE(classifier.predict(row(vectors, i)));
        expect(m.value!.toString('hex')).toBe(expected.toString('hex'));
        expect(m.topic).toBe(expected.readFloatBE() >= threshold ? topics.suspicious : topics.regular);
        expect(m.headers?.map((h) => Object.keys(h)[0])).toEqual(['trace-id', 'xgb.provenance']);
        expect(header(m, 'xgb.provenance')).toBe(`${topics.input}/0/${i} ${modelVersion}`);
      }
    });

    it('writes JSON with top-k exact contributions on suspicious records, byte for byte', async () => {
      let explained = 0;
      for (const m of await run(['--output-format', 'json', '--explain', 'exact', '--top-k', '3', '--provenance-headers'])) {
        const i = recordIndex(m.key!.toString());
        const features = row(vectors, i);
        const score = classifier.predict(features);
        const suspicious = score >= threshold;
        const actual = JSON.parse(m.value!.toString('utf8'));
        const expected = scoredRecordToJson({
          recordID: `f-${i}`, score, suspicious, modelVersion, eventTimestampMs: EVENT_TIME + i,
          scoredTimestampMs: actual.scoredTimestampMs,
          contributions: suspicious ? classifier.explain(features, { method: 'exact', topK: 3 }).contributions : [],
          sourceTopic: topics.input, sourcePartition: 0, sourceOffset: i,
        });
        expect(m.value!.toString('utf8')).toBe(expected.toString('utf8'));
        // --provenance-headers: the same provenance in four named headers too, after the input's own.
        expect(m.headers?.map((h) => Object.keys(h)[0])).toEqual(['trace-id', 'xgb.source.topic',
          'xgb.source.partition', 'xgb.source.offset', 'xgb.model.version']);
        expect([header(m, 'xgb.source.topic'), header(m, 'xgb.source.partition'), header(m, 'xgb.source.offset'),
          header(m, 'xgb.model.version')]).toEqual([topics.input, '0', String(i), modelVersion]);
        if (suspicious) {
          explained++;
          expect(actual.contributions).toHaveLength(3);
        }
      }
      expect(explained).toBeGreaterThan(0);
    });

    it('writes ScoredRecord protobuf with approximate contributions, byte for byte', async () => {
      for (const m of await run(['--explain', 'approx', '--top-k', '2'])) {
        const i = recordIndex(m.key!.toString());
        const features = row(vectors, i);
        const score = classifier.predict(features);
        const suspicious = score >= threshold;
        const expected = encodeScoredRecord({
          recordID: `f-${i}`, score, suspicious, modelVersion, eventTimestampMs: EVENT_TIME + i,
          scoredTimestampMs: decodeScoredRecord(m.value!).scoredTimestampMs,
          contributions: suspicious ? classifier.explain(features, { method: 'approx', topK: 2 }).contributions : [],
          sourceTopic: topics.input, sourcePartition: 0, sourceOffset: i,
        });
        expect(m.value!.toString('hex')).toBe(expected.toString('hex'));
      }
    });
  });

  describe('delivery guarantee', () => {
    /** Enough records, scored one per batch, that a signal lands mid-stream. */
    const n = 20_000;
    const slow = ['--batch-size', '1', '--batch-wait-ms', '0'];

    /**
     * Stops a first run with `signal` a quarter of the way in, checks what it committed against what it
     * wrote, and lets a second run finish. Counts are read to the topics' ends after each run has exited.
     */
    async function interruptAndResume(signal: NodeJS.Signals) {
      const topics = await createTopicSet(`bounce-${signal.toLowerCase()}`);
      const group = ['--group-id', uniqueName('g-bounce')];
      await produceAll(topics.input, requests(n, 'b'));
      const progress = await Collector.start(outputTopics(topics));
      try {
        const first = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...group, ...slow]);
        await progress.waitFor(n / 4, 90_000);
        const exit = await first.kill(signal);
        if (signal === 'SIGTERM') expect(exit).toEqual({ code: 0, signal: null });
        else expect(exit.signal).toBe('SIGKILL');
        const written = (await readToEnd(outputTopics(topics))).length;
        const [committed] = await committedOffsets(group[1], topics.input, 1);
        // Offsets were committed while it ran, and never past a record whose output was not delivered.
        expect(committed).toBeGreaterThan(0);
        expect(committed).toBeLessThanOrEqual(written);
        expect(written).toBeLessThan(n);
        // The second run resumes at the committed offset and writes one output for each record from there.
        const second = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...group]);
        try {
          await progress.waitFor(written + (n - committed), 90_000);
        } catch (err) {
          throw new Error(`${(err as Error).message}\nfirst run:\n${first.stderr}\nsecond run:\n${second.stderr}`);
        }
        expect(await second.kill('SIGTERM')).toEqual({ code: 0, signal: null });
        const all = await readToEnd(outputTopics(topics));
        const counts = countIds(all);
        process.stdout.write(`${signal}: first run wrote ${written} outputs and committed ${committed}; `
          + `${all.length} outputs in all, ${all.length - counts.size} duplicates\n`);
        expect(all.filter((m) => m.topic === topics.deadLetter)).toHaveLength(0);
        expect(counts.size).toBe(n);
        expect(all.length).toBe(written + (n - committed));
        return { written, committed, duplicates: all.length - counts.size };
      } finally {
        await progress.stop();
      }
    }

    it('loses and duplicates nothing across SIGTERM and a restart, having committed all it wrote', async () => {
      const { written, committed, duplicates } = await interruptAndResume('SIGTERM');
      expect(committed).toBe(written);
      expect(duplicates).toBe(0);
    }, 240_000);

    it('loses nothing across SIGKILL and a restart, and duplicates at most what was not committed', async () => {
      const { written, committed, duplicates } = await interruptAndResume('SIGKILL');
      expect(duplicates).toBe(written - committed);
    }, 240_000);

    it('keeps each input partition\'s outputs in offset order on every output topic, with batches in flight', async () => {
      const topics = await createTopicSet('order', 2);
      const count = 3000;
      await produceAll(topics.input, requests(count, 'o', 2));
      const progress = await Collector.start(outputTopics(topics));
      try {
        await withProcessor([...topicFlags(topics), '--batch-size', '16', '--batch-wait-ms', '1'], async (p) => {
          await progress.waitFor(count, 90_000);
          expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
        });
      } finally {
        await progress.stop();
      }
      const all = await readToEnd(outputTopics(topics));
      expect(all).toHaveLength(count);
      const last = new Map<string, number>();
      let checked = 0;
      for (const m of all) {
        const { sourcePartition, sourceOffset: offset } = decodeScoredRecord(m.value!);
        const key = `${m.topic} <- ${sourcePartition}`;
        if (last.has(key)) expect(offset).toBeGreaterThan(last.get(key)!);
        last.set(key, offset);
        checked++;
      }
      expect(checked).toBe(count);
      // Both output topics carry records of both input partitions.
      expect(last.size).toBe(4);
    }, 120_000);

    /** The partitions an instance holds, from its last assignment or revocation log line. */
    function holding(p: ProcessorProcess): number[] {
      const lines = p.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
      const changes = lines.filter((l) => l.message === 'partitions assigned' || l.message === 'partitions revoked');
      return changes.length === 0 ? [] : changes[changes.length - 1].assigned;
    }

    /**
     * The handover, not a volume: both instances score until a fifth is out, then one stops with most
     * of the records still to score, and the survivor takes them over.
     */
    const handover = 6_000;

    it.each(['range', 'cooperative-sticky'])(
      'splits 4 partitions between two instances, and the survivor takes over with 0 lost and 0 duplicated (%s assignor)', async (assignor) => {
      const n = handover;
      const topics = await createTopicSet('group', 4);
      // The session timeout back at a production-like 30 s (the helper's 6 s speeds up crash tests): the
      // stop here is graceful, and with two instances at --batch-size 1 saturating both cores, the
      // coordinator once heard no heartbeat from either for 6 s and expelled both; the stopping
      // instance's last commit then failed (Unknown member) and the survivor replayed its progress.
      const group = ['--group-id', uniqueName('g-group'), '-X', `partition.assignment.strategy=${assignor}`,
        '-X', 'session.timeout.ms=30000', '-X', 'heartbeat.interval.ms=3000'];
      const a = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...group, ...slow]);
      const b = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...group, ...slow]);
      const progress = await Collector.start(outputTopics(topics));
      try {
        // Both hold partitions before the records arrive, so both score.
        await until('both instances holding partitions', () =>
          holding(a).length > 0 && holding(b).length > 0 && holding(a).length + holding(b).length === 4, 60_000);
        const split = [holding(a), holding(b)];
        await produceAll(topics.input, requests(n, 'b', 4));
        await progress.waitFor(n / 5, 90_000);
        expect(await b.kill('SIGTERM')).toEqual({ code: 0, signal: null });
        await until('the survivor holding all four partitions', () => holding(a).length === 4, 60_000);
        try {
          await progress.waitFor(n, 120_000);
        } catch (err) {
          throw new Error(`${(err as Error).message}\ninstance a:\n${a.stderr}\ninstance b:\n${b.stderr}`);
        }
        expect(await a.kill('SIGTERM')).toEqual({ code: 0, signal: null });
        const all = await readToEnd(outputTopics(topics));
        const counts = countIds(all);
        process.stdout.write(`group (${assignor}): split ${JSON.stringify(split)}, ${all.length} outputs for ${n} records, `
          + `${all.length - counts.size} duplicates\n`);
        if (counts.size !== n || all.length !== n) {
          // Both instances' logs say where the handover went wrong.
          throw new Error(`${counts.size} distinct outputs and ${all.length} in all for ${n} records\n`
            + `instance a:\n${a.stderr}\ninstance b:\n${b.stderr}`);
        }
        expect(counts.size).toBe(n);
        expect(all).toHaveLength(n);
      } finally {
        await progress.stop();
        for (const p of [a, b]) if (p.child.exitCode === null && p.child.signalCode === null) await p.kill('SIGKILL');
      }
    }, 240_000);
  });
});
