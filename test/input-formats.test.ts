/**
 * JSON and Schema Registry framed requests through the real processor and broker: exact counts per
 * topic, exact dead-letter reasons, scores equal to the model's own, dead letters byte for byte.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Message } from 'node-rdkafka';
import { Classifier } from '../lib/classifier';
import { decodeScoredRecord, encodePredictRequest } from '../lib/codec';
import { frameValue, parseFrame } from '../lib/input/framing';
import { encodeValue } from '../lib/replay';
import { MODEL_DIR, MODEL_PATH, loadTestVectors, row, type TestVectors, loadReference } from './helpers/fixtures';
import {
  Collector, ProcessorProcess, brokers, createTopicSet, header, outputTopics, produceAll, readToEnd, runCli, topicFlags,
  uniqueName, type OutgoingRecord, type TopicSet,
} from './helpers/kafka';
import { SchemaRegistryStub } from './helpers/schema-registry-stub';

let vectors: TestVectors;
let classifier: Classifier;
beforeAll(() => {
  vectors = loadTestVectors();
  classifier = loadReference();
});
afterAll(() => classifier.close());

/** Runs the processor over `input` until `expected` outputs are out, stops it, and reads every output. */
async function runOver(topics: TopicSet, input: OutgoingRecord[], expected: number, args: string[]): Promise<Message[]> {
  await produceAll(topics.input, input);
  const progress = await Collector.start(outputTopics(topics));
  const p = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), '--group-id', uniqueName('g-input'), ...args]);
  try {
    await progress.waitFor(expected, 60_000).catch((err) => {
      throw new Error(`${(err as Error).message}; the processor's log:\n${p.stderr}`);
    });
    expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
  } finally {
    await progress.stop();
    if (p.child.exitCode === null) await p.kill('SIGKILL');
  }
  return readToEnd(outputTopics(topics));
}

/** Per key: the topic it went to and, for a dead letter, its reason. */
function routes(all: Message[], topics: TopicSet): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of all) {
    const key = m.key!.toString();
    expect(out[key]).toBeUndefined();
    out[key] = m.topic === topics.deadLetter ? `dlq ${header(m, 'xgb.error.reason')}` : 'scored';
  }
  return out;
}

function scoreOf(all: Message[], key: string): number {
  return decodeScoredRecord(all.find((m) => m.key!.toString() === key)!.value!).score;
}

describe('--input-format json', () => {
  it('scores requests by name and by vector, and dead-letters each fault with its own reason', async () => {
    const topics = await createTopicSet('json-in');
    const names = vectors.featureNames;
    const named = (id: string, i: number) => encodeValue({ recordID: id, features: row(vectors, i) }, { format: 'json', featureNames: names });
    // The same row with its features written in reverse order: the names place them, not the order.
    const reversed = (id: string, i: number): Buffer => {
      const r = row(vectors, i);
      const pairs = names.map((n, j) => `"${n}":${Number.isNaN(r[j]) ? 'null' : r[j]}`).reverse();
      return Buffer.from(`{"features":{${pairs.join(',')}},"recordID":"${id}"}`);
    };
    const full = names.map((n, j) => `"${n}":${j + 0.5}`);
    const json = (id: string, features: string): Buffer => Buffer.from(`{"recordID":"${id}","features":{${features}}}`);
    const bad: Record<string, Buffer> = {
      'missing': json('missing', full.slice(1).join(',')),
      'unknown': json('unknown', [...full, '"colour":1'].join(',')),
      'non-numeric': json('non-numeric', [`"${names[0]}":"12.5"`, ...full.slice(1)].join(',')),
      'duplicate': json('duplicate', [...full, `"${names[3]}":99999`].join(',')),
      'out-of-range': json('out-of-range', [`"${names[0]}":1e39`, ...full.slice(1)].join(',')),
      'not-json': Buffer.from(`{"recordID":"not-json","featuresVector":[1,2,3,NaN]}`),
      'protobuf': encodePredictRequest({ recordID: 'protobuf', featuresVector: row(vectors, 0) }),
    };
    // A row with a missing value (NaN) in the trainer's vectors: null in JSON.
    const withMissing = [...Array(vectors.rows).keys()].find((i) => row(vectors, i).some(Number.isNaN))!;
    const input: OutgoingRecord[] = [
      ...[0, 1, 2, 3].map((i) => ({ key: `n${i}`, value: named(`n${i}`, i) })),
      { key: 'rev', value: reversed('rev', 4) },
      ...[5, 6].map((i) => ({ key: `v${i}`, value: encodeValue({ recordID: `v${i}`, features: row(vectors, i) }, { format: 'json-vector' }) })),
      { key: 'nan-vector', value: encodeValue({ recordID: 'nan-vector', features: row(vectors, withMissing) }, { format: 'json-vector' }) },
      ...Object.entries(bad).map(([key, value]) => ({ key, value })),
    ];
    const all = await runOver(topics, input, input.length, ['--input-format', 'json']);

    expect(all).toHaveLength(input.length);
    expect(routes(all, topics)).toEqual({
      n0: 'scored', n1: 'scored', n2: 'scored', n3: 'scored', rev: 'scored', v5: 'scored', v6: 'scored', 'nan-vector': 'scored',
      missing: 'dlq missing-feature', unknown: 'dlq unknown-feature', 'non-numeric': 'dlq non-numeric-feature',
      duplicate: 'dlq duplicate-key', 'out-of-range': 'dlq feature-out-of-range', 'not-json': 'dlq undecodable',
      protobuf: 'dlq undecodable',
    });
    for (const i of [0, 1, 2, 3]) expect(scoreOf(all, `n${i}`)).toBe(classifier.predict(row(vectors, i)));
    expect(scoreOf(all, 'rev')).toBe(classifier.predict(row(vectors, 4)));
    for (const i of [5, 6]) expect(scoreOf(all, `v${i}`)).toBe(classifier.predict(row(vectors, i)));
    expect(scoreOf(all, 'nan-vector')).toBe(classifier.predict(row(vectors, withMissing)));

    const dlq = new Map(all.filter((m) => m.topic === topics.deadLetter).map((m) => [m.key!.toString(), m]));
    for (const [key, value] of Object.entries(bad)) expect(dlq.get(key)!.value!.equals(value)).toBe(true);
    expect(header(dlq.get('missing')!, 'xgb.error.message'))
      .toBe(`feature '${names[0]}' missing (--allow-missing-features scores them as missing)`);
    expect(header(dlq.get('unknown')!, 'xgb.error.message')).toBe("feature 'colour' is not one of the model's 10");
    expect(header(dlq.get('duplicate')!, 'xgb.error.message')).toBe(`key '${names[3]}' appears twice in the request.features`);
  });

  it('scores an absent feature as missing with --allow-missing-features', async () => {
    const topics = await createTopicSet('json-allow');
    const r = row(vectors, 9);
    const names = vectors.featureNames;
    const partial = Object.fromEntries(names.slice(0, 7).map((n, j) => [n, Number.isNaN(r[j]) ? null : r[j]]));
    const input = [{ key: 'partial', value: Buffer.from(JSON.stringify({ recordID: 'partial', features: partial })) }];
    const all = await runOver(topics, input, 1, ['--input-format', 'json', '--allow-missing-features']);
    expect(routes(all, topics)).toEqual({ partial: 'scored' });
    expect(scoreOf(all, 'partial')).toBe(classifier.predict([...r.slice(0, 7), NaN, NaN, NaN]));
  });

  it('refuses to start with a model that has no feature names (exit 2)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'xgb-nonames-'));
    // Edited as text: a JSON.parse round trip would turn xgboost's 1.0 into 1, which it then refuses.
    const text = readFileSync(path.join(MODEL_DIR, 'model.json'), 'utf8');
    const stripped = text.replace(/"feature_names":\s*\[[^\]]*\]/g, '"feature_names":[]').replace(/"feature_types":\s*\[[^\]]*\]/g, '"feature_types":[]');
    writeFileSync(path.join(dir, 'model.json'), stripped);
    const nameless = Classifier.load(path.join(dir, 'model.json'));
    expect(nameless.featureNames).toBeUndefined();
    nameless.close();
    const r = await runCli(['--brokers', '127.0.0.1:1', '--input-format', 'json', '--model', path.join(dir, 'model.json')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('xgb-stream: --input-format json needs a model with feature names (the trainer writes them; '
      + 'set booster.feature_names before saving a model of your own)\n');
  });
});

describe('Schema Registry framed input', () => {
  let registry: SchemaRegistryStub;
  beforeAll(async () => {
    registry = await SchemaRegistryStub.start({
      1: { schema: readFileSync(path.join(__dirname, '..', 'proto', 'predict.proto'), 'utf8'), schemaType: 'PROTOBUF' },
      2: { schema: 'syntax = "proto3";\nmessage Audit { string who = 1; }\nmessage Tx { string id = 1; repeated float f = 4; }', schemaType: 'PROTOBUF' },
      3: { schema: 'syntax = "proto3";\nmessage Tx { string id = 1; repeated double f = 4; }', schemaType: 'PROTOBUF' },
    });
  });
  afterAll(() => registry.stop());

  const request = (id: string, i: number): Buffer => encodePredictRequest({ recordID: id, featuresVector: row(vectors, i) });

  it('with --schema-registry, scores compatible schemas and dead-letters the others as incompatible-schema', async () => {
    const topics = await createTopicSet('framed-registry');
    const input: OutgoingRecord[] = [
      { key: 'id1', value: frameValue(1, request('id1', 0), [0]) },
      { key: 'id2-tx', value: frameValue(2, request('id2-tx', 1), [1]) },
      { key: 'bare', value: request('bare', 2) },
      { key: 'id1-again', value: frameValue(1, request('id1-again', 3), [0]) },
      { key: 'id2-audit', value: frameValue(2, request('id2-audit', 4), [0]) },
      { key: 'id3', value: frameValue(3, request('id3', 5), [0]) },
      { key: 'id404', value: frameValue(404, request('id404', 6), [0]) },
      { key: 'short', value: Buffer.from([0, 0, 1]) },
    ];
    const all = await runOver(topics, input, input.length, ['--schema-registry', registry.url]);
    expect(all).toHaveLength(input.length);
    expect(routes(all, topics)).toEqual({
      id1: 'scored', 'id2-tx': 'scored', bare: 'scored', 'id1-again': 'scored',
      'id2-audit': 'dlq incompatible-schema', id3: 'dlq incompatible-schema', id404: 'dlq incompatible-schema',
      short: 'dlq undecodable',
    });
    expect(scoreOf(all, 'id2-tx')).toBe(classifier.predict(row(vectors, 1)));
    const dlq = new Map(all.filter((m) => m.topic === topics.deadLetter).map((m) => [m.key!.toString(), m]));
    expect(header(dlq.get('id3')!, 'xgb.error.message'))
      .toBe('schema id 3 message Tx: field 4 is repeated double f, a PredictRequest needs repeated float featuresVector');
    expect(header(dlq.get('id404')!, 'xgb.error.message')).toBe('schema id 404: not found in the registry');
    expect(header(dlq.get('short')!, 'xgb.error.message')).toBe('bad Schema Registry framing: framed value is 3 bytes, shorter than the 5-byte header');
    // Each id looked up once, however many records named it.
    expect(registry.requests.map((r) => r.path).sort()).toEqual(['/schemas/ids/1', '/schemas/ids/2', '/schemas/ids/3', '/schemas/ids/404']);
  });

  it('with --output-framing confluent, registers ScoredRecord under each output subject and frames the outputs', async () => {
    const topics = await createTopicSet('framed-out');
    const before = registry.requests.length;
    const input: OutgoingRecord[] = [0, 1, 2, 3].map((i) => ({ key: `o${i}`, value: frameValue(1, request(`o${i}`, i), [0]) }));
    const all = await runOver(topics, input, input.length, ['--schema-registry', registry.url, '--output-framing', 'confluent']);
    // A new process: schema 1 is looked up again, once.
    expect(registry.requests.slice(before).map((r) => `${r.method} ${r.path}`).sort()).toEqual([
      'GET /schemas/ids/1', `POST /subjects/${topics.regular}-value/versions`, `POST /subjects/${topics.suspicious}-value/versions`,
    ].sort());
    expect(all).toHaveLength(4);
    for (const m of all) {
      expect(m.topic).not.toBe(topics.deadLetter);
      // predict.proto is schema 1 in the registry already, so both subjects get that id.
      expect(m.value!.subarray(0, 7).toString('hex')).toBe('00000000010202');
      const frame = parseFrame(m.value!, true);
      expect([frame.schemaId, frame.messageIndexes]).toEqual([1, [1]]);
      const i = Number(m.key!.toString().slice(1));
      expect(decodeScoredRecord(frame.payload).score).toBe(classifier.predict(row(vectors, i)));
    }
  });

  it('with --output-framing confluent, stops at the start with exit 2 when the registry refuses the schema', async () => {
    const locked = await SchemaRegistryStub.start({}, 'writer:secret');
    try {
      const topics = await createTopicSet('framed-refused');
      const r = await runCli(['--brokers', brokers(), ...topicFlags(topics), '--group-id', uniqueName('g-refused'),
        '--schema-registry', locked.url, '--output-framing', 'confluent']);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`xgb-stream: --output-framing confluent: the registry refused the schema of subject ${topics.suspicious}-value: `
        + 'HTTP 401 {"error_code":401,"message":"Unauthorized"}\n');
      // Refused at the first subject, before the consumer was even connected.
      expect(locked.requests.map((q) => `${q.method} ${q.path}`)).toEqual([`POST /subjects/${topics.suspicious}-value/versions`]);
    } finally {
      await locked.stop();
    }
  });

  it('with --input-framing confluent, reads framed protobuf of any id, and framed JSON', async () => {
    const topics = await createTopicSet('framed-plain');
    const input: OutgoingRecord[] = [
      { key: 'f0', value: frameValue(9, request('f0', 0), [0]) },
      { key: 'f02', value: frameValue(9, request('f02', 1), [0, 2]) },
      { key: 'bare', value: request('bare', 2) },
    ];
    const all = await runOver(topics, input, input.length, ['--input-framing', 'confluent']);
    expect(routes(all, topics)).toEqual({ f0: 'scored', f02: 'scored', bare: 'scored' });
    expect(scoreOf(all, 'f02')).toBe(classifier.predict(row(vectors, 1)));

    const jsonTopics = await createTopicSet('framed-json');
    const framedJson = encodeValue({ recordID: 'j', features: row(vectors, 3) }, { format: 'json', featureNames: vectors.featureNames, schemaId: 12 });
    expect(framedJson.subarray(0, 6).toString('hex')).toBe('000000000c7b');
    const jsonAll = await runOver(jsonTopics, [{ key: 'j', value: framedJson }], 1, ['--input-format', 'json', '--input-framing', 'confluent']);
    expect(routes(jsonAll, jsonTopics)).toEqual({ j: 'scored' });
    expect(scoreOf(jsonAll, 'j')).toBe(classifier.predict(row(vectors, 3)));
  });
});
