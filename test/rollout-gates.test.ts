/**
 * The README's live-rollout promises that need no broker: the `feature-names` and `threshold` gates
 * refuse a candidate with their exact reasons and count the rejection; an accepted reload brings its
 * own threshold, and the batches after it are routed by it; reloads never overlap. The real
 * ModelReloader, gate and BatchScorer, on the trainer's models.
 */
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Message } from 'node-rdkafka';
import { Classifier } from '../lib/classifier';
import { decodeScoredRecord, encodePredictRequest } from '../lib/codec';
import { parseConfig, type ProcessorConfig } from '../lib/config';
import { createLogger } from '../lib/log';
import { ProcessorMetrics } from '../lib/metrics';
import { ModelReloader } from '../lib/processor/model/reload';
import { BatchScorer } from '../lib/processor/score/score';
import { ServingModel } from '../lib/processor/model/serving-model';
import { CANDIDATE_DIR, MODEL_DIR, loadTestVectors, row, type TestVectors, loadReference } from './helpers/fixtures';

let vectors: TestVectors;
let v1: Classifier;
let v2: Classifier;
const work = mkdtempSync(path.join(os.tmpdir(), 'xgb-stream-gates-'));

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

/**
 * The default model's JSON with one piece of text replaced. Edited as text, not parsed and written
 * back: xgboost's parser tells 1.0 from 1, which a JSON round trip would lose.
 */
function defaultModelWith(from: string, to: string): Buffer {
  const text = readFileSync(path.join(MODEL_DIR, 'model.json'), 'utf8');
  expect(text.split(from)).toHaveLength(2);
  return Buffer.from(text.replace(from, to));
}

/** A reloader over a serving v1, its --model file in a directory of its own (no test vectors beside it). */
function setUp(flags: string[] = []) {
  const modelPath = path.join(mkdtempSync(path.join(work, 'live-')), 'model.json');
  cpSync(path.join(MODEL_DIR, 'model.json'), modelPath);
  const parsed = parseConfig(['--model', modelPath, ...flags], {});
  if (parsed.kind !== 'run') throw new Error(`expected a run configuration, got ${parsed.kind}`);
  const config: ProcessorConfig = parsed.config;
  const logs: Array<Record<string, unknown>> = [];
  const log = createLogger('info', (line) => { logs.push(JSON.parse(line)); });
  const metrics = new ProcessorMetrics();
  const serving = new ServingModel(v1, config.threshold, false);
  const scorer = new BatchScorer(serving, config, log, metrics, config.maxMessageBytes);
  const reloader = new ModelReloader(config, scorer, log, metrics);
  /** Puts a model in place as a deploy does: written beside the live file, then renamed over it. */
  const deploy = (model: Buffer): void => {
    writeFileSync(`${modelPath}.new`, model);
    renameSync(`${modelPath}.new`, modelPath);
  };
  const messages = (first: number, n: number): Message[] => Array.from({ length: n }, (_, i) => {
    const value = encodePredictRequest({ recordID: `r-${first + i}`, featuresVector: row(vectors, first + i) });
    return { topic: 'in', partition: 0, offset: first + i, key: Buffer.from(`r-${first + i}`), value, size: value.length,
      timestamp: 1_700_000_000_000 } as Message;
  });
  const messagesOf = (message: string) => logs.filter((l) => l.message === message);
  return { config, logs, metrics, scorer, reloader, deploy, messages, messagesOf, modelPath };
}

describe('the reload gate', () => {
  it("refuses a candidate whose feature names differ: gate feature-names, v1 keeps serving", async () => {
    const { reloader, deploy, metrics, scorer, messagesOf, modelPath } = setUp();
    deploy(defaultModelWith('"tx_during_night"', '"tx_at_night"'));
    const outcome = await reloader.reload('test');
    const reason = "feature 2 is 'tx_at_night' in the candidate, 'tx_during_night' in the serving model";
    expect(outcome).toEqual({ result: 'rejected', gate: 'feature-names', reason, modelVersion: version(v1) });
    expect(messagesOf('model reload rejected: the serving model stays')).toEqual([expect.objectContaining({
      level: 'warn', trigger: 'test', model: modelPath, gate: 'feature-names', reason, servingVersion: version(v1),
    })]);
    expect(metrics.modelReloadRejections.get({ gate: 'feature-names' })).toBe(1);
    expect(metrics.modelReloads.get({ result: 'rejected' })).toBe(1);
    expect(metrics.modelReloads.get({ result: 'success' })).toBe(0);
    expect(scorer.model.classifier).toBe(v1);
  });

  it("refuses a candidate whose threshold attribute is not a probability: gate threshold, v1 keeps serving", async () => {
    const { reloader, deploy, metrics, scorer, messagesOf } = setUp();
    deploy(defaultModelWith('"threshold":"0.5"', '"threshold":"high"'));
    const outcome = await reloader.reload('test');
    const reason = "the model's threshold attribute 'high' is not a number from 0 to 1; pass --threshold";
    expect(outcome).toEqual({ result: 'rejected', gate: 'threshold', reason, modelVersion: version(v1) });
    expect(messagesOf('model reload rejected: the serving model stays')).toEqual([
      expect.objectContaining({ level: 'warn', gate: 'threshold', reason })]);
    expect(metrics.modelReloadRejections.get({ gate: 'threshold' })).toBe(1);
    expect(metrics.modelReloadRejections.get({ gate: 'feature-names' })).toBe(0);
    expect(scorer.model.classifier).toBe(v1);
  });

  it('lets the same candidate through when --threshold is given: the attribute is not read', async () => {
    const { reloader, deploy, scorer } = setUp(['--threshold', '0.3']);
    deploy(defaultModelWith('"threshold":"0.5"', '"threshold":"high"'));
    expect(await reloader.reload('test')).toMatchObject({ result: 'success', modelVersion: version(v1) });
    expect(scorer.model.classifier).not.toBe(v1);
    expect(scorer.model.threshold).toBe(0.3);
  });
});

describe('an accepted reload', () => {
  it("brings the candidate's threshold: the batches after it are routed by 0.05, those before by 0.5", async () => {
    const { reloader, deploy, scorer, messages, messagesOf } = setUp();
    const n = 400;
    const before = await scorer.score(messages(0, n));
    deploy(defaultModelWith('"threshold":"0.5"', '"threshold":"0.05"'));
    expect(await reloader.reload('test')).toMatchObject({ result: 'success', modelVersion: version(v1), previousVersion: version(v1) });
    expect(messagesOf('model reloaded: the new version serves from the next batch'))
      .toEqual([expect.objectContaining({ threshold: 0.05 })]);
    const after = await scorer.score(messages(0, n));

    /** Checks each output's score and route against `threshold`; how many scores fall between the two thresholds. */
    const routedAt = (outputs: typeof before, threshold: number): number => {
      let between = 0;
      outputs.forEach((o, i) => {
        const score = v1.predict(row(vectors, i));
        const record = decodeScoredRecord(o.value!);
        expect(record.score).toBe(score);
        expect(record.suspicious).toBe(score >= threshold);
        expect(o.topic).toBe(score >= threshold ? 'suspicious-events' : 'regular-events');
        if (score >= 0.05 && score < 0.5) between++;
      });
      return between;
    };
    expect(before).toHaveLength(n);
    expect(after).toHaveLength(n);
    // Records scored between 0.05 and 0.5 are the ones the two thresholds route apart.
    expect(routedAt(before, 0.5)).toBeGreaterThan(0);
    expect(routedAt(after, 0.05)).toBeGreaterThan(0);
  });
});

describe('reloads', () => {
  it('never overlap: two requests during a reload share one run after it, which reads the file then', async () => {
    const { reloader, deploy, metrics, scorer, logs, messagesOf } = setUp();
    deploy(readFileSync(path.join(CANDIDATE_DIR, 'model.json')));
    // The first run reads the file as it starts, synchronously: the next deploy is not its business.
    const first = reloader.reload('first');
    deploy(defaultModelWith('"threshold":"0.5"', '"threshold":"0.05"'));
    const second = reloader.reload('second');
    const third = reloader.reload('third');
    expect(messagesOf('reloading the model')).toHaveLength(1);

    expect(await first).toMatchObject({ result: 'success', modelVersion: version(v2), previousVersion: version(v1) });
    const [a, b] = await Promise.all([second, third]);
    expect(a).toEqual(b);
    expect(a).toMatchObject({ result: 'success', modelVersion: version(v1), previousVersion: version(v2) });
    // Two runs, the second begun after the first had swapped its model in: it found v2 serving.
    expect(messagesOf('reloading the model')).toEqual([
      expect.objectContaining({ trigger: 'first', servingVersion: version(v1) }),
      expect.objectContaining({ trigger: 'second', servingVersion: version(v2) }),
    ]);
    // In the log: each run ends before the next begins.
    expect(logs.filter((l) => l.message === 'reloading the model' || l.message === 'model reloaded: the new version serves from the next batch')
      .map((l) => `${l.trigger}: ${l.message}`)).toEqual([
      'first: reloading the model', 'first: model reloaded: the new version serves from the next batch',
      'second: reloading the model', 'second: model reloaded: the new version serves from the next batch',
    ]);
    expect(metrics.modelReloads.get({ result: 'success' })).toBe(2);
    expect(scorer.model.version).toBe(version(v1));
    expect(scorer.model.threshold).toBe(0.05);
  });
});
