/**
 * The native data path (`--data-path native`) against the real broker: the same outputs as the
 * JavaScript path (scores, routing, keys, the `float` value and its provenance header), the same dead
 * letters, offsets committed on SIGTERM, and every setting it does not implement refused by name.
 */
import { Classifier } from '../lib/classifier';
import { encodePredictRequest } from '../lib/codec';
import {
  Collector, ProcessorProcess, committedOffsets, createTopicSet, createTopics, header, outputTopics, produceAll, readToEnd, runCli,
  topicFlags, uniqueName, type OutgoingRecord, type TopicSet,
} from './helpers/kafka';
import { MODEL_PATH, loadReference, loadTestVectors, row, type TestVectors } from './helpers/fixtures';

const NATIVE = ['--data-path', 'native', '--output-format', 'float'];

let vectors: TestVectors;
/** The JavaScript path's Classifier, for the score each output must carry. */
let reference: Classifier;

beforeAll(() => {
  vectors = loadTestVectors();
  reference = loadReference();
});
afterAll(() => reference.close());

/** Requests for rows 0..n-1 of the test vectors, keyed apart from their recordIDs, each with a header of its own. */
function requests(n: number, prefix: string, partitions = 1): OutgoingRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    key: `in-${prefix}-${i}`,
    value: encodePredictRequest({ recordID: `${prefix}-${i}`, featuresVector: row(vectors, i) }),
    partition: i % partitions,
    headers: [{ 'trace-id': `t${i}` }],
  }));
}

function recordIndex(recordID: string): number {
  return Number(recordID.slice(recordID.lastIndexOf('-') + 1));
}

function floatValue(score: number): string {
  const b = Buffer.alloc(4);
  b.writeFloatBE(score);
  return b.toString('hex');
}

/** featuresVector unpacked (one fixed32 field per value), as older proto writers emit it. */
function unpackedRequest(recordID: string, features: readonly number[]): Buffer {
  const id = Buffer.from(recordID, 'utf8');
  const parts = [Buffer.from([0x0a, id.length]), id];
  for (const f of features) {
    const v = Buffer.alloc(5);
    v[0] = 0x25; // field 4, wire type 5
    v.writeFloatLE(f, 1);
    parts.push(v);
  }
  return Buffer.concat(parts);
}

/**
 * Runs the native path on `topics` until `count` outputs are read, then stops it with SIGTERM and
 * expects a clean exit; its log is in the returned process's stderr.
 */
async function runUntil(topics: TopicSet, args: readonly string[], count: number,
  env: Record<string, string>): Promise<ProcessorProcess> {
  const progress = await Collector.start(outputTopics(topics));
  const p = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...NATIVE, ...args], env);
  try {
    await progress.waitFor(count, 90_000);
    expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    return p;
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${p.stderr}`);
  } finally {
    if (p.child.exitCode === null && p.child.signalCode === null) await p.kill('SIGKILL');
    await progress.stop();
  }
}

/** The two ways the loop acknowledges a batch: a flush per batch, or delivery reports while the next is scored. */
const ACKNOWLEDGEMENTS: Array<[string, Record<string, string>]> = [
  ['flushing each batch', {}],
  ['pipelined (XGB_STREAM_NATIVE_PIPELINED=1)', { XGB_STREAM_NATIVE_PIPELINED: '1' }],
];

describe.each(ACKNOWLEDGEMENTS)('native data path on a real broker, %s', (_, env) => {
  it('scores 5,000 records once each, as the JavaScript path and Python do, and commits every offset on SIGTERM', async () => {
    const n = 5000;
    const topics = await createTopicSet('native-route', 2);
    const group = uniqueName('g-native');
    await produceAll(topics.input, requests(n, 'r', 2));
    const p = await runUntil(topics, ['--group-id', group, '--batch-size', '256'], n, env);
    expect(p.stderr).toContain('"message":"native data path stopped"');
    const all = await readToEnd(outputTopics(topics));
    expect(all).toHaveLength(n);
    expect(all.filter((m) => m.topic === topics.deadLetter)).toHaveLength(0);
    const seen = new Set<number>();
    let suspicious = 0;
    let worstVsPython = 0;
    for (const m of all) {
      const i = recordIndex(m.key!.toString());
      seen.add(i);
      const expected = reference.predict(row(vectors, i));
      // Byte for byte the JavaScript path's float, and within float32 rounding of Python's probability.
      expect(m.value!.toString('hex')).toBe(floatValue(expected));
      worstVsPython = Math.max(worstVsPython, Math.abs(m.value!.readFloatBE() - vectors.probabilities[i % vectors.rows]));
      expect(m.topic).toBe(expected >= vectors.threshold ? topics.suspicious : topics.regular);
      if (expected >= vectors.threshold) suspicious++;
      expect(m.key!.toString()).toBe(`r-${i}`);
      expect(m.headers?.map((h) => Object.keys(h)[0])).toEqual(['trace-id', 'xgb.provenance']);
      expect(header(m, 'trace-id')).toBe(`t${i}`);
      expect(header(m, 'xgb.provenance')).toBe(`${topics.input}/${i % 2}/${Math.floor(i / 2)} ${vectors.modelVersion}`);
    }
    expect(seen.size).toBe(n);
    expect(worstVsPython).toBeLessThan(1e-6);
    expect(suspicious).toBeGreaterThan(0);
    expect(suspicious).toBeLessThan(n);
    expect(await committedOffsets(group, topics.input, 2)).toEqual([n / 2, n / 2]);
    process.stdout.write(`native routing: ${suspicious} suspicious of ${n}; worst |score - Python| ${worstVsPython}\n`);
  });

  it('dead-letters every kind of bad input with its reason, byte for byte, and scores the valid records around it', async () => {
    const topics = await createTopicSet('native-bad');
    const features = row(vectors, 0);
    const good = requests(8, 'g');
    // Unpacked features and a NaN (missing) feature are valid requests too.
    good.push({ key: 'unpacked', value: unpackedRequest('g-8', row(vectors, 8)) });
    const withNaN = row(vectors, 9).map((v, i) => (i === 2 ? NaN : v));
    good.push({ key: 'nan', value: encodePredictRequest({ recordID: 'g-9', featuresVector: withNaN }) });
    const bad: Array<{ reason: string; message: string; record: OutgoingRecord }> = [
      { reason: 'undecodable', message: 'undecodable PredictRequest', record: { key: 'bad-bytes', value: Buffer.from([0x0a, 0x7f, 0x01]) } },
      { reason: 'undecodable', message: 'not valid UTF-8',
        record: { key: 'bad-utf8', value: Buffer.concat([Buffer.from([0x0a, 0x02, 0xc3, 0x28]), encodePredictRequest({ recordID: '', featuresVector: features })]) } },
      { reason: 'wrong-feature-count', message: 'expected 10 features, got 9',
        record: { key: 'short', value: encodePredictRequest({ recordID: 'short', featuresVector: features.slice(0, 9) }) } },
      { reason: 'non-finite-feature', message: 'feature 3 is Infinity',
        record: { key: 'inf', value: encodePredictRequest({ recordID: 'inf', featuresVector: features.map((v, i) => (i === 3 ? Infinity : v)) }) } },
      { reason: 'non-finite-feature', message: 'feature 0 is -Infinity',
        record: { key: 'ninf', value: encodePredictRequest({ recordID: 'ninf', featuresVector: features.map((v, i) => (i === 0 ? -Infinity : v)) }) } },
      { reason: 'empty-record-id', message: 'recordID is empty',
        record: { key: 'empty', value: encodePredictRequest({ recordID: '', featuresVector: features }) } },
      { reason: 'null-value', message: 'record has a null value', record: { key: 'null', value: null } },
      { reason: 'empty-record-id', message: 'recordID is empty',
        record: { key: Buffer.alloc(1).subarray(0, 0), value: Buffer.alloc(1).subarray(0, 0) } },
      { reason: 'record-id-too-long', message: 'recordID is 5000 bytes, more than the 4096 allowed (--max-record-id-bytes)',
        record: { key: 'long', value: encodePredictRequest({ recordID: 'x'.repeat(5000), featuresVector: features }) } },
    ];
    const input: OutgoingRecord[] = [];
    good.forEach((g, i) => {
      input.push(g);
      if (i < bad.length) input.push({ ...bad[i].record, headers: [{ origin: `bad-${i}` }] });
    });
    await produceAll(topics.input, input);
    const total = good.length + bad.length;
    const p = await runUntil(topics, [], total, env);
    const all = await readToEnd(outputTopics(topics));
    expect(all).toHaveLength(total);
    const dead = all.filter((m) => m.topic === topics.deadLetter);
    expect(dead).toHaveLength(bad.length);
    bad.forEach((b, i) => {
      const m = dead[i];
      if (Buffer.isBuffer(b.record.key)) expect(Buffer.compare(m.key as Buffer, b.record.key)).toBe(0);
      else expect(m.key?.toString()).toBe(b.record.key);
      if (b.record.value === null) expect(m.value).toBeNull();
      else expect(Buffer.compare(m.value!, b.record.value)).toBe(0);
      expect(header(m, 'xgb.error.reason')).toBe(b.reason);
      expect(header(m, 'xgb.error.message')).toContain(b.message);
      expect(header(m, 'origin')).toBe(`bad-${i}`);
      expect(header(m, 'xgb.source.topic')).toBe(topics.input);
      expect(header(m, 'xgb.source.partition')).toBe('0');
      expect(header(m, 'xgb.source.offset')).toBe(String(2 * i + 1));
    });
    // The log says why, as the JavaScript path's does.
    expect(p.stderr).toContain('"message":"dead letter","reason":"non-finite-feature","error":"feature 3 is Infinity"');
    const scored = all.filter((m) => m.topic !== topics.deadLetter);
    expect(scored.map((m) => m.key!.toString()).sort()).toEqual(good.map((_, i) => `g-${i}`).sort());
    for (const m of scored) {
      const i = recordIndex(m.key!.toString());
      const features = i === 9 ? withNaN : row(vectors, i);
      expect(m.value!.toString('hex')).toBe(floatValue(reference.predict(features)));
    }
  });

  it('loses and duplicates nothing across a SIGTERM mid-stream and a restart, having committed all it wrote', async () => {
    const n = 8_000;
    const topics = await createTopicSet('native-bounce');
    const group = ['--group-id', uniqueName('g-native-bounce')];
    await produceAll(topics.input, requests(n, 'b'));
    const progress = await Collector.start(outputTopics(topics));
    try {
      // Batches of one record, each flushed before its offset is stored: a signal lands mid-stream.
      const first = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...NATIVE, ...group, '--batch-size', '1'], env);
      await progress.waitFor(n / 4, 90_000);
      expect(await first.kill('SIGTERM')).toEqual({ code: 0, signal: null });
      const written = (await readToEnd(outputTopics(topics))).length;
      const [committed] = await committedOffsets(group[1], topics.input, 1);
      expect(written).toBeLessThan(n);
      expect(committed).toBe(written);
      const second = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...NATIVE, ...group], env);
      try {
        await progress.waitFor(n, 90_000);
      } catch (err) {
        throw new Error(`${(err as Error).message}\nfirst run:\n${first.stderr}\nsecond run:\n${second.stderr}`);
      }
      expect(await second.kill('SIGTERM')).toEqual({ code: 0, signal: null });
      const all = await readToEnd(outputTopics(topics));
      expect(all).toHaveLength(n);
      expect(new Set(all.map((m) => m.key!.toString())).size).toBe(n);
      expect(await committedOffsets(group[1], topics.input, 1)).toEqual([n]);
      process.stdout.write(`native SIGTERM: first run wrote and committed ${written} of ${n}\n`);
    } finally {
      await progress.stop();
    }
  });


  it('hands partitions over to a second instance mid-stream without losing or duplicating a record', async () => {
    const n = 20_000;
    const topics = await createTopicSet('native-handover', 2);
    const group = ['--group-id', uniqueName('g-native-handover')];
    await produceAll(topics.input, requests(n, 'h', 2));
    const progress = await Collector.start(outputTopics(topics));
    // Small batches, so that the stream is still running when the second instance joins.
    const batch = env.XGB_STREAM_NATIVE_PIPELINED ? '1' : '20';
    const args = ['--log-level', 'info', ...topicFlags(topics), ...NATIVE, ...group, '--batch-size', batch];
    const first = ProcessorProcess.start(args, env);
    let second: ProcessorProcess | undefined;
    try {
      await progress.waitFor(n / 4, 90_000);
      second = ProcessorProcess.start(args, env);
      // The revocation commits what the first delivered; the second starts from there.
      await second.waitForLog('"message":"partitions assigned"', 60_000);
      process.stdout.write(`native handover: the second instance joined after ${progress.messages.length} of ${n} outputs\n`);
      await progress.waitFor(n, 120_000);
      expect(await first.kill('SIGTERM')).toEqual({ code: 0, signal: null });
      expect(await second.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    } catch (err) {
      throw new Error(`${(err as Error).message}\nfirst:\n${first.stderr}\nsecond:\n${second?.stderr}`);
    } finally {
      for (const p of [first, second]) if (p && p.child.exitCode === null && p.child.signalCode === null) await p.kill('SIGKILL');
      await progress.stop();
    }
    expect(first.stderr).toContain('"message":"partitions revoked"');
    const all = await readToEnd(outputTopics(topics));
    expect(new Set(all.map((m) => m.key!.toString())).size).toBe(n);
    expect(all).toHaveLength(n);
    expect(await committedOffsets(group[1], topics.input, 2)).toEqual([n / 2, n / 2]);
  });

  it('exits 1 without storing an offset when an output cannot be delivered', async () => {
    const base = uniqueName('native-undeliverable');
    const topics = { input: `${base}-in`, suspicious: `${base}-suspicious`, regular: `${base}-regular`, deadLetter: `${base}-in.dlq` };
    await createTopics([topics.input]);
    // Output topics that refuse every output: each is larger than their max.message.bytes.
    await createTopics([topics.suspicious, topics.regular, topics.deadLetter], 1, undefined, { 'max.message.bytes': '64' });
    const group = uniqueName('g-native-undeliverable');
    await produceAll(topics.input, requests(50, 'u'));
    const p = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...NATIVE, '--group-id', group], env);
    const exit = await Promise.race([p.exited, new Promise((resolve) => setTimeout(resolve, 60_000, 'still running'))]);
    if (exit === 'still running') await p.kill('SIGKILL');
    expect(exit).toEqual({ code: 1, signal: null });
    expect(p.stderr).toContain('"message":"the native data path failed"');
    expect(await committedOffsets(group, topics.input, 1)).toEqual([-1001]);
  });

  it('exits 1 at start, naming a missing topic', async () => {
    const topics = await createTopicSet('native-missing');
    const absent = uniqueName('absent');
    const { code, stderr } = await runCli(['--brokers', process.env.KAFKA_BROKERS!, ...topicFlags(topics), ...NATIVE,
      '--regular-topic', absent], env);
    expect(code).toBe(1);
    expect(stderr).toContain(`topic '${absent}' not found on`);
  });
});

describe('native data path settings', () => {
  it.each([
    [['--guarantee', 'exactly-once'], '--guarantee exactly-once'],
    [['--shadow-model', MODEL_PATH], '--shadow-model'],
    [['--explain', 'exact'], '--explain exact'],
    [['--input-format', 'json'], '--input-format json'],
    [['--input-framing', 'confluent'], '--input-framing confluent'],
    [['--provenance-headers'], '--provenance-headers'],
    [['--watch-model'], '--watch-model'],
    [['--enable-lifecycle'], '--enable-lifecycle'],
    [['--batch-wait-ms', '5'], '--batch-wait-ms'],
    [['--create-topics'], '--create-topics'],
  ])('refuses %j with exit 2, naming the option', async (args, named) => {
    const { code, stderr } = await runCli([...NATIVE, ...args]);
    expect(code).toBe(2);
    expect(stderr).toContain(`--data-path native does not support ${named}`);
  });

  it('refuses an output format other than float with exit 2, naming the option', async () => {
    const { code, stderr } = await runCli(['--data-path', 'native', '--output-format', 'protobuf']);
    expect(code).toBe(2);
    expect(stderr).toContain('--data-path native does not support --output-format protobuf');
  });
});
