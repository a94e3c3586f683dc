import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';

/** The trainer (scripts/train_model.py) on small data: its simulator, its CSV path, its determinism,
 * the format of every file it writes, and its argument errors. */

const root = path.resolve(__dirname, '..');
const work = mkdtempSync(path.join(tmpdir(), 'xgb-stream-trainer-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function train(args: string[]): SpawnSyncReturns<string> {
  return spawnSync('bash', [path.join(root, 'scripts/python.sh'), path.join(root, 'scripts/train_model.py'), ...args],
    { cwd: root, encoding: 'utf8', timeout: 60000 });
}

function trainOk(args: string[]): void {
  const run = train(args);
  if (run.status !== 0) throw new Error(`train_model.py ${args.join(' ')} exited ${run.status}:\n${run.stderr}`);
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1];
}

// Parsed JSON files: their shape is what these tests check.
type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any
const readJson = (file: string): Json => JSON.parse(readFileSync(file, 'utf8'));

function readF32(file: string): Float32Array {
  const bytes = readFileSync(file);
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

interface ReplayRecord { recordID: string; eventTimeMs: number; label: number; features: (number | null)[] }
const readReplay = (dir: string): ReplayRecord[] =>
  gunzipSync(readFileSync(path.join(dir, 'replay.ndjson.gz'))).toString('utf8').trim().split('\n')
    .map((line) => JSON.parse(line) as ReplayRecord);

const SIM_FEATURES = ['tx_amount', 'tx_during_weekend', 'tx_during_night', 'customer_nb_tx_1d',
  'customer_avg_amount_1d', 'customer_avg_amount_7d', 'customer_avg_amount_30d', 'terminal_risk_1d',
  'terminal_risk_7d', 'terminal_risk_30d'];
const CSV_DEFAULT_FEATURES = ['V17', 'V14', 'V12', 'V10', 'V16', 'V3', 'V7', 'V11', 'V4', 'Amount'];
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
// 500 customers and 1,000 terminals over 60 days: about 58,000 transactions, 8 held-out days.
const SMALL = ['--customers', '500', '--terminals', '1000', '--days', '60', '--n-estimators', '40',
  // 40 trees at the default 0.01 cannot lift a score from xgboost's estimated intercept (the base rate)
  // over 0.5, and a model card with no alerts would leave precision undefined.
  '--learning-rate', '0.3'];

describe('the trainer on simulated transactions', () => {
  const dir = path.join(work, 'sim-a');
  let card: Json;
  let index: Json;
  beforeAll(() => {
    trainOk([...SMALL, '--seed', '7', '--out', dir]);
    card = readJson(path.join(dir, 'model-card.json'));
    index = readJson(path.join(dir, 'test-vectors', 'index.json'));
  });

  describe('simulator', () => {
    it('compromises terminals and customers at the handbook rates per head (2 per 10,000 terminals, 3 per 5,000 customers a day)', () => {
      // 60 days x 0.2 terminals and x 0.3 customers a day, whole numbers by construction.
      expect(card.data.counts.compromisedTerminals).toBe(12);
      expect(card.data.counts.compromisedCustomers).toBe(18);
      expect(card.data.parameters).toMatchObject({ seed: 7, customers: 500, terminals: 1000, days: 60 });
    });

    it('makes fraud rare and every scenario happen, in their expected ranges', () => {
      const { transactions, frauds, genuine } = card.data.counts;
      // ~2 transactions a customer a day, less the times drawn outside the day.
      expect(transactions).toBeGreaterThan(50000);
      expect(transactions).toBeLessThan(66000);
      expect(frauds + genuine).toBe(transactions);
      expect(card.data.fraudRate).toBeCloseTo(frauds / transactions, 12);
      // The handbook's ~0.8 %, lower here while the 28-day terminal compromises build up.
      expect(card.data.fraudRate).toBeGreaterThan(0.003);
      expect(card.data.fraudRate).toBeLessThan(0.012);
      const s = card.data.scenarioCounts;
      expect(Object.keys(s).sort()).toEqual(['1', '2', '3']);
      expect(s['1'] + s['2'] + s['3']).toBe(frauds);
      expect(s['1'] / transactions).toBeGreaterThan(0.0001); // amounts above 220: ~0.06 %
      expect(s['1'] / transactions).toBeLessThan(0.0015);
      expect(s['2'] / transactions).toBeGreaterThan(0.001); // compromised terminals
      expect(s['2'] / transactions).toBeLessThan(0.008);
      expect(s['3'] / transactions).toBeGreaterThan(0.001); // compromised customers
      expect(s['3'] / transactions).toBeLessThan(0.004);
    });

    it('names exactly 10 features, the same in the card, the index and the booster', () => {
      expect(card.features.map((f: Json) => f.name)).toEqual(SIM_FEATURES);
      for (const f of card.features) expect(f.description.length).toBeGreaterThan(10);
      expect(index.featureNames).toEqual(SIM_FEATURES);
      const learner = readJson(path.join(dir, 'model.json')).learner;
      expect(learner.feature_names).toEqual(SIM_FEATURES);
      expect(learner.attributes.feature_names).toBe(SIM_FEATURES.join(','));
    });

    it('computes finite features: only the deliberate NaNs of the test vectors are missing', () => {
      const replay = readReplay(dir);
      expect(replay.filter((r) => r.features.length !== 10 || !r.features.every(Number.isFinite))).toEqual([]);
      const X = readF32(path.join(dir, 'test-vectors', 'features.f32'));
      expect(X.filter((v) => !Number.isNaN(v) && !Number.isFinite(v))).toHaveLength(0);
    });
  });

  describe('split', () => {
    it('holds out only transactions later than every training one, after a week-long gap', () => {
      const { train, test } = card.split;
      expect(card.split.burnInDays).toBe(30);
      expect(card.split.gapDays).toBe(7);
      expect(card.split.trainDays).toEqual([30, 45]);
      expect(card.split.testDays).toEqual([52, 60]);
      expect(train.lastEventTimeMs).toBeLessThan(test.firstEventTimeMs);
      expect(test.fromMs - train.toMs).toBe(7 * 86400000);
      expect(train.frauds).toBeGreaterThan(0);
      expect(test.frauds).toBeGreaterThan(0);
      expect(train.rows + test.rows).toBeLessThan(card.data.counts.transactions);
    });
  });

  describe('model files', () => {
    it('writes model.ubj and model.json, and no legacy binary model, which libxgboost 3.1+ cannot read', () => {
      expect(readFileSync(path.join(dir, 'model.ubj')).subarray(0, 1).toString()).toBe('{');
      expect(readJson(path.join(dir, 'model.json')).learner.gradient_booster.model.trees).toHaveLength(40);
      expect(existsSync(path.join(dir, 'model.bin'))).toBe(false);
    });

    it('stores threshold, feature names, version, data seed and xgboost version as booster attributes', () => {
      const attributes = readJson(path.join(dir, 'model.json')).learner.attributes;
      expect(Object.keys(attributes).sort())
        .toEqual(['data_seed', 'feature_names', 'model_version', 'threshold', 'xgboost_version']);
      expect(attributes.threshold).toBe('0.5');
      expect(attributes.data_seed).toBe('7');
      expect(attributes.model_version).toMatch(/^sim-s7-[0-9a-f]{12}$/);
      expect(attributes.model_version).toBe(card.modelVersion);
      expect(attributes.xgboost_version).toBe('3.4.1');
      expect(attributes.xgboost_version).toBe(card.xgboostVersion);
    });
  });

  describe('model card', () => {
    it('reports held-out metrics at the threshold, consistent with its confusion matrix', () => {
      const m = card.metrics;
      const { tp, fp, tn, fn } = m.confusionMatrix;
      expect(card.threshold).toBe(0.5);
      expect(m.threshold).toBe(0.5);
      expect(tp + fp + tn + fn).toBe(card.split.test.rows);
      expect(m.heldOutRows).toBe(card.split.test.rows);
      expect(tp + fn).toBe(card.split.test.frauds);
      expect(m.baseRate).toBeCloseTo((tp + fn) / m.heldOutRows, 12);
      expect(m.precision).toBeCloseTo(tp / (tp + fp), 12);
      expect(m.recall).toBeCloseTo(tp / (tp + fn), 12);
      expect(m.f1).toBeCloseTo((2 * m.precision * m.recall) / (m.precision + m.recall), 12);
      // Forty trees on two weeks of data: far from the default model, yet clearly better than chance.
      expect(m.rocAuc).toBeGreaterThan(0.6);
      expect(m.rocAuc).toBeLessThanOrEqual(1);
      expect(m.averagePrecision).toBeGreaterThan(5 * m.baseRate);
      expect(m.averagePrecision).toBeLessThanOrEqual(1);
    });

    it('records the training parameters and how the class imbalance is handled', () => {
      expect(card.training.params).toMatchObject({
        learning_rate: 0.3, n_estimators: 40, max_depth: 5, objective: 'binary:logistic',
        scale_pos_weight: 1, tree_method: 'hist', random_state: 7,
      });
      expect(card.training.imbalance).toMatch(/scale_pos_weight = 1/);
      expect(Object.keys(card.training.featureImportanceTotalGain)).toEqual(SIM_FEATURES);
    });
  });

  describe('test vectors', () => {
    it('hold at least 2,000 held-out rows, 5 % of them with missing values', () => {
      expect(index).toMatchObject({
        rows: 4000, numFeatures: 10, features: 'features.f32', probabilities: 'probabilities.f32',
        missingRows: 200, threshold: 0.5, modelVersion: card.modelVersion,
        contributions: { rows: 200, file: 'contributions-exact.f32', approxFile: 'contributions-approx.f32' },
      });
      const X = readF32(path.join(dir, 'test-vectors', 'features.f32'));
      expect(X.length).toBe(4000 * 10);
      let rowsWithNaN = 0;
      let allNaN = 0;
      for (let r = 0; r < 4000; r++) {
        const row = X.subarray(r * 10, r * 10 + 10);
        const missing = row.filter(Number.isNaN).length;
        if (missing > 0) rowsWithNaN++;
        if (missing === 10) allNaN++;
      }
      expect(rowsWithNaN).toBe(200);
      expect(allNaN).toBe(1);
    });

    it('are held-out transactions, with the float32 features the replay carries', () => {
      const X = readF32(path.join(dir, 'test-vectors', 'features.f32'));
      const replay = new Map(readReplay(dir).map((r) => [r.recordID, r]));
      expect(index.recordIDs).toHaveLength(4000);
      const misfits = (index.recordIDs as string[]).filter((id, r) => {
        const tx = replay.get(id);
        return tx === undefined || tx.label !== index.labels[r] || tx.features.some((f, j) => {
          const v = X[r * 10 + j];
          return !Number.isNaN(v) && Math.fround(f as number) !== v;
        });
      });
      expect(misfits).toEqual([]);
    });

    it('give probabilities in [0, 1] that the exact contributions add up to', () => {
      const p = readF32(path.join(dir, 'test-vectors', 'probabilities.f32'));
      expect(p.length).toBe(4000);
      expect(p.filter((v) => !(v >= 0 && v <= 1))).toHaveLength(0);
      for (const file of ['contributions-exact.f32', 'contributions-approx.f32']) {
        const c = readF32(path.join(dir, 'test-vectors', file));
        expect(c.length).toBe(200 * 11);
        for (let r = 0; r < 200; r++) {
          // 10 feature contributions and the bias sum to the margin, whose sigmoid is the probability.
          const margin = c.subarray(r * 11, r * 11 + 11).reduce((a, b) => a + b, 0);
          expect(1 / (1 + Math.exp(-margin))).toBeCloseTo(p[r], 4);
        }
      }
    });
  });

  describe('replay set', () => {
    it('holds every held-out transaction once, in event-time order, with 0/1 labels', () => {
      const replay = readReplay(dir);
      expect(card.replay).toMatchObject({ file: 'replay.ndjson.gz', complete: true });
      expect(replay).toHaveLength(card.split.test.rows);
      expect(card.replay.rows).toBe(card.split.test.rows);
      expect(new Set(replay.map((r) => r.recordID)).size).toBe(replay.length);
      const misfits = replay.filter((r, i) => !/^tx-\d{7}$/.test(r.recordID)
        || Object.keys(r).join() !== 'recordID,eventTimeMs,label,features'
        || !Number.isSafeInteger(r.eventTimeMs) || (i > 0 && r.eventTimeMs < replay[i - 1].eventTimeMs)
        || (r.label !== 0 && r.label !== 1));
      expect(misfits).toEqual([]);
      expect(replay.reduce((n, r) => n + r.label, 0)).toBe(card.split.test.frauds);
      expect(replay[0].eventTimeMs).toBeGreaterThanOrEqual(card.split.test.fromMs);
      expect(replay[replay.length - 1].eventTimeMs).toBeLessThan(card.split.test.toMs);
    });
  });

  it('draws the precision-recall curve, the ROC curve and the feature importance as PNGs', () => {
    for (const name of ['precision-recall', 'roc', 'feature-importance']) {
      const png = readFileSync(path.join(dir, 'plots', `${name}.png`));
      expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
      expect(png.length).toBeGreaterThan(5000);
    }
  });

  describe('determinism', () => {
    it('gives a byte-identical model.ubj for the same seed, and a different one for another seed', () => {
      trainOk([...SMALL, '--seed', '7', '--out', path.join(work, 'sim-b')]);
      trainOk([...SMALL, '--seed', '8', '--out', path.join(work, 'sim-c')]);
      const a = readFileSync(path.join(dir, 'model.ubj'));
      expect(readFileSync(path.join(work, 'sim-b', 'model.ubj')).equals(a)).toBe(true);
      expect(readFileSync(path.join(work, 'sim-c', 'model.ubj')).equals(a)).toBe(false);
      for (const file of ['test-vectors/features.f32', 'test-vectors/probabilities.f32', 'replay.ndjson.gz']) {
        expect(readFileSync(path.join(work, 'sim-b', file)).equals(readFileSync(path.join(dir, file)))).toBe(true);
      }
      expect(readJson(path.join(work, 'sim-b', 'model-card.json')).modelVersion).toBe(card.modelVersion);
      expect(readJson(path.join(work, 'sim-c', 'model-card.json')).modelVersion).toMatch(/^sim-s8-[0-9a-f]{12}$/);
    });
  });
});

describe('the default model (npm run train, models/default)', () => {
  // The jest global setup trains it when it is missing; the other suites use it as their fixture.
  const dir = path.join(root, 'models', 'default');
  let card: Json;
  beforeAll(() => {
    card = readJson(path.join(dir, 'model-card.json'));
  });

  it('comes from the default simulation (half the handbook population, 183 days) and training settings', () => {
    expect(card.data.parameters).toMatchObject({ seed: 42, customers: 2500, terminals: 5000, days: 183 });
    expect(card.training.params).toMatchObject({ learning_rate: 0.01, n_estimators: 1000, max_depth: 5,
      objective: 'binary:logistic' });
    expect(card.modelVersion).toMatch(/^sim-s42-[0-9a-f]{12}$/);
  });

  it('simulates the handbook fraud rate (~0.8 %) and scenario mix', () => {
    const n = card.data.counts.transactions;
    const s = card.data.scenarioCounts;
    expect(n).toBeGreaterThan(850000);
    expect(card.data.fraudRate).toBeGreaterThan(0.007);
    expect(card.data.fraudRate).toBeLessThan(0.0095);
    expect(s['1'] / n).toBeGreaterThan(0.0003);
    expect(s['1'] / n).toBeLessThan(0.0008);
    expect(s['2'] / n).toBeGreaterThan(0.0045);
    expect(s['2'] / n).toBeLessThan(0.006);
    expect(s['3'] / n).toBeGreaterThan(0.002);
    expect(s['3'] / n).toBeLessThan(0.003);
  });

  it('has the held-out figures the default seed gives with xgboost 3.4.1, to the last digit', () => {
    // The trainer is deterministic, so these are pinned: a change of data, features, parameters or
    // library shows here, with the README's figures to update alongside.
    const m = card.metrics;
    expect(card.xgboostVersion).toBe('3.4.1');
    expect(card.modelVersion).toBe('sim-s42-e7f9db0de4b8');
    expect(m.heldOutRows).toBe(185716);
    expect(m.confusionMatrix).toEqual({ tp: 1004, fp: 59, tn: 184009, fn: 644 });
    expect(m.rocAuc).toBeCloseTo(0.9116695538832102, 12);
    expect(m.averagePrecision).toBeCloseTo(0.7502969660116674, 12);
    expect(m.precision).toBeCloseTo(1004 / (1004 + 59), 12);
    expect(m.recall).toBeCloseTo(1004 / (1004 + 644), 12);
  });

  it('replays 50,000 held-out transactions, and says it is not all of them', () => {
    expect(card.replay).toMatchObject({ rows: 50000, complete: false, heldOutRows: card.split.test.rows });
    expect(readReplay(dir)).toHaveLength(50000);
  });
});

/** Mulberry32: a seeded generator, so the synthetic CSV is the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A small file of creditcard.csv's schema, quoted as Kaggle's is, in which frauds stand out on
 * V14 and V17 (as in the real data). Time strictly increases, so the split is exactly 70/30. */
function writeCreditCardCsv(file: string, rows: number): number {
  const random = prng(2013);
  const normal = (): number => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const header = ['Time', ...Array.from({ length: 28 }, (_, i) => `V${i + 1}`), 'Amount', 'Class'];
  const lines = [header.map((h) => `"${h}"`).join(',')];
  let frauds = 0;
  for (let i = 0; i < rows; i++) {
    const fraud = random() < 0.02 ? 1 : 0;
    frauds += fraud;
    const v = Array.from({ length: 28 }, () => normal());
    if (fraud) {
      v[13] -= 3; // V14
      v[16] -= 3; // V17
    }
    const amount = (random() * 200).toFixed(2);
    lines.push([String(i * 20), ...v.map((x) => x.toFixed(6)), amount, `"${fraud}"`].join(','));
  }
  writeFileSync(file, lines.join('\n') + '\n');
  return frauds;
}

describe('the trainer on creditcard.csv', () => {
  const csv = path.join(work, 'creditcard.csv');
  const dir = path.join(work, 'csv');
  let frauds = 0;
  let card: Json;
  beforeAll(() => {
    frauds = writeCreditCardCsv(csv, 8000);
    trainOk(['--csv', csv, '--n-estimators', '30', '--out', dir]);
    card = readJson(path.join(dir, 'model-card.json'));
  });

  it('learns from the documented default columns', () => {
    expect(card.features.map((f: Json) => f.name)).toEqual(CSV_DEFAULT_FEATURES);
    expect(card.data).toMatchObject({ source: 'csv', scenarioCounts: null,
      counts: { transactions: 8000, frauds, genuine: 8000 - frauds } });
    expect(card.data.parameters.featureChoice).toMatch(/^default: /);
    expect(card.modelVersion).toMatch(/^csv-s42-[0-9a-f]{12}$/);
    expect(readJson(path.join(dir, 'model.json')).learner.feature_names).toEqual(CSV_DEFAULT_FEATURES);
    expect(card.metrics.rocAuc).toBeGreaterThan(0.9);
  });

  it('holds out the last 30 % of the rows in time order', () => {
    expect(card.split.train.rows).toBe(5600);
    expect(card.split.test.rows).toBe(2400);
    const replay = readReplay(dir);
    expect(replay.map((r) => r.recordID))
      .toEqual(Array.from({ length: 2400 }, (_, i) => `tx-${String(5600 + i).padStart(7, '0')}`));
    // Time 0 is a nominal 2013-09-01T00:00:00Z; row i was written at Time 20 i seconds.
    expect(replay[0].eventTimeMs).toBe(Date.UTC(2013, 8, 1) + 5600 * 20 * 1000);
    const index = readJson(path.join(dir, 'test-vectors', 'index.json'));
    expect(index).toMatchObject({ rows: 2400, missingRows: 120, featureNames: CSV_DEFAULT_FEATURES });
    expect(statSync(path.join(dir, 'test-vectors', 'features.f32')).size).toBe(2400 * 10 * 4);
    expect(statSync(path.join(dir, 'test-vectors', 'probabilities.f32')).size).toBe(2400 * 4);
  });

  it('learns from the columns --features names', () => {
    const names = ['V1', 'V2', 'V3', 'V4', 'V5', 'V6', 'V7', 'V14', 'V17', 'Amount'];
    const out = path.join(work, 'csv-features');
    trainOk(['--csv', csv, '--features', names.join(','), '--n-estimators', '5', '--out', out]);
    expect(readJson(path.join(out, 'model.json')).learner.attributes.feature_names).toBe(names.join(','));
    expect(readJson(path.join(out, 'test-vectors', 'index.json')).featureNames).toEqual(names);
  });
});

describe('the trainer given bad arguments', () => {
  function expectUsageError(args: string[], message: string): void {
    const run = train(args);
    expect(run.status).toBe(2);
    expect(lastLine(run.stderr)).toBe(`train_model.py: error: ${message}`);
  }

  it('names a CSV that does not exist, and writes nothing', () => {
    const missing = path.join(work, 'no-such.csv');
    const out = path.join(work, 'never');
    expectUsageError(['--csv', missing, '--out', out], `--csv ${missing}: no such file`);
    expect(existsSync(out)).toBe(false);
  });

  it('names the columns a CSV lacks', () => {
    const file = path.join(work, 'partial.csv');
    const header = ['Time', ...Array.from({ length: 28 }, (_, i) => `V${i + 1}`).filter((c) => c !== 'V14'), 'Amount'];
    writeFileSync(file, header.join(',') + '\n' + header.map(() => '0').join(',') + '\n');
    expectUsageError(['--csv', file, '--out', path.join(work, 'never')], `--csv ${file}: missing columns V14, Class`);
  });

  it('names an --out that cannot be written', () => {
    const file = path.join(work, 'a-file');
    writeFileSync(file, '');
    const out = path.join(file, 'models');
    expectUsageError(['--out', out], `--out ${out}: cannot write there (Not a directory)`);
  });

  it('rejects an unknown flag', () => {
    expectUsageError(['--bogus'], 'unrecognized arguments: --bogus');
  });

  it('wants exactly 10 --features', () => {
    expectUsageError(['--csv', path.join(work, 'partial.csv'), '--features', 'V1,V2'],
      '--features needs exactly 10 column names, got 2: V1,V2');
  });

  it('says how many --days the split needs', () => {
    expectUsageError(['--days', '39'], '--days 39 is too short: the first 30 days warm up the features and 7 more '
      + 'separate training from the held-out days; use at least 40');
  });
});
