/**
 * The replay tool (dist/replay.js) against the real broker: exact counts, keys, label headers and
 * values on the topic, its pacing at a fixed rate, and its errors.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Message } from 'node-rdkafka';
import { decodePredictRequest } from '../lib/codec';
import { readReplayFile, type ReplayRecord } from '../lib/replay';
import { MODEL_DIR, loadTestVectors } from './helpers/fixtures';
import { ROOT, brokers, createTopics, header, readToEnd, uniqueName } from './helpers/kafka';

const REPLAY = path.join(ROOT, 'dist', 'replay.js');
const REPLAY_SET = path.join(MODEL_DIR, 'replay.ndjson.gz');

function runReplay(args: readonly string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [REPLAY, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Reads a whole topic to its end, once the replay tool has returned (every send acknowledged). */
async function readTopic(topic: string, count: number): Promise<Message[]> {
  const all = await readToEnd([topic]);
  expect(all).toHaveLength(count);
  return all;
}

let records: ReplayRecord[];
let tmp: string;

beforeAll(() => {
  records = readReplayFile(REPLAY_SET);
  tmp = mkdtempSync(path.join(tmpdir(), 'xgb-replay-test-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function expectRequestOf(m: Message, r: ReplayRecord): void {
  expect(m.key?.toString()).toBe(r.recordID);
  expect(header(m, 'label')).toBe(String(r.label));
  const request = decodePredictRequest(m.value!);
  expect(request.recordID).toBe(r.recordID);
  // The wire carries float32: the trainer printed float32 values as doubles, so fround gives them back.
  expect(request.featuresVector).toEqual(r.features.map((v) => Math.fround(v)));
}

describe('xgb-stream-replay', () => {
  it('sends the first --count records of the replay set, keyed by recordID with their label header', async () => {
    const topic = uniqueName('replay-count');
    await createTopics([topic]);
    const before = Date.now();
    const run = await runReplay(['--brokers', brokers(), '--topic', topic, '--count', '500', '--json']);
    expect(run.stderr).not.toContain('Error');
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout);
    expect(summary).toMatchObject({ topic, sent: 500, failed: 0, targetRate: 0 });
    const frauds = records.slice(0, 500).filter((r) => r.label === 1).length;
    expect(summary.labels).toEqual({ 0: 500 - frauds, 1: frauds, none: 0 });

    const messages = await readTopic(topic, 500);
    expect(messages).toHaveLength(500);
    messages.forEach((m, i) => {
      expectRequestOf(m, records[i]);
      // The record's timestamp is its send time, from which the processor measures latency.
      expect(m.timestamp).toBeGreaterThanOrEqual(before);
      expect(m.timestamp).toBeLessThanOrEqual(Date.now());
    });
  });

  it('cycles through a file shorter than --count and sends null features as NaN', async () => {
    const few = records.slice(0, 40);
    // The trainer's replay set has no missing values; blank out two features of every fifth record.
    const lines = few.map((r, i) => JSON.stringify({ recordID: r.recordID, eventTimeMs: 0, label: r.label,
      features: r.features.map((v, j) => (i % 5 === 0 && (j === 1 || j === 7) ? null : v)) }));
    const file = path.join(tmp, 'few.ndjson');
    writeFileSync(file, `${lines.join('\n')}\n`);
    const topic = uniqueName('replay-cycle');
    await createTopics([topic], 3);

    const run = await runReplay(['--brokers', brokers(), '--topic', topic, '--file', file, '--count', '100', '--json']);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ sent: 100, failed: 0 });

    const messages = await readTopic(topic, 100);
    expect(messages).toHaveLength(100);
    const perKey = new Map<string, number>();
    for (const m of messages) perKey.set(m.key!.toString(), (perKey.get(m.key!.toString()) ?? 0) + 1);
    // 100 = 2 full passes over 40 records and the first 20 once more.
    few.forEach((r, i) => expect(perKey.get(r.recordID)).toBe(i < 20 ? 3 : 2));
    // The default partitioner hashes the key: one record's copies all land in one partition.
    const partitionOf = new Map<string, Set<number>>();
    for (const m of messages) {
      const set = partitionOf.get(m.key!.toString()) ?? new Set<number>();
      set.add(m.partition);
      partitionOf.set(m.key!.toString(), set);
    }
    for (const set of partitionOf.values()) expect(set.size).toBe(1);
    expect(new Set(messages.map((m) => m.partition)).size).toBeGreaterThan(1);

    const blanked = messages.find((m) => m.key!.toString() === few[0].recordID)!;
    const features = decodePredictRequest(blanked.value!).featuresVector;
    expect(Number.isNaN(features[1]) && Number.isNaN(features[7])).toBe(true);
    expect(features.filter(Number.isNaN)).toHaveLength(2);
  });

  it('sends --random records without a label header', async () => {
    const topic = uniqueName('replay-random');
    await createTopics([topic]);
    const run = await runReplay(['--brokers', brokers(), '--topic', topic, '--random', '250', '--json']);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ sent: 250, failed: 0, labels: { 0: 0, 1: 0, none: 250 } });
    const messages = await readTopic(topic, 250);
    expect(messages).toHaveLength(250);
    expect(new Set(messages.map((m) => m.key!.toString())).size).toBe(250);
    for (const m of messages) {
      expect(header(m, 'label')).toBeUndefined();
      const features = decodePredictRequest(m.value!).featuresVector;
      expect(features).toHaveLength(10);
      expect(features.every(Number.isFinite)).toBe(true);
    }
  });

  it('paces a fixed --rate: no record is sent before its due time, i / rate after the first', async () => {
    const topic = uniqueName('replay-rate');
    await createTopics([topic]);
    const run = await runReplay(['--brokers', brokers(), '--topic', topic, '--count', '600', '--rate', '300', '--json']);
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout);
    process.stdout.write(`replay rate: ${summary.rate.toFixed(1)} records/s over ${summary.elapsedMs.toFixed(0)} ms `
      + '(asked for 300)\n');
    expect(summary.sent).toBe(600);
    expect(summary.targetRate).toBe(300);
    // How close the rate comes to 300 depends on the machine's load, so it is the bench's business. That
    // no record leaves early does not: record i is due (i - 1) / 300 s after the first at the earliest.
    expect(summary.elapsedMs).toBeGreaterThanOrEqual((599 * 1000) / 300);
    const messages = await readTopic(topic, 600);
    const times = messages.map((m) => m.timestamp!).sort((a, b) => a - b);
    times.forEach((t, i) => expect(t - times[0]).toBeGreaterThanOrEqual(Math.floor(((i - 1) * 1000) / 300) - 1));
  });

  it('sends JSON by the trainer\'s feature names, framed, and JSON vectors', async () => {
    const names = loadTestVectors().featureNames;
    const topic = uniqueName('replay-json');
    await createTopics([topic]);
    const run = await runReplay(['--brokers', brokers(), '--topic', topic, '--count', '20', '--format', 'json', '--schema-id', '5']);
    expect(run.code).toBe(0);
    const messages = await readTopic(topic, 20);
    messages.forEach((m, i) => {
      // The JSON Schema serializer's layout: magic byte, id 5, no message indexes.
      expect(m.value!.subarray(0, 5).toString('hex')).toBe('0000000005');
      const body = JSON.parse(m.value!.subarray(5).toString('utf8'));
      expect(Object.keys(body.features)).toEqual(names);
      expect(body).toEqual({ recordID: records[i].recordID, features: Object.fromEntries(names.map((n, j) => [n, records[i].features[j]])) });
    });

    const vectorTopic = uniqueName('replay-json-vector');
    await createTopics([vectorTopic]);
    const file = path.join(tmp, 'with-missing.ndjson');
    writeFileSync(file, `${JSON.stringify({ recordID: 'm', label: 1, features: [1.5, null, 3] })}\n`);
    const vector = await runReplay(['--brokers', brokers(), '--topic', vectorTopic, '--file', file, '--format', 'json-vector']);
    expect(vector.code).toBe(0);
    const [m] = await readTopic(vectorTopic, 1);
    expect(m.value!.toString()).toBe('{"recordID":"m","featuresVector":[1.5,null,3]}');
  });

  it('exits with status 2 when --format json has no feature names to write', async () => {
    const run = await runReplay(['--brokers', brokers(), '--random', '3', '--features', '4', '--format', 'json']);
    expect(run).toMatchObject({ code: 2, stderr: 'xgb-stream-replay: --format json needs 4 feature names: pass --feature-names\n' });
    const wrong = await runReplay(['--brokers', brokers(), '--random', '3', '--features', '4', '--format', 'json', '--feature-names', 'a,b']);
    expect(wrong).toMatchObject({ code: 2, stderr: 'xgb-stream-replay: --format json needs 4 feature names: pass --feature-names (got 2)\n' });
  });

  it('exits with status 2 naming a replay file that does not exist', async () => {
    const missing = path.join(tmp, 'no-such-replay.ndjson.gz');
    const run = await runReplay(['--brokers', brokers(), '--file', missing]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`cannot read replay file ${missing}`);
  });

  it('exits with status 2 naming the line of a malformed record', async () => {
    const file = path.join(tmp, 'bad.ndjson');
    writeFileSync(file, `${JSON.stringify({ recordID: 'a', label: 0, features: [1, 2] })}\n{"recordID": "b", "features": [1, "x"]}\n`);
    const run = await runReplay(['--brokers', brokers(), '--file', file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`${file}:2: feature 1 is "x"`);
  });

  it('exits with status 1 when the topic does not exist, without waiting for delivery timeouts', async () => {
    const topic = uniqueName('replay-missing-topic');
    const started = Date.now();
    const run = await runReplay(['--brokers', brokers(), '--topic', topic, '--random', '5']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`topic ${topic} does not exist`);
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
