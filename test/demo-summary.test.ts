/**
 * The demo's summary over real outputs: the processor scores replayed held-out transactions through
 * the real broker, and summarise() must give exactly the counts, confusion matrix and latencies
 * computed here independently, from the same messages and from the classifier's own scores.
 */
import type { Message } from 'node-rdkafka';
import { Classifier } from '../lib/classifier';
import { decodeScoredRecord } from '../lib/codec';
import { HEADER } from '../lib/processor/score/output';
import { readReplayFile, replay, type ReplayRecord } from '../lib/replay';
import { formatSummary, summarise, type DemoSummary, type ObservedMessage } from '../scripts/demo-summary';
import { MODEL_DIR, MODEL_PATH, loadReference } from './helpers/fixtures';
import {
  Collector, readToEnd, ProcessorProcess, brokers, createTopicSet, header, produceAll, topicFlags, uniqueName, type TopicSet,
} from './helpers/kafka';

/** Added to each output's CreateTime as its "receive time", so that the two latencies differ by exactly this. */
const RECEIVE_DELAY_MS = 7;

let records: ReplayRecord[];
let topics: TopicSet;
let inputs: Message[];
/** The output topics' messages as read, and as the demo's reader would hand them to summarise(). */
let raw: Message[];
let outputs: ObservedMessage[];
let summary: DemoSummary;
let classifier: Classifier;
let threshold: number;

/** Nearest-rank percentile, written out again here rather than borrowed from the code under test. */
function nearestRank(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.ceil((p / 100) * sorted.length) - 1];
}

beforeAll(async () => {
  classifier = loadReference();
  threshold = Number(classifier.attribute('threshold') ?? '0.5');
  // The first 300 held-out transactions hold few frauds; add the first 60 frauds after them so that
  // every cell of the confusion matrix is filled.
  const all = readReplayFile(`${MODEL_DIR}/replay.ndjson.gz`);
  records = [...all.slice(0, 300), ...all.slice(300).filter((r) => r.label === 1).slice(0, 60)];

  topics = await createTopicSet('demo-summary');
  const processor = ProcessorProcess.start([...topicFlags(topics), '--group-id', uniqueName('demo-summary'),
    '--log-level', 'info']);
  const collector = await Collector.start([topics.input, topics.suspicious, topics.regular, topics.deadLetter]);
  try {
    await processor.waitForLog('partitions assigned');
    const sent = await replay({ brokers: brokers(), topic: topics.input, records });
    expect(sent).toMatchObject({ sent: records.length, failed: 0 });
    // Two records that cannot be scored, labelled like the rest: they must count as dead letters only.
    await produceAll(topics.input, [
      { key: 'bad-1', value: Buffer.from('not a protobuf'), headers: [{ label: '1' }] },
      { key: 'bad-2', value: null, headers: [{ label: '0' }] },
    ]);
    const total = records.length + 2;
    await collector.waitFor(2 * total, 60_000);
  } finally {
    await processor.kill('SIGTERM');
    await collector.stop();
  }
  inputs = await readToEnd([topics.input]);
  raw = await readToEnd([topics.suspicious, topics.regular, topics.deadLetter]);
  outputs = raw.map((m) => ({
    topic: m.topic, value: m.value, headers: m.headers, timestamp: m.timestamp,
    receivedAtMs: m.timestamp! + RECEIVE_DELAY_MS,
  }));
  summary = summarise(outputs, { topics, recordsIn: inputs.length });
});

afterAll(() => classifier.close());

describe('summarise() over the outputs of a real run', () => {
  it('counts every record in and out, per topic, with no duplicates or losses', () => {
    const alerts = records.filter((r) => classifier.predict(r.features) >= threshold).length;
    expect(inputs).toHaveLength(records.length + 2);
    expect(summary.recordsIn).toBe(records.length + 2);
    expect(summary.recordsOut).toEqual({ suspicious: alerts, regular: records.length - alerts, deadLetter: 2 });
    expect(summary.distinctOutputs).toBe(records.length + 2);
    expect(summary.duplicates).toBe(0);
    expect(summary.missing).toBe(0);
    expect(summary.deadLetterReasons).toEqual({ undecodable: 1, 'null-value': 1 });
    expect(summary.routingMismatches).toBe(0);
  });

  it("gives the confusion matrix of the classifier's own scores against the replay set's labels", () => {
    const expected = { tp: 0, fp: 0, tn: 0, fn: 0 };
    for (const r of records) {
      const alert = classifier.predict(r.features) >= threshold;
      if (r.label === 1) expected[alert ? 'tp' : 'fn']++;
      else expected[alert ? 'fp' : 'tn']++;
    }
    expect(expected.tp).toBeGreaterThan(0);
    expect(expected.fn + expected.fp).toBeGreaterThan(0);
    expect(summary.confusionMatrix).toEqual(expected);
    expect(summary.precision).toBe(expected.tp / (expected.tp + expected.fp));
    expect(summary.recall).toBe(expected.tp / (expected.tp + expected.fn));
    expect(summary.unlabelled).toBe(0);
  });

  it('matches the label header of each output with the label its record had in the replay set', () => {
    const labelOf = new Map(records.map((r) => [r.recordID, String(r.label)]));
    const scored = raw.filter((m) => m.topic !== topics.deadLetter);
    expect(scored).toHaveLength(records.length);
    for (const m of scored) {
      const id = decodeScoredRecord(m.value!).recordID;
      expect(header(m, 'label')).toBe(labelOf.get(id));
    }
  });

  it("measures latency from each input's CreateTime, joined through the output's source offset", () => {
    const sentAt = new Map(inputs.map((m) => [m.offset, m.timestamp!]));
    const toProduce = raw.filter((m) => m.topic !== topics.deadLetter)
      .map((m) => m.timestamp! - sentAt.get(decodeScoredRecord(m.value!).sourceOffset)!);
    expect(summary.latencyToProduce.count).toBe(records.length);
    for (const p of [50, 95, 99] as const) {
      expect(summary.latencyToProduce[`p${p}`]).toBe(nearestRank(toProduce, p));
      expect(summary.latency[`p${p}`]).toBe(nearestRank(toProduce, p) + RECEIVE_DELAY_MS);
    }
    expect(summary.latency.max).toBe(Math.max(...toProduce) + RECEIVE_DELAY_MS);
  });

  it('computes throughput over the span of the output CreateTimes', () => {
    const times = outputs.map((m) => m.timestamp!);
    expect(summary.throughput).toBeCloseTo(((records.length + 2) * 1000) / (Math.max(...times) - Math.min(...times)), 9);
  });

  it('counts a redelivered output once, as a duplicate, leaving the matrix unchanged', () => {
    const again = summarise([...outputs, outputs[0], outputs[outputs.length - 1]], { topics, recordsIn: inputs.length });
    expect(again.duplicates).toBe(2);
    expect(again.distinctOutputs).toBe(summary.distinctOutputs);
    expect(again.confusionMatrix).toEqual(summary.confusionMatrix);
  });

  it('prints the counts and the confusion matrix next to the model card', () => {
    const card = { precision: 0.9, recall: 0.6, f1: 0.72, confusionMatrix: { tp: 9, fp: 1, tn: 80, fn: 6 } };
    const text = formatSummary(summarise(outputs, { topics, recordsIn: inputs.length, modelCard: card }));
    const cm = summary.confusionMatrix;
    expect(text).toMatch(new RegExp(`records in\\s+${records.length + 2}\\s`));
    expect(text).toMatch(new RegExp(`dead letters\\s+2\\s`));
    expect(text).toMatch(new RegExp(`fraud\\s+${cm.tp} tp\\s+${cm.fn} fn`));
    expect(text).toMatch(new RegExp(`genuine\\s+${cm.fp} fp\\s+${cm.tn} tn`));
    expect(text).toContain('model card (held-out set)     tp 9, fp 1, tn 80, fn 6');
  });
});
