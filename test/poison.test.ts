/**
 * Poison records on the real broker: inputs whose outputs would be too large for the output topics.
 * Each must end somewhere (a scored output, a dead letter cut to fit, or a logged skip) while the
 * partition goes on: the processor never exits by itself, and the valid records behind are scored.
 */
import type { Message } from 'node-rdkafka';
import { Classifier } from '../lib/classifier';
import { decodeScoredRecord, encodePredictRequest } from '../lib/codec';
import { MODEL_PATH, loadTestVectors, row, type TestVectors, loadReference } from './helpers/fixtures';
import {
  Collector, ProcessorProcess, createTopics, header, outputTopics, produceAll, readToEnd, topicFlags, uniqueName,
  type OutgoingRecord, type TopicSet,
} from './helpers/kafka';

let vectors: TestVectors;
let classifier: Classifier;
beforeAll(() => {
  vectors = loadTestVectors();
  classifier = loadReference();
});
afterAll(() => classifier.close());

/** The input topic admits 16 MiB records; the output topics keep the broker's default limit. */
const INPUT_LIMIT = 16 * 1024 * 1024;
/** librdkafka's default message.max.bytes: the processor's limit unless told otherwise. */
const LIMIT = 1_000_000;

function valid(id: string, i: number): OutgoingRecord {
  return { key: id, value: encodePredictRequest({ recordID: id, featuresVector: row(vectors, i) }) };
}

async function topicSet(prefix: string, outputConfig: Record<string, string> = {}): Promise<TopicSet> {
  const base = uniqueName(prefix);
  const set = { input: `${base}-in`, suspicious: `${base}-suspicious`, regular: `${base}-regular`, deadLetter: `${base}-in.dlq` };
  await createTopics([set.input], 1, undefined, { 'max.message.bytes': String(INPUT_LIMIT) });
  await createTopics([set.suspicious, set.regular], 1, undefined, outputConfig);
  await createTopics([set.deadLetter], 1);
  return set;
}

/**
 * Runs the processor binary over `input` until `expectedOutputs` are written, then over what `then`
 * sends (it returns how many more outputs to expect); returns every output and the processor's log.
 */
async function runOver(topics: TopicSet, input: OutgoingRecord[], expectedOutputs: number, args: string[] = [],
  then?: () => Promise<number>) {
  await produceAll(topics.input, input, undefined, { 'message.max.bytes': INPUT_LIMIT + 1024 });
  const progress = await Collector.start(outputTopics(topics));
  const p = ProcessorProcess.start(['--log-level', 'info', '--metrics-port', '0', ...topicFlags(topics),
    '--group-id', uniqueName('g-poison'), ...args]);
  try {
    await progress.waitFor(expectedOutputs, 60_000).catch((err) => {
      throw new Error(`${(err as Error).message}; the processor's log:\n${p.stderr}`);
    });
    if (then) await progress.waitFor(expectedOutputs + await then(), 60_000);
    // The processor never exits by itself: still running once every output is there.
    expect(p.child.exitCode).toBeNull();
    expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
  } finally {
    await progress.stop();
    if (p.child.exitCode === null) await p.kill('SIGKILL');
  }
  return { all: await readToEnd(outputTopics(topics)), stderr: p.stderr };
}

function byKey(all: Message[]): Map<string, Message[]> {
  const out = new Map<string, Message[]>();
  for (const m of all) {
    const k = m.key === null || m.key === undefined ? '' : m.key.toString().slice(0, 40);
    out.set(k, [...(out.get(k) ?? []), m]);
  }
  return out;
}

describe('records whose outputs would be too large', () => {
  it('dead-letters, cuts or skips each one on one partition, and scores every valid record behind them', async () => {
    const topics = await topicSet('poison');
    const undecodable1M = Buffer.alloc(1_020_000, 0xff);
    const undecodable5M = Buffer.alloc(5_000_000, 0xff);
    const longId = 'L'.repeat(600_000);
    const tooLongId = 'T'.repeat(800_000);
    const hugeKey = 'K'.repeat(1_100_000);
    const input: OutgoingRecord[] = [
      valid('v0', 0),
      { key: 'undecodable-1M', value: undecodable1M },
      valid('v1', 1),
      { key: 'undecodable-5M', value: undecodable5M },
      valid('v2', 2),
      // Scored, its output holds the recordID twice (key and value): 1.2 MB.
      { key: longId, value: encodePredictRequest({ recordID: longId, featuresVector: row(vectors, 3) }) },
      valid('v3', 4),
      { key: tooLongId, value: encodePredictRequest({ recordID: tooLongId, featuresVector: row(vectors, 5) }) },
      valid('v4', 6),
      // Not even an empty dead-letter copy fits: the key alone is over the limit.
      { key: hugeKey, value: Buffer.from('x') },
      valid('v5', 7),
    ];
    const { all, stderr } = await runOver(topics, input, input.length - 1, ['--max-record-id-bytes', '700000']);

    // Every input has exactly one output, but the skipped one.
    expect(all).toHaveLength(input.length - 1);
    const outputs = byKey(all);
    for (const [k, ms] of outputs) expect({ k, n: ms.length }).toEqual({ k, n: 1 });

    // The valid records, all scored with their own scores.
    ['v0', 'v1', 'v2', 'v3', 'v4', 'v5'].forEach((id, n) => {
      const m = outputs.get(id)![0];
      expect(m.topic).not.toBe(topics.deadLetter);
      expect(decodeScoredRecord(m.value!).score).toBe(classifier.predict(row(vectors, [0, 1, 2, 4, 6, 7][n])));
    });

    // Undecodable and over the limit: a dead letter cut to fit, saying so.
    for (const [k, original] of [['undecodable-1M', undecodable1M], ['undecodable-5M', undecodable5M]] as const) {
      const m = outputs.get(k)![0];
      expect(m.topic).toBe(topics.deadLetter);
      expect(header(m, 'xgb.error.reason')).toBe('undecodable');
      expect(header(m, 'xgb.error.truncated')).toBe('true');
      expect(header(m, 'xgb.error.original-size')).toBe(String(original.length));
      expect(m.value!.length).toBeGreaterThan(LIMIT - 1000);
      expect(m.value!.length).toBeLessThan(LIMIT);
      expect(Buffer.compare(m.value!, original.subarray(0, m.value!.length))).toBe(0);
    }

    // A valid request whose scored output would be 1.2 MB: output-too-large, its copy cut.
    const long = outputs.get(longId.slice(0, 40))![0];
    expect(long.topic).toBe(topics.deadLetter);
    expect(long.key!.toString()).toBe(longId);
    expect(header(long, 'xgb.error.reason')).toBe('output-too-large');
    expect(header(long, 'xgb.error.message')).toMatch(/^the scored output is 1200\d{3} bytes, more than the 1000000-byte limit$/);
    expect(header(long, 'xgb.error.truncated')).toBe('true');

    // A recordID over --max-record-id-bytes: dead-lettered before scoring.
    const tooLong = outputs.get(tooLongId.slice(0, 40))![0];
    expect(tooLong.topic).toBe(topics.deadLetter);
    expect(header(tooLong, 'xgb.error.reason')).toBe('record-id-too-long');
    expect(header(tooLong, 'xgb.error.message'))
      .toBe('recordID is 800000 bytes, more than the 700000 allowed (--max-record-id-bytes)');

    // The huge key: skipped, with one error line naming it.
    expect(outputs.has(hugeKey.slice(0, 40))).toBe(false);
    const skipped = stderr.split('\n').filter((l) => l.includes('record skipped: no output fits')).map((l) => JSON.parse(l));
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({ level: 'error', topic: topics.input, partition: 0, offset: 9,
      keyPrefix: 'K'.repeat(64), keyBytes: 1_100_000, valueBytes: 1, reason: 'undecodable' });
  }, 240_000);

  it('dead-letters a scored output that the output topic refuses, and goes on', async () => {
    // Output topics that admit less than the processor believes: the broker refuses the output.
    const topics = await topicSet('refused', { 'max.message.bytes': '100000' });
    const bigHeader = { 'note': 'n'.repeat(150_000) };
    const big = { ...valid('big', 0), headers: [bigHeader] };
    const after = ['a0', 'a1', 'a2'].map((id, i) => valid(id, i + 1));
    // The valid records follow once the refusal is handled, so that no batch mixes them with it.
    const { all } = await runOver(topics, [big], 1, [], async () => {
      await produceAll(topics.input, after);
      return after.length;
    });
    expect(all).toHaveLength(1 + after.length);
    const m = all.find((o) => o.key!.toString() === 'big')!;
    expect(m.topic).toBe(topics.deadLetter);
    expect(header(m, 'xgb.error.reason')).toBe('output-too-large');
    expect(header(m, 'xgb.error.message')).toBe('the output was refused: message size too large');
    // The full copy fits the dead-letter topic: byte for byte, nothing cut.
    expect(Buffer.compare(m.value!, big.value!)).toBe(0);
    expect(header(m, 'note')).toBe(bigHeader.note);
    expect(header(m, 'xgb.error.truncated')).toBeUndefined();
    after.forEach((a, i) => {
      const out = all.find((o) => o.key!.toString() === a.key)!;
      expect(out.topic).not.toBe(topics.deadLetter);
      expect(decodeScoredRecord(out.value!).score).toBe(classifier.predict(row(vectors, i + 1)));
    });
  }, 100_000);
});
