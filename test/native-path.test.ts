/**
 * The native data path (`--data-path native`) against the real broker: the same outputs as the
 * JavaScript path (scores, routing, keys, the `float` value and its provenance header), the same dead
 * letters, offsets committed on SIGTERM, and every setting it does not implement refused by name.
 */
import { AdminClient } from 'node-rdkafka';
import { Classifier } from '../lib/classifier';
import { encodePredictRequest } from '../lib/codec';
import {
  Collector, ProcessorProcess, brokers, committedOffsets, createTopicSet, createTopics, header, outputTopics, produceAll, readToEnd, runCli,
  topicFlags, uniqueName, type OutgoingRecord, type TopicSet,
} from './helpers/kafka';
import {
  OVERSIZE_VALID, badRequests, expectDeadLetterCopies, expectOversizeSkips, interleave, logLines, oversizeInputs,
} from './helpers/bad-inputs';
import { MODEL_PATH, loadReference, loadTestVectors, row, type TestVectors } from './helpers/fixtures';
import { freePort, get, sample } from './helpers/http';
import { until } from './helpers/in-process';

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
 * Runs the native path on `topics` while `body` runs, then stops it with SIGTERM and expects a clean
 * exit; a failure carries its log, which is in the returned process's stderr.
 */
async function runWhile(topics: TopicSet, args: readonly string[],
  body: (p: ProcessorProcess, progress: Collector) => Promise<void>): Promise<ProcessorProcess> {
  const progress = await Collector.start(outputTopics(topics));
  const p = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...NATIVE, ...args]);
  try {
    await body(p, progress);
    expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    return p;
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${p.stderr}`);
  } finally {
    if (p.child.exitCode === null && p.child.signalCode === null) await p.kill('SIGKILL');
    await progress.stop();
  }
}

/** runWhile() until `count` outputs are read. */
function runUntil(topics: TopicSet, args: readonly string[], count: number): Promise<ProcessorProcess> {
  return runWhile(topics, args, async (_, progress) => { await progress.waitFor(count, 90_000); });
}

/** Output topics that admit records up to `maxBytes` (the broker's max.message.bytes), and an input topic. */
async function topicsWithLimit(prefix: string, maxBytes: number, deadLetterToo: boolean): Promise<TopicSet> {
  const base = uniqueName(prefix);
  const topics = { input: `${base}-in`, suspicious: `${base}-suspicious`, regular: `${base}-regular`, deadLetter: `${base}-in.dlq` };
  await createTopics([topics.input]);
  await createTopics([topics.suspicious, topics.regular], 1, undefined, { 'max.message.bytes': String(maxBytes) });
  await createTopics([topics.deadLetter], 1, undefined, deadLetterToo ? { 'max.message.bytes': String(maxBytes) } : {});
  return topics;
}

async function deleteTopics(names: readonly string[]): Promise<void> {
  const admin = AdminClient.create({ 'bootstrap.servers': brokers() });
  try {
    for (const topic of names) {
      await new Promise<void>((resolve, reject) => admin.deleteTopic(topic, 30_000, (err) => (err ? reject(err) : resolve())));
    }
  } finally {
    admin.disconnect();
  }
}

/** lib/processor/score/output.ts's size estimate of a record as delivered. */
function recordBytes(m: { key?: Buffer | null; value?: Buffer | null; headers?: Array<Record<string, string | Buffer>> }): number {
  let n = 61 + 32 + (m.key?.length ?? 0) + (m.value?.length ?? 0);
  for (const h of m.headers ?? []) {
    for (const [k, v] of Object.entries(h)) n += 10 + Buffer.byteLength(k) + Buffer.byteLength(v);
  }
  return n;
}

describe('native data path on a real broker', () => {
  it('scores 5,000 records once each, as the JavaScript path and Python do, and commits every offset on SIGTERM', async () => {
    const n = 5000;
    const topics = await createTopicSet('native-route', 2);
    const group = uniqueName('g-native');
    await produceAll(topics.input, requests(n, 'r', 2));
    const p = await runUntil(topics, ['--group-id', group, '--batch-size', '256'], n);
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
    const bad = badRequests(features);
    const input = interleave(good, bad);
    await produceAll(topics.input, input);
    const total = good.length + bad.length;
    const p = await runUntil(topics, [], total);
    const all = await readToEnd(outputTopics(topics));
    expect(all).toHaveLength(total);
    expectDeadLetterCopies(all.filter((m) => m.topic === topics.deadLetter), bad, topics.input);
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
      const first = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...NATIVE, ...group, '--batch-size', '1']);
      await progress.waitFor(n / 4, 90_000);
      expect(await first.kill('SIGTERM')).toEqual({ code: 0, signal: null });
      const written = (await readToEnd(outputTopics(topics))).length;
      const [committed] = await committedOffsets(group[1], topics.input, 1);
      expect(written).toBeLessThan(n);
      expect(committed).toBe(written);
      const second = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...NATIVE, ...group]);
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
    // Batches of one record, so that the stream is still running when the second instance joins.
    const args = ['--log-level', 'info', ...topicFlags(topics), ...NATIVE, ...group, '--batch-size', '1'];
    const first = ProcessorProcess.start(args);
    let second: ProcessorProcess | undefined;
    try {
      await progress.waitFor(n / 4, 90_000);
      second = ProcessorProcess.start(args);
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
    const topics = await createTopicSet('native-undeliverable');
    const group = uniqueName('g-native-undeliverable');
    const p = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), ...NATIVE, '--group-id', group,
      '-X', 'message.timeout.ms=3000', '--shutdown-timeout-ms', '5000']);
    let exit: unknown;
    try {
      await p.waitForLog('"message":"partitions assigned"', 60_000);
      // The scored outputs' topics gone (and the cluster creates no topic): no output can be delivered.
      await deleteTopics([topics.suspicious, topics.regular]);
      await produceAll(topics.input, requests(50, 'u'));
      exit = await Promise.race([p.exited, new Promise((resolve) => setTimeout(resolve, 60_000, 'still running'))]);
    } finally {
      if (p.child.exitCode === null && p.child.signalCode === null) await p.kill('SIGKILL');
    }
    if (JSON.stringify(exit) !== JSON.stringify({ code: 1, signal: null })) throw new Error(`exit ${JSON.stringify(exit)}\n${p.stderr}`);
    expect(p.stderr).toMatch(/"message":"the native data path failed","error":"delivery of \d+ output\(s\) failed: _(MSG_TIMED_OUT|UNKNOWN_TOPIC) \(/);
    expect(await committedOffsets(group, topics.input, 1)).toEqual([-1001]);
  });

  it('dead-letters an output over --max-message-bytes, cuts a copy over it, and skips and counts what cannot fit at all', async () => {
    const limit = 20_000;
    const topics = await createTopicSet('native-limits');
    const features = (i: number): number[] => row(vectors, i);
    // The scored output of `long` is keyed by its recordID: over the limit, and so is its copy.
    const { input, hugeKey, undecodable } = oversizeInputs(limit, 24_000, features);
    await produceAll(topics.input, input);
    const port = await freePort();
    const group = uniqueName('g-native-limits');
    let metrics = '';
    const p = await runWhile(topics, ['--metrics-port', String(port), '--group-id', group, '--max-message-bytes', String(limit),
      '--max-record-id-bytes', '30000'], async (_, progress) => {
      await progress.waitFor(input.length - 2, 60_000);
      await until('every record counted', async () => {
        metrics = (await get(port, '/metrics')).body;
        return sample(metrics, 'xgb_stream_records_in_total') === input.length;
      }, 30_000);
    });
    const all = await readToEnd(outputTopics(topics));
    expect(all.map((m) => m.key!.toString().slice(0, 8)).sort()).toEqual(['cut', 'long', 'v0', 'v1', 'v2', 'v3', 'v4']);
    const byKey = new Map(all.map((m) => [m.key!.toString(), m]));
    for (const [id, i] of OVERSIZE_VALID) {
      const m = byKey.get(id)!;
      const score = reference.predict(features(i));
      expect(m.topic).toBe(score >= vectors.threshold ? topics.suspicious : topics.regular);
      expect(m.value!.toString('hex')).toBe(floatValue(score));
    }
    const long = byKey.get('long')!;
    expect(long.topic).toBe(topics.deadLetter);
    expect(header(long, 'xgb.error.reason')).toBe('output-too-large');
    const longOutput = 61 + 32 + 24_000 + 4 + 10 + 'xgb.provenance'.length + `${topics.input}/0/1 ${vectors.modelVersion}`.length;
    expect(header(long, 'xgb.error.message')).toBe(`the scored output is ${longOutput} bytes, more than the 20000-byte limit`);
    // Its copy holds the recordID too: cut to fit.
    expect(header(long, 'xgb.error.truncated')).toBe('true');
    expect(header(long, 'xgb.error.original-size')).toBe(String(input[1].value!.length));
    expect(recordBytes(long as never)).toBe(limit);
    expect(Buffer.compare(long.value!, input[1].value!.subarray(0, long.value!.length))).toBe(0);

    const cut = byKey.get('cut')!;
    expect(cut.topic).toBe(topics.deadLetter);
    expect(header(cut, 'xgb.error.reason')).toBe('undecodable');
    expect(header(cut, 'xgb.error.truncated')).toBe('true');
    expect(header(cut, 'xgb.error.original-size')).toBe('30000');
    // Cut to the byte where the copy's estimate meets the limit, as the node path cuts it.
    expect(recordBytes(cut as never)).toBe(limit);
    expect(Buffer.compare(cut.value!, undecodable.subarray(0, cut.value!.length))).toBe(0);

    expectOversizeSkips(p.stderr, topics.input, hugeKey);
    expect(sample(metrics, 'xgb_stream_records_skipped_total{reason="output-too-large"}')).toBe(1);
    expect(sample(metrics, 'xgb_stream_records_skipped_total{reason="undecodable"}')).toBe(1);
    expect(sample(metrics, 'xgb_stream_dead_letters_total{reason="output-too-large"}')).toBe(1);
    expect(sample(metrics, 'xgb_stream_dead_letters_total{reason="undecodable"}')).toBe(1);
    expect(sample(metrics, 'xgb_stream_end_to_end_latency_seconds_count')).toBe(input.length - 2);
    expect(sample(metrics, 'xgb_stream_records_in_flight')).toBe(0);
    expect(await committedOffsets(group, topics.input, 1)).toEqual([input.length]);
  });

  it('dead-letters an output the broker refuses, and a refused dead letter is skipped; the stream goes on', async () => {
    const topics = await topicsWithLimit('native-refused', 100_000, true);
    const note = 'n'.repeat(150_000);
    // Its output carries the input's headers: over the output topics' limit, under --max-message-bytes.
    const big: OutgoingRecord = { key: 'big', value: encodePredictRequest({ recordID: 'big', featuresVector: row(vectors, 0) }),
      headers: [{ note }] };
    const after = requests(3, 'a');
    const p = await runWhile(topics, [], async (running, progress) => {
      await produceAll(topics.input, [big]);
      // Refused as a scored output, then as a dead letter (the dead-letter topic has the same limit).
      await running.waitForLog('"message":"record skipped: no output fits"', 60_000);
      // The records after it are not held up by it.
      await produceAll(topics.input, after);
      await progress.waitFor(after.length, 60_000);
    });
    const refusals = logLines(p.stderr, 'output refused');
    expect(refusals.map((r) => r.topic)).toEqual([expect.stringMatching(/-(suspicious|regular)$/), topics.deadLetter]);
    expect(refusals[0]).toMatchObject({ level: 'warn', sourcePartition: 0, sourceOffset: 0, code: 'MSG_SIZE_TOO_LARGE' });
    expect(logLines(p.stderr, 'record skipped: no output fits')).toEqual([expect.objectContaining({ level: 'error', offset: 0, keyPrefix: 'big', reason: 'output-too-large',
      error: `the output was refused: ${refusals[1].error}; the output topics' limit may be below --max-message-bytes` })]);
    const all = await readToEnd(outputTopics(topics));
    expect(all.map((m) => m.key!.toString()).sort()).toEqual(['a-0', 'a-1', 'a-2']);
  });

  it('exits 1 at start, naming a missing topic', async () => {
    const topics = await createTopicSet('native-missing');
    const absent = uniqueName('absent');
    const { code, stderr } = await runCli(['--brokers', process.env.KAFKA_BROKERS!, ...topicFlags(topics), ...NATIVE,
      '--regular-topic', absent]);
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
