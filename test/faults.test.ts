/**
 * The processor's failure paths, made to happen: scoring that fails at the scorer seam (a batch, one
 * row), a delivery failure that librdkafka really reports (a broker stopped under the processor, with
 * a short message.timeout.ms), and the shutdown bound. Header and reason names are the README's.
 */
import type { Message } from 'node-rdkafka';
import { Classifier } from '../lib/classifier';
import { decodeScoredRecord, encodePredictRequest } from '../lib/codec';
import { loadTestVectors, MODEL_PATH, row, type TestVectors } from './helpers/fixtures';
import { FaultyScorer, HOLD, POISON, startInProcess, until } from './helpers/in-process';
import {
  Collector, committedOffsets, createTopicSet, header, type OutgoingRecord, outputTopics, privateBroker, produceAll,
  readToEnd, topicFlags, uniqueName,
} from './helpers/kafka';

let vectors: TestVectors;
let classifier: Classifier;
beforeAll(() => {
  vectors = loadTestVectors();
  classifier = Classifier.load(MODEL_PATH, { nthread: 1 });
});
afterAll(() => classifier.close());

const EVENT_TIME = Date.now() - 60_000;

function request(id: string, features: number[], i: number): OutgoingRecord {
  return { key: id, value: encodePredictRequest({ recordID: id, featuresVector: features }), timestamp: EVENT_TIME + i };
}

function requests(n: number, prefix: string, mark?: { index: number; value: number }): OutgoingRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const features = Array.from(row(vectors, i));
    if (mark && mark.index === i) features[0] = mark.value;
    return request(`${prefix}-${i}`, features, i);
  });
}

function expectedScore(features: ArrayLike<number>): number {
  return classifier.predict(features);
}

/**
 * Sends `sent` through an in-process processor scoring with `scorer`, stops it once every record has
 * an output (status 0 expected), and returns its run and every output, read to the topics' ends.
 */
async function scoreAll(prefix: string, sent: OutgoingRecord[], scorer: FaultyScorer) {
  const topics = await createTopicSet(prefix);
  await produceAll(topics.input, sent);
  const run = await startInProcess([...topicFlags(topics), '--group-id', uniqueName('g')], scorer);
  const progress = await Collector.start(outputTopics(topics));
  try {
    await progress.waitFor(sent.length);
  } finally {
    await progress.stop();
    expect(await run.processor.stop()).toBe(0);
  }
  return { topics, run, all: await readToEnd(outputTopics(topics)) };
}

describe('scoring failures, injected at the scorer seam', () => {
  it('retries a batch whose prediction fails once, and routes every record with its own score', async () => {
    const sent = requests(50, 'fb');
    const scorer = new FaultyScorer(classifier, { failBatchCalls: new Set([1]) });
    const { topics, run, all } = await scoreAll('fault-batch', sent, scorer);
    expect(all).toHaveLength(sent.length);
    expect(all.filter((m) => m.topic === topics.deadLetter)).toHaveLength(0);
    for (const m of all) {
      const record = decodeScoredRecord(m.value!);
      const i = Number(record.recordID.slice(3));
      expect(record.score).toBe(expectedScore(row(vectors, i)));
    }
    expect(run.logs.filter((l) => l.message === 'batch prediction failed')).toHaveLength(1);
    expect(scorer.rowCalls).toBe(0);
  });

  it('dead-letters only the row that cannot be scored, as scoring-failed, and never sends it to regular', async () => {
    const poisoned = 7;
    const sent = requests(20, 'fr', { index: poisoned, value: POISON });
    const scorer = new FaultyScorer(classifier, { poisonRows: true });
    const { topics, run, all } = await scoreAll('fault-row', sent, scorer);
    expect(all).toHaveLength(sent.length);
    const dead = all.filter((m) => m.topic === topics.deadLetter);
    expect(dead).toHaveLength(1);
    expect(dead[0].key!.toString()).toBe(`fr-${poisoned}`);
    expect(Buffer.compare(dead[0].value!, sent[poisoned].value!)).toBe(0);
    expect(header(dead[0], 'xgb.error.reason')).toBe('scoring-failed');
    expect(header(dead[0], 'xgb.error.message')).toBe('injected failure: a poisoned row');
    expect(header(dead[0], 'xgb.source.offset')).toBe(String(poisoned));
    const scored = all.filter((m) => m.topic !== topics.deadLetter);
    expect(scored.map((m) => m.key!.toString())).not.toContain(`fr-${poisoned}`);
    for (const m of scored) {
      const record = decodeScoredRecord(m.value!);
      const i = Number(record.recordID.slice(3));
      expect(record.score).toBe(expectedScore(row(vectors, i)));
      expect(m.topic).toBe(record.score >= 0.5 ? topics.suspicious : topics.regular);
    }
    // Three attempts at the batch, then each row alone.
    expect(run.logs.filter((l) => l.message === 'batch prediction failed')).toHaveLength(3);
    expect(scorer.rowCalls).toBe(sent.length);
    expect(run.metrics.deadLetters.get({ reason: 'scoring-failed' })).toBe(1);
  });
});

describe('a delivery that librdkafka reports failed', () => {
  // A broker of this test's own, stopped under the processor: the shared one stays up for the others.
  const kafka = privateBroker('fault-broker', 19192);
  afterAll(() => { kafka('stop'); });

  it('exits 1 without sending the output again, commits nothing past the record, and delivers it once after a restart', async () => {
    const bootstrap = kafka('start');
    const topics = await createTopicSet('fault-deliver', 1, bootstrap);
    const group = uniqueName('g-deliver');
    const first = requests(10, 'fd');
    await produceAll(topics.input, first, bootstrap);

    let release!: () => void;
    const released = new Promise<void>((resolve) => { release = resolve; });
    const scorer = new FaultyScorer(classifier, { holdUntil: released });
    const run = await startInProcess([...topicFlags(topics), '--group-id', group, '--shutdown-timeout-ms', '5000',
      '-X', 'message.timeout.ms=1500'], scorer, bootstrap);
    // The first ten are delivered and their offsets committed before anything goes wrong.
    await until('the first ten committed', async () =>
      (await committedOffsets(group, topics.input, 1, bootstrap))[0] === first.length);

    const held = requests(11, 'fd', { index: 10, value: HOLD })[10];
    await produceAll(topics.input, [held], bootstrap);
    await scorer.held;
    kafka('stop');
    release();
    const code = await run.processor.finished;
    expect(code).toBe(1);
    // librdkafka has retried it within message.timeout.ms: a copy sent now would land behind later outputs.
    expect(run.metrics.deliveryFailures.get()).toBe(1);
    const failures = run.logs.filter((l) => l.message === 'delivery failed');
    expect(failures.map((l) => [l.sourcePartition, l.sourceOffset, l.kind])).toEqual([[0, 10, 'transient']]);
    expect(run.logs.some((l) => l.message === 'stopping after a fatal error' &&
      JSON.stringify(l.error).includes(`the output of ${topics.input} partition 0 offset 10`))).toBe(true);

    kafka('start');
    expect(await committedOffsets(group, topics.input, 1, bootstrap)).toEqual([10]);
    const again = await startInProcess([...topicFlags(topics), '--group-id', group], classifier, bootstrap);
    const out = await Collector.start(outputTopics(topics), bootstrap);
    try {
      await out.waitFor(first.length + 1);
    } catch (err) {
      // Say what the restarted processor did while the output was awaited.
      throw new Error(`${(err as Error).message}; the restarted processor logged:\n`
        + again.logs.map((l) => JSON.stringify(l)).join('\n'));
    } finally {
      await out.stop();
      expect(await again.processor.stop()).toBe(0);
    }
    const all: Message[] = await readToEnd(outputTopics(topics), bootstrap);
    expect(all.map((m) => m.key!.toString()).sort()).toEqual([...first, held].map((r) => r.key).sort());
    expect(again.metrics.deliveryFailures.get()).toBe(0);
  }, 180_000);
});

describe('the shutdown bound', () => {
  it('stops with status 1 after --shutdown-timeout-ms when a batch cannot finish, saying what is pending', async () => {
    const topics = await createTopicSet('fault-shutdown');
    await produceAll(topics.input, [requests(1, 'fs', { index: 0, value: HOLD })[0]]);
    let release!: () => void;
    const scorer = new FaultyScorer(classifier, { holdUntil: new Promise((resolve) => { release = resolve; }) });
    const run = await startInProcess([...topicFlags(topics), '--group-id', uniqueName('g'),
      '--shutdown-timeout-ms', '500'], scorer);
    await scorer.held;
    const code = await run.processor.stop();
    release();
    expect(code).toBe(1);
    const last = run.logs.find((l) => l.message === 'stopped with outputs not delivered; they will be processed again after a restart');
    expect(last).toMatchObject({ level: 'error', pending: 1 });
    expect(await readToEnd(outputTopics(topics))).toHaveLength(0);
  });
});
