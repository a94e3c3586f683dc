/**
 * `--max-message-bytes` on the real broker, as the README's "Records too large" promises it: a scored
 * output over the limit becomes a dead letter (`output-too-large`), a dead-letter copy over it is cut
 * to fit, and a record of which not even an empty copy fits is skipped, logged and counted in
 * `xgb_stream_records_skipped_total{reason}`. A limit of 20,000 bytes keeps the records small.
 */
import { Classifier } from '../lib/classifier';
import { decodeScoredRecord, encodePredictRequest } from '../lib/codec';
import { MODEL_PATH, loadTestVectors, row, type TestVectors, loadReference } from './helpers/fixtures';
import { freePort, get, sample } from './helpers/http';
import { until } from './helpers/in-process';
import {
  Collector, ProcessorProcess, createTopicSet, header, outputTopics, produceAll, readToEnd, topicFlags,
  type OutgoingRecord,
} from './helpers/kafka';

const LIMIT = 20_000;

let vectors: TestVectors;
let classifier: Classifier;
beforeAll(() => {
  vectors = loadTestVectors();
  classifier = loadReference();
});
afterAll(() => classifier.close());

function request(key: string, recordID: string, i: number): OutgoingRecord {
  return { key, value: encodePredictRequest({ recordID, featuresVector: row(vectors, i) }) };
}

describe('--max-message-bytes', () => {
  it('dead-letters an output over the limit, cuts a copy over it, and skips and counts what cannot fit at all', async () => {
    const topics = await createTopicSet('limits');
    const longId = 'L'.repeat(12_000);
    const hugeKey = 'K'.repeat(LIMIT + 1_000);
    const undecodable = Buffer.alloc(30_000, 0xff);
    const input: OutgoingRecord[] = [
      request('v0', 'v0', 0),
      // Scored, its output holds the recordID twice (key and value): over the limit. The copy fits whole.
      request('long', longId, 1),
      request('v1', 'v1', 2),
      // The same, but the input's key alone is over the limit: not even an empty copy fits.
      request(hugeKey, 'M'.repeat(12_000), 3),
      request('v2', 'v2', 4),
      // Undecodable, with a key over the limit: skipped too.
      { key: `U${hugeKey}`, value: Buffer.from('x') },
      request('v3', 'v3', 5),
      // Undecodable and over the limit: its copy is cut to fit.
      { key: 'cut', value: undecodable },
      request('v4', 'v4', 6),
    ];
    await produceAll(topics.input, input);
    const port = await freePort();
    const progress = await Collector.start(outputTopics(topics));
    const p = ProcessorProcess.start(['--log-level', 'info', '--metrics-port', String(port), ...topicFlags(topics),
      '--max-message-bytes', String(LIMIT), '--max-record-id-bytes', '16000']);
    let metrics: string;
    try {
      await progress.waitFor(input.length - 2, 60_000);
      await until('both skips counted', async () => {
        metrics = (await get(port, '/metrics')).body;
        return sample(metrics, 'xgb_stream_records_skipped_total{reason="undecodable"}') === 1
          && sample(metrics, 'xgb_stream_records_skipped_total{reason="output-too-large"}') === 1;
      }, 30_000);
      expect(p.child.exitCode).toBeNull();
      expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    } finally {
      await progress.stop();
      if (p.child.exitCode === null) await p.kill('SIGKILL');
    }

    const all = await readToEnd(outputTopics(topics));
    expect(all.map((m) => m.key!.toString().slice(0, 8)).sort()).toEqual(['cut', 'long', 'v0', 'v1', 'v2', 'v3', 'v4']);
    const byKey = new Map(all.map((m) => [m.key!.toString(), m]));
    for (const [id, i] of [['v0', 0], ['v1', 2], ['v2', 4], ['v3', 5], ['v4', 6]] as const) {
      const m = byKey.get(id)!;
      const score = classifier.predict(row(vectors, i));
      expect(m.topic).toBe(score >= 0.5 ? topics.suspicious : topics.regular);
      expect(decodeScoredRecord(m.value!).score).toBe(score);
    }

    const long = byKey.get('long')!;
    expect(long.topic).toBe(topics.deadLetter);
    expect(header(long, 'xgb.error.reason')).toBe('output-too-large');
    expect(header(long, 'xgb.error.message')).toMatch(/^the scored output is 24\d{3} bytes, more than the 20000-byte limit$/);
    expect(header(long, 'xgb.error.truncated')).toBeUndefined();
    expect(Buffer.compare(long.value!, input[1].value!)).toBe(0);

    const cut = byKey.get('cut')!;
    expect(cut.topic).toBe(topics.deadLetter);
    expect(header(cut, 'xgb.error.reason')).toBe('undecodable');
    expect(header(cut, 'xgb.error.truncated')).toBe('true');
    expect(header(cut, 'xgb.error.original-size')).toBe('30000');
    expect(cut.value!.length).toBeGreaterThan(LIMIT - 1_000);
    expect(cut.value!.length).toBeLessThan(LIMIT);
    expect(Buffer.compare(cut.value!, undecodable.subarray(0, cut.value!.length))).toBe(0);

    const skipped = p.stderr.split('\n').filter((l) => l.includes('"message":"record skipped: no output fits"'))
      .map((l) => JSON.parse(l));
    expect(skipped).toEqual([
      expect.objectContaining({ level: 'error', topic: topics.input, partition: 0, offset: 3, keyBytes: hugeKey.length,
        keyPrefix: 'K'.repeat(64), reason: 'output-too-large' }),
      expect.objectContaining({ level: 'error', topic: topics.input, partition: 0, offset: 5, keyBytes: hugeKey.length + 1,
        keyPrefix: `U${'K'.repeat(63)}`, valueBytes: 1, reason: 'undecodable' }),
    ]);
    expect(sample(metrics!, 'xgb_stream_dead_letters_total{reason="output-too-large"}')).toBe(1);
    expect(sample(metrics!, 'xgb_stream_dead_letters_total{reason="undecodable"}')).toBe(1);
    expect(sample(metrics!, 'xgb_stream_records_in_total')).toBe(input.length);
  }, 90_000);
});
