/**
 * `--max-message-bytes` on the real broker, as the README's "Records too large" promises it: a scored
 * output over the limit becomes a dead letter (`output-too-large`), a dead-letter copy over it is cut
 * to fit, and a record of which not even an empty copy fits is skipped, logged and counted in
 * `xgb_stream_records_skipped_total{reason}`. A limit of 20,000 bytes keeps the records small.
 */
import { Classifier } from '../lib/classifier';
import { decodeScoredRecord } from '../lib/codec';
import { OVERSIZE_VALID, expectOversizeSkips, oversizeInputs } from './helpers/bad-inputs';
import { MODEL_PATH, loadTestVectors, row, type TestVectors, loadReference } from './helpers/fixtures';
import { freePort, get, sample } from './helpers/http';
import { until } from './helpers/in-process';
import {
  Collector, ProcessorProcess, createTopicSet, header, outputTopics, produceAll, readToEnd, topicFlags,
} from './helpers/kafka';

const LIMIT = 20_000;

let vectors: TestVectors;
let classifier: Classifier;
beforeAll(() => {
  vectors = loadTestVectors();
  classifier = loadReference();
});
afterAll(() => classifier.close());

describe('--max-message-bytes', () => {
  it('dead-letters an output over the limit, cuts a copy over it, and skips and counts what cannot fit at all', async () => {
    const topics = await createTopicSet('limits');
    // The scored output of `long` holds its recordID twice (key and value): over the limit. Its copy fits whole.
    const { input, hugeKey, undecodable } = oversizeInputs(LIMIT, 12_000, (i) => row(vectors, i));
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
    for (const [id, i] of OVERSIZE_VALID) {
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

    expectOversizeSkips(p.stderr, topics.input, hugeKey);
    expect(sample(metrics!, 'xgb_stream_dead_letters_total{reason="output-too-large"}')).toBe(1);
    expect(sample(metrics!, 'xgb_stream_dead_letters_total{reason="undecodable"}')).toBe(1);
    expect(sample(metrics!, 'xgb_stream_records_in_total')).toBe(input.length);
  }, 90_000);
});
