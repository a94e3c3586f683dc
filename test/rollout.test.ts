/**
 * Live model rollout on the real broker: a reload mid-stream (SIGHUP), candidates the gate refuses
 * (POST /-/reload), and a shadow model compared on every record, then promoted (--watch-model).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Classifier } from '../lib/classifier';
import { decodeScoredRecord } from '../lib/codec';
import { RecentRows } from '../lib/processor/model/recent-rows';
import { replay, type ReplayRecord } from '../lib/replay';
import { CANDIDATE_DIR, MODEL_DIR, loadTestVectors, replayRecords, row, type TestVectors, loadReference } from './helpers/fixtures';
import { freePort, get, request, sample } from './helpers/http';
import { until } from './helpers/in-process';
import {
  Collector, ProcessorProcess, ROOT, brokers, createTopicSet, createTopics, outputTopics, readToEnd, topicFlags,
  uniqueName,
} from './helpers/kafka';

let vectors: TestVectors;
let v1: Classifier;
let v2: Classifier;
const work = mkdtempSync(path.join(os.tmpdir(), 'xgb-stream-rollout-'));

beforeAll(() => {
  vectors = loadTestVectors();
  v1 = loadReference(path.join(MODEL_DIR, 'model.ubj'));
  v2 = loadReference(path.join(CANDIDATE_DIR, 'model.ubj'));
});
afterAll(() => {
  v1.close();
  v2.close();
  rmSync(work, { recursive: true, force: true });
});

const version = (c: Classifier): string => c.attribute('model_version')!;

/** A directory the processor's --model points into: the model file and, unless told not to, its test vectors. */
function liveCopy(from: string, withTestVectors = true): string {
  const dir = mkdtempSync(path.join(work, 'live-'));
  cpSync(path.join(from, 'model.ubj'), path.join(dir, 'model.ubj'));
  if (withTestVectors) cpSync(path.join(from, 'test-vectors'), path.join(dir, 'test-vectors'), { recursive: true });
  return path.join(dir, 'model.ubj');
}

/**
 * Puts a model in place as a deploy does: its test vectors first (or none), then the file written
 * beside the live one and renamed over it.
 */
function deploy(modelPath: string, model: Buffer, testVectors: string | undefined): void {
  const dir = path.dirname(modelPath);
  rmSync(path.join(dir, 'test-vectors'), { recursive: true, force: true });
  if (testVectors !== undefined) cpSync(testVectors, path.join(dir, 'test-vectors'), { recursive: true });
  writeFileSync(`${modelPath}.new`, model);
  renameSync(`${modelPath}.new`, modelPath);
}

/** Valid requests built from the test vectors, row `first + i` for the i-th. */
function records(prefix: string, count: number, first = 0): ReplayRecord[] {
  return replayRecords(vectors, prefix, count, first);
}

function rowIndex(recordID: string): number {
  return Number(recordID.slice(recordID.lastIndexOf('-') + 1));
}

/** The processor's JSON log lines with the given message. */
function logLines(p: ProcessorProcess, message: string): Array<Record<string, unknown>> {
  return p.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
    .filter((l) => l.message === message);
}

async function send(topic: string, batch: ReplayRecord[], rate = 0): Promise<void> {
  const summary = await replay({ brokers: brokers(), topic, records: batch, rate });
  expect(summary).toMatchObject({ sent: batch.length, failed: 0 });
}

describe('live model rollout', () => {
  it('swaps the model on SIGHUP mid-stream: v1 before the logged offsets, v2 after, nothing lost or doubled', async () => {
    const topics = await createTopicSet('reload', 2);
    const modelPath = liveCopy(MODEL_DIR);
    const port = await freePort();
    const p = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), '--model', modelPath,
      '--metrics-port', String(port), '--batch-size', '50']);
    const progress = await Collector.start(outputTopics(topics));
    const n = 8000;
    try {
      await p.waitForLog('partitions assigned');
      // A steady stream of 8,000 records over about 4 s; the new model goes in halfway.
      const streaming = send(topics.input, records('r', n), 2000);
      await progress.waitFor(n / 2, 60_000);
      deploy(modelPath, readFileSync(path.join(CANDIDATE_DIR, 'model.ubj')), path.join(CANDIDATE_DIR, 'test-vectors'));
      p.child.kill('SIGHUP');
      await p.waitForLog('model reloaded');
      await streaming;
      await progress.waitFor(n, 60_000);
      const metrics = (await get(port, '/metrics')).body;
      expect(sample(metrics, `xgb_stream_model_info{libxgboost="3.4.1",saved_by_xgboost="3.4.1",version="${version(v2)}"}`)).toBe(1);
      expect(metrics).not.toContain(`version="${version(v1)}"`);
      expect(sample(metrics, 'xgb_stream_model_reloads_total{result="success"}')).toBe(1);
      expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    } finally {
      await progress.stop();
      if (p.child.exitCode === null) await p.kill('SIGKILL');
    }

    const all = await readToEnd(outputTopics(topics));
    expect(all).toHaveLength(n);
    expect(new Set(all.map((m) => m.key!.toString())).size).toBe(n);
    const tookOver = new Map(logLines(p, 'model version took over').map((l) => [l.partition as number, l.offset as number]));
    expect([...tookOver.keys()].sort()).toEqual([0, 1]);
    for (const l of logLines(p, 'model version took over')) {
      expect(l).toMatchObject({ modelVersion: version(v2), previousVersion: version(v1) });
    }
    const counts = { v1: 0, v2: 0 };
    const scoredAt = new Set<number>();
    let lastByV1 = 0;
    let firstByV2 = Infinity;
    for (const m of all) {
      const r = decodeScoredRecord(m.value!);
      const features = row(vectors, rowIndex(r.recordID));
      const after = r.sourceOffset >= tookOver.get(r.sourcePartition)!;
      const model = after ? v2 : v1;
      expect(r.modelVersion).toBe(version(model));
      expect(r.score).toBe(model.predict(features));
      counts[after ? 'v2' : 'v1']++;
      scoredAt.add(r.scoredTimestampMs);
      if (after) firstByV2 = Math.min(firstByV2, r.scoredTimestampMs);
      else lastByV1 = Math.max(lastByV1, r.scoredTimestampMs);
    }
    // Batch boundaries in time: the longest gap between two batches while the stream ran.
    const times = [...scoredAt].sort((a, b) => a - b);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    process.stdout.write(`reload: took over at ${JSON.stringify(Object.fromEntries(tookOver))}; `
      + `${counts.v1} outputs by v1, ${counts.v2} by v2; gap between the last v1 batch and the first v2 one `
      + `${firstByV2 - lastByV1} ms; longest gap between batches over the run ${Math.max(...gaps)} ms\n`);
    // Batches are scored one after another, so every v1 output was scored before the first v2 one.
    expect(firstByV2).toBeGreaterThanOrEqual(lastByV1);
    expect(counts.v1).toBeGreaterThan(0);
    expect(counts.v2).toBeGreaterThan(0);
  }, 180_000);

  it('refuses a corrupt file, 9 features, disagreeing test vectors and a canary over --max-alert-rate-ratio; v1 keeps serving', async () => {
    const topics = await createTopicSet('reject', 1);
    const modelPath = liveCopy(MODEL_DIR);
    const port = await freePort();
    const canaryRows = 600;
    const p = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), '--model', modelPath,
      '--metrics-port', String(port), '--enable-lifecycle', '--canary-rows', String(canaryRows),
      '--max-alert-rate-ratio', '1.25']);
    const progress = await Collector.start(outputTopics(topics));
    let sent = 0;
    const sendMore = async (count: number): Promise<void> => {
      await send(topics.input, records('x', count, sent));
      sent += count;
      await progress.waitFor(sent, 60_000);
    };
    const reload = async () => {
      const r = await request(port, '/-/reload', 'POST');
      return { status: r.status, body: JSON.parse(r.body) as Record<string, unknown> };
    };
    // A 9-feature model, and the default model with its threshold attribute lowered to 0.005.
    const nine = path.join(work, 'nine.ubj');
    const lowThreshold = path.join(work, 'low-threshold.ubj');
    execFileSync('bash', [path.join(ROOT, 'scripts/python.sh'), '-c', [
      'import sys, numpy as np, xgboost as xgb',
      'rng = np.random.default_rng(1); X = rng.random((200, 9)); y = (X[:, 0] > 0.5).astype(int)',
      "b = xgb.train({'objective': 'binary:logistic', 'max_depth': 2}, xgb.DMatrix(X, label=y), 5)",
      "b.set_attr(model_version='nine-features'); b.save_model(sys.argv[1])",
      'low = xgb.Booster(model_file=sys.argv[2])',
      "low.set_attr(threshold='0.005', model_version='low-threshold'); low.save_model(sys.argv[3])",
    ].join('\n'), nine, path.join(MODEL_DIR, 'model.ubj'), lowThreshold]);
    const tamperedVectors = path.join(work, 'tampered-vectors');
    cpSync(path.join(CANDIDATE_DIR, 'test-vectors'), tamperedVectors, { recursive: true });
    const probabilities = readFileSync(path.join(tamperedVectors, 'probabilities.f32'));
    probabilities.writeFloatLE(probabilities.readFloatLE(17 * 4) + 0.01, 17 * 4);
    writeFileSync(path.join(tamperedVectors, 'probabilities.f32'), probabilities);
    const candidate = readFileSync(path.join(CANDIDATE_DIR, 'model.ubj'));

    try {
      await p.waitForLog('partitions assigned');
      await sendMore(canaryRows);
      const cases: Array<{ model: Buffer; vectors?: string; gate: string; reason: string | RegExp }> = [
        { model: Buffer.from('not a model at all'), gate: 'load', reason: `Cannot load XGBoost model from ${modelPath}: `
          + 'it is not an XGBoost model: neither JSON, UBJSON nor the legacy binary format' },
        { model: readFileSync(nine), gate: 'features', reason: 'the candidate takes 9 features, the serving model 10' },
        { model: candidate, vectors: tamperedVectors, gate: 'test-vectors',
          reason: /^test vector 17 of 4000 in .*: the candidate scores 0\.\d+, the trainer recorded 0\.\d+$/ },
        { model: candidate, vectors: path.join(MODEL_DIR, 'test-vectors'), gate: 'test-vectors',
          reason: `${path.join(path.dirname(modelPath), 'test-vectors')} belongs to model version ${version(v1)}, `
            + `the candidate is ${version(v2)}` },
        { model: readFileSync(lowThreshold), gate: 'canary', reason: /above --max-alert-rate-ratio 1.25$/ },
      ];
      for (const [i, c] of cases.entries()) {
        deploy(modelPath, c.model, c.vectors);
        const r = await reload();
        expect(r.status).toBe(409);
        expect(r.body).toMatchObject({ result: 'rejected', gate: c.gate, modelVersion: version(v1) });
        if (typeof c.reason === 'string') expect(r.body.reason).toBe(c.reason);
        else expect(r.body.reason).toMatch(c.reason);
        const warned = logLines(p, 'model reload rejected: the serving model stays');
        expect(warned).toHaveLength(i + 1);
        expect(warned[i]).toMatchObject({ level: 'warn', gate: c.gate, reason: r.body.reason, servingVersion: version(v1) });
        // Still v1: the records sent after the rejection are scored by it.
        await sendMore(50);
      }

      // The canary of the last case: both models on the last 600 live rows, as the test computes them.
      const lastRows = Array.from({ length: canaryRows }, (_, i) => v1.predict(row(vectors, sent - 50 - canaryRows + i)));
      const servingRate = lastRows.filter((s) => s >= 0.5).length / canaryRows;
      const candidateRate = lastRows.filter((s) => s >= 0.005).length / canaryRows;
      expect(servingRate).toBeGreaterThan(0);
      expect(candidateRate / servingRate).toBeGreaterThan(1.25);
      const metrics = (await get(port, '/metrics')).body;
      expect(sample(metrics, 'xgb_stream_canary_rows')).toBe(canaryRows);
      expect(sample(metrics, 'xgb_stream_canary_alert_rate{model="serving"}')).toBeCloseTo(servingRate, 12);
      expect(sample(metrics, 'xgb_stream_canary_alert_rate{model="candidate"}')).toBeCloseTo(candidateRate, 12);
      expect(sample(metrics, 'xgb_stream_canary_max_score_change')).toBe(0);
      expect(sample(metrics, 'xgb_stream_model_reloads_total{result="rejected"}')).toBe(5);
      expect(sample(metrics, 'xgb_stream_model_reloads_total{result="success"}')).toBe(0);
      for (const [gate, count] of [['load', 1], ['features', 1], ['test-vectors', 2], ['canary', 1]] as const) {
        expect(sample(metrics, `xgb_stream_model_reload_rejections_total{gate="${gate}"}`)).toBe(count);
      }

      // The real candidate, with its own test vectors, passes.
      deploy(modelPath, candidate, path.join(CANDIDATE_DIR, 'test-vectors'));
      const passed = await reload();
      expect(passed.status).toBe(200);
      expect(passed.body).toMatchObject({ result: 'success', modelVersion: version(v2), previousVersion: version(v1),
        testVectors: 4000 });
      await sendMore(50);
      // A GET does not reload.
      expect((await request(port, '/-/reload')).status).toBe(405);
      expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    } finally {
      await progress.stop();
      if (p.child.exitCode === null) await p.kill('SIGKILL');
    }

    const all = await readToEnd(outputTopics(topics));
    expect(all).toHaveLength(sent);
    for (const m of all) {
      const r = decodeScoredRecord(m.value!);
      const i = rowIndex(r.recordID);
      const model = i >= sent - 50 ? v2 : v1;
      expect(r.modelVersion).toBe(version(model));
      expect(r.score).toBe(model.predict(row(vectors, i)));
    }
  }, 180_000);

  it('compares a shadow model on every record, writes its ScoredRecords, and stops once a reload promotes it', async () => {
    const topics = await createTopicSet('shadow', 2);
    const shadowTopic = uniqueName('shadow-out');
    await createTopics([shadowTopic]);
    const modelPath = liveCopy(MODEL_DIR);
    const port = await freePort();
    const p = ProcessorProcess.start(['--log-level', 'info', ...topicFlags(topics), '--model', modelPath,
      '--shadow-model', path.join(CANDIDATE_DIR, 'model.ubj'), '--shadow-topic', shadowTopic,
      '--metrics-port', String(port), '--watch-model']);
    const progress = await Collector.start(outputTopics(topics));
    const n = 3000;
    let metrics: string;
    try {
      await p.waitForLog('partitions assigned');
      await send(topics.input, records('s', n));
      await progress.waitFor(n, 60_000);
      await until('the shadow counted every record', async () =>
        sample((await get(port, '/metrics')).body, 'xgb_stream_shadow_records_total') === n, 30_000);
      metrics = (await get(port, '/metrics')).body;
      // Without --enable-lifecycle there is no reload endpoint, and the model stays.
      const refused = await request(port, '/-/reload', 'POST');
      expect(refused).toMatchObject({ status: 403,
        body: 'the lifecycle API is not enabled: start xgb-stream with --enable-lifecycle\n' });
      // Promotion: the shadow's files renamed into place; --watch-model reloads them.
      deploy(modelPath, readFileSync(path.join(CANDIDATE_DIR, 'model.ubj')), path.join(CANDIDATE_DIR, 'test-vectors'));
      await p.waitForLog('the shadow model now serves');
      expect(logLines(p, 'reloading the model')).toEqual([expect.objectContaining({ trigger: 'watch' })]);
      expect(sample((await get(port, '/metrics')).body, 'xgb_stream_shadow_active')).toBe(0);
      expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    } finally {
      await progress.stop();
      if (p.child.exitCode === null) await p.kill('SIGKILL');
    }

    // What the shadow metrics must say, computed here from both models' own predictions.
    let agreements = 0;
    let servingAlerts = 0;
    let shadowAlerts = 0;
    let within001 = 0;
    for (let i = 0; i < n; i++) {
      const a = v1.predict(row(vectors, i));
      const b = v2.predict(row(vectors, i));
      if ((a >= 0.5) === (b >= 0.5)) agreements++;
      if (a >= 0.5) servingAlerts++;
      if (b >= 0.5) shadowAlerts++;
      if (Math.abs(b - a) <= 0.01) within001++;
    }
    process.stdout.write(`shadow: ${agreements} of ${n} agree; alerts ${servingAlerts} serving, ${shadowAlerts} shadow\n`);
    expect(sample(metrics!, 'xgb_stream_shadow_records_total')).toBe(n);
    expect(sample(metrics!, 'xgb_stream_shadow_agreements_total')).toBe(agreements);
    expect(sample(metrics!, 'xgb_stream_shadow_agreement_ratio')).toBeCloseTo(agreements / n, 12);
    expect(sample(metrics!, 'xgb_stream_shadow_alerts_total{model="serving"}')).toBe(servingAlerts);
    expect(sample(metrics!, 'xgb_stream_shadow_alerts_total{model="shadow"}')).toBe(shadowAlerts);
    expect(sample(metrics!, 'xgb_stream_shadow_score_difference_count')).toBe(n);
    expect(sample(metrics!, 'xgb_stream_shadow_score_difference_bucket{le="0.01"}')).toBe(within001);
    expect(sample(metrics!, 'xgb_stream_shadow_active')).toBe(1);
    expect(agreements).toBeLessThan(n);

    // Routing follows the serving model only; the shadow's records carry its own version and scores.
    const routed = await readToEnd(outputTopics(topics));
    expect(routed).toHaveLength(n);
    for (const m of routed) {
      const r = decodeScoredRecord(m.value!);
      const a = v1.predict(row(vectors, rowIndex(r.recordID)));
      expect(r).toMatchObject({ score: a, modelVersion: version(v1) });
      expect(m.topic).toBe(a >= 0.5 ? topics.suspicious : topics.regular);
    }
    const shadowed = await readToEnd([shadowTopic]);
    expect(shadowed).toHaveLength(n);
    for (const m of shadowed) {
      const r = decodeScoredRecord(m.value!);
      const b = v2.predict(row(vectors, rowIndex(r.recordID)));
      expect(m.key!.toString()).toBe(r.recordID);
      expect(r).toMatchObject({ score: b, suspicious: b >= 0.5, modelVersion: version(v2), sourceTopic: topics.input });
    }
  }, 180_000);
});

describe('the canary\'s recent rows', () => {
  it('keeps the last rows added, across batches larger and smaller than its capacity', () => {
    const rows = (from: number, n: number) => Float32Array.from({ length: n * 2 }, (_, i) => from * 2 + i);
    const recent = new RecentRows(3, 2);
    expect(recent.snapshot()).toEqual(new Float32Array(0));
    recent.push(rows(0, 2), 2);
    expect([...recent.snapshot()]).toEqual([0, 1, 2, 3]);
    recent.push(rows(2, 2), 2);
    // Rows 1, 2, 3 are held; the ring's order does not matter to a canary.
    expect([...recent.snapshot()].sort((a, b) => a - b)).toEqual([2, 3, 4, 5, 6, 7]);
    recent.push(rows(4, 5), 5);
    expect([...recent.snapshot()].sort((a, b) => a - b)).toEqual([12, 13, 14, 15, 16, 17]);
    expect(recent.size).toBe(3);
    const none = new RecentRows(0, 2);
    none.push(rows(0, 4), 4);
    expect(none.size).toBe(0);
  });
});
