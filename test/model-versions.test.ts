/**
 * Models from every xgboost release a data-science team may train with, scored by the linked
 * libxgboost: the version matrix (models/matrix, built by scripts/matrix/build.sh in the global setup,
 * each release in its own pinned venv), and the models the Classifier must refuse rather than score
 * wrongly: a newer release's, the legacy binary format, and objectives that give no probability.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  Classifier, LegacyBinaryModelError, ModelLoadError, ModelVersionError, UnsupportedObjectiveError,
} from '../lib';
import { modelFormat, savedByVersion } from '../lib/model-file';
import { readF32, worstDifference } from './helpers/test-vectors';

const ROOT = path.resolve(__dirname, '..');
const MATRIX = path.join(ROOT, 'models', 'matrix');
const RELEASES = ['1.7.6', '2.1.4', '3.0.5', '3.2.0', '3.3.0', '3.4.1'];
/** The pinned release (the one place it is written), which the addon links and the trainer runs. */
const LIBXGBOOST: string = JSON.parse(readFileSync(path.join(ROOT, 'scripts', 'xgboost-version.json'), 'utf8')).version;
const PINNED_PARTS = LIBXGBOOST.split('.').map(Number);
/** Exact: the linked libxgboost reads every release's model to the same float32 as its own Python. */
const TOLERANCE = 0;

let scratch: string;
beforeAll(() => { scratch = mkdtempSync(path.join(tmpdir(), 'xgb-stream-versions-')); });
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The rows and the probabilities that release's own Python gave for them. */
function expected(release: string): { rows: Float32Array; probabilities: Float32Array } {
  return {
    rows: readF32(path.join(MATRIX, release, 'rows.f32')),
    probabilities: readF32(path.join(MATRIX, release, 'probabilities.f32')),
  };
}

function worstAgainstPython(classifier: Classifier, release: string): number {
  const { rows, probabilities } = expected(release);
  return worstDifference(classifier.predictBatch(rows, probabilities.length), probabilities);
}

/** The pinned release's model JSON text with its version field rewritten (or removed, for null).
 * JSON.parse would not do: xgboost's parser tells 1.0 from 1, and a round trip through JavaScript
 * loses that. */
function withVersion(version: readonly number[] | null): string {
  const text = readFileSync(path.join(MATRIX, LIBXGBOOST, 'model.json'), 'utf8');
  const field = `,"version":[${PINNED_PARTS.join(',')}]}`;
  expect(text.endsWith(field)).toBe(true);
  return text.slice(0, -field.length) + (version ? `,"version":[${version.join(',')}]}` : '}');
}

function loadError(model: string | Buffer): Error {
  try {
    Classifier.load(model).close();
  } catch (err) {
    return err as Error;
  }
  throw new Error('the model loaded');
}

describe.each(RELEASES)('a model saved by Python xgboost %s', (release) => {
  it.each(['model.json', 'model.ubj'])('%s scores exactly as that release did (worst difference 0)', (file) => {
    const info = JSON.parse(readFileSync(path.join(MATRIX, release, 'info.json'), 'utf8'));
    expect(info.xgboostVersion).toBe(release);
    const classifier = Classifier.load(path.join(MATRIX, release, file), { nthread: 1 });
    const worst = worstAgainstPython(classifier, release);
    process.stdout.write(`  xgboost ${release} ${file}: worst |difference| ${worst.toExponential(3)}\n`);
    expect(worst).toBeLessThanOrEqual(TOLERANCE);
    expect(classifier.modelInfo).toEqual({
      format: file.endsWith('.json') ? 'json' : 'ubj',
      savedByXgboost: release,
      libxgboost: LIBXGBOOST,
      objective: 'binary:logistic',
    });
    classifier.close();
  });

  it('scores the same through every Classifier path: predict, predictAsync, predictBatch, predictBatchAsync', async () => {
    const { rows, probabilities } = expected(release);
    const classifier = Classifier.load(path.join(MATRIX, release, 'model.ubj'), { nthread: 1 });
    const n = classifier.numFeatures;
    const count = probabilities.length;
    const one = Float32Array.from({ length: count }, (_, r) => classifier.predict(rows.subarray(r * n, (r + 1) * n)));
    const oneAsync = Float32Array.from(await Promise.all(
      Array.from({ length: count }, (_, r) => classifier.predictAsync(rows.subarray(r * n, (r + 1) * n)))));
    const batch = classifier.predictBatch(rows, count);
    const batchAsync = await classifier.predictBatchAsync(rows, count);
    // Small batches take another split into libxgboost calls (row by row): the same scores.
    const small = new Float32Array(count);
    for (let first = 0; first < count; first += 3) {
      const size = Math.min(3, count - first);
      small.set(await classifier.predictBatchAsync(rows.subarray(first * n, (first + size) * n), size), first);
    }
    // worstDifference, not toEqual: the addon's Float32Arrays come from another realm than jest's.
    for (const scores of [one, oneAsync, batchAsync, small]) expect(worstDifference(scores, batch)).toBe(0);
    expect(batch).toHaveLength(count);
    expect(worstDifference(batch, probabilities)).toBeLessThanOrEqual(TOLERANCE);
    classifier.close();
  });
});

describe('a model from a newer xgboost than the linked libxgboost', () => {
  const message = (file: string) => `Cannot load XGBoost model from ${file}: it was saved by xgboost 9.9.0, ` +
    `newer than the libxgboost ${LIBXGBOOST} that would score it, which may read it wrongly. Save it with xgboost ` +
    `${LIBXGBOOST} or older, or build xgb-stream against a libxgboost ≥ 9.9.0 (XGBOOST_ROOT)`;

  it('is the pinned 3.4.1 that is linked', () => {
    expect(LIBXGBOOST).toBe('3.4.1');
    const classifier = Classifier.load(path.join(MATRIX, '3.4.1', 'model.ubj'));
    expect(classifier.xgboostVersion).toBe('3.4.1');
    classifier.close();
  });

  it('is refused as JSON, naming both versions', () => {
    const file = path.join(scratch, 'future.json');
    writeFileSync(file, withVersion([9, 9, 0]));
    const err = loadError(file);
    expect(err).toBeInstanceOf(ModelVersionError);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect(err.message).toBe(message(file));
    expect(err).toMatchObject({ code: 'MODEL_TOO_NEW', modelVersion: '9.9.0', libraryVersion: LIBXGBOOST, source: file });
  });

  it('is refused as UBJSON, from a file and from a Buffer', () => {
    const bytes = Buffer.from(readFileSync(path.join(MATRIX, LIBXGBOOST, 'model.ubj')));
    // The version is the last field: "version" [ # L 3 i <major> i <minor> i <patch> ] closes the document.
    const tail = Buffer.from('version[#L\0\0\0\0\0\0\0\x03' +
      PINNED_PARTS.map((n) => `i${String.fromCharCode(n)}`).join('') + '}', 'latin1');
    expect(bytes.subarray(bytes.length - tail.length).equals(tail)).toBe(true);
    bytes[bytes.length - 6] = 9;
    bytes[bytes.length - 4] = 9;
    bytes[bytes.length - 2] = 0;
    const file = path.join(scratch, 'future.ubj');
    writeFileSync(file, bytes);
    expect(loadError(file).message).toBe(message(file));
    const fromBuffer = loadError(bytes);
    expect(fromBuffer).toBeInstanceOf(ModelVersionError);
    expect(fromBuffer.message).toBe(message(`a ${bytes.length}-byte buffer`));
  });

  it('loads when it is older or the same release, patch levels compared', () => {
    for (const [version, loads] of [[[3, 3, 9], true], [[3, 4, 0], true], [[3, 4, 1], true], [[3, 4, 2], false],
      [[3, 5, 0], false], [[3, 10, 0], false], [[4, 0, 0], false]] as const) {
      const file = path.join(scratch, 'versioned.json');
      writeFileSync(file, withVersion(version));
      if (loads) {
        const classifier = Classifier.load(file);
        expect(classifier.modelInfo.savedByXgboost).toBe(version.join('.'));
        classifier.close();
      } else {
        expect(loadError(file)).toBeInstanceOf(ModelVersionError);
      }
    }
  });

  it('is refused when the version field is missing, since its release is then unknown', () => {
    const file = path.join(scratch, 'unversioned.json');
    writeFileSync(file, withVersion(null));
    const err = loadError(file);
    expect(err).toMatchObject({ code: 'MODEL_WITHOUT_VERSION' });
    expect(err.message).toBe(`Cannot load XGBoost model from ${file}: it has no readable version field, so the ` +
      'xgboost release that saved it is unknown; save it again with xgboost 1.0 or later');
  });
});

describe('a legacy binary model', () => {
  const message = (source: string) => `Cannot load XGBoost model from ${source}: it is in xgboost's legacy ` +
    `binary format, which libxgboost ${LIBXGBOOST} cannot read (3.1 dropped it). Convert it once to UBJSON: ` +
    "'npm run convert-model -- MODEL.bin MODEL.ubj'";

  it.each(['1.7.6', '2.1.4', '3.0.5'])('saved by xgboost %s is refused with how to convert it', (release) => {
    const file = path.join(MATRIX, release, 'model.bin');
    const err = loadError(file);
    expect(err).toBeInstanceOf(LegacyBinaryModelError);
    expect(err).toMatchObject({ code: 'LEGACY_BINARY_MODEL' });
    expect(err.message).toBe(message(file));
    const bytes = readFileSync(file);
    expect(loadError(bytes).message).toBe(message(`a ${bytes.length}-byte buffer`));
  });

  it('converts with npm run convert-model and then scores as the release that saved it', () => {
    const source = path.join(MATRIX, '1.7.6', 'model.bin');
    const target = path.join(scratch, 'converted.ubj');
    const out = execFileSync('bash', [path.join(ROOT, 'scripts/convert-model.sh'), source, target], { encoding: 'utf8' });
    expect(out).toBe(`convert-model: wrote ${target} (UBJSON, 200 trees, 10 features) from ${source}, with xgboost 3.0.5\n`);
    const classifier = Classifier.load(target);
    expect(classifier.modelInfo.format).toBe('ubj');
    expect(classifier.modelInfo.savedByXgboost).toBe('3.0.5');
    const worst = worstAgainstPython(classifier, '1.7.6');
    process.stdout.write(`  legacy binary from 1.7.6, converted: worst |difference| ${worst.toExponential(3)}\n`);
    expect(worst).toBeLessThanOrEqual(TOLERANCE);
    classifier.close();
  });

  it('the converter names what is wrong and exits 2', () => {
    const run = (...args: string[]) => spawnSync('bash', [path.join(ROOT, 'scripts/convert-model.sh'), ...args],
      { encoding: 'utf8' });
    const missing = run(path.join(scratch, 'nope.bin'), path.join(scratch, 'out.ubj'));
    expect(missing.status).toBe(2);
    expect(missing.stderr).toBe(`convert-model: cannot read '${path.join(scratch, 'nope.bin')}': no such file\n`);
    const wrongExt = run(path.join(MATRIX, '1.7.6', 'model.bin'), path.join(scratch, 'out.bin'));
    expect(wrongExt.status).toBe(2);
    expect(wrongExt.stderr).toBe(`convert-model: '${path.join(scratch, 'out.bin')}' must end in .ubj or .json, ` +
      'the formats current xgboost releases read\n');
    const usage = run();
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/^convert-model: usage: npm run convert-model -- IN OUT/);
  });
});

describe('a model whose output is not the probability of the positive class', () => {
  it.each(['multi:softmax', 'reg:squarederror', 'binary:logitraw', 'rank:pairwise'])('%s is refused, naming the objective', (objective) => {
    const file = path.join(MATRIX, LIBXGBOOST, 'objectives', `${objective.replace(':', '-')}.json`);
    const err = loadError(file);
    expect(err).toBeInstanceOf(UnsupportedObjectiveError);
    expect(err).toMatchObject({ code: 'UNSUPPORTED_OBJECTIVE', objective });
    expect(err.message).toBe(`Cannot load XGBoost model from ${file}: its objective is ${objective}, which does ` +
      'not give a probability of the positive class; the Classifier scores binary:logistic and reg:logistic models only');
  });
});

describe('reading the model file before libxgboost does', () => {
  it('sniffs the formats as xgboost does', () => {
    expect(modelFormat(readFileSync(path.join(MATRIX, LIBXGBOOST, 'model.json')))).toBe('json');
    expect(modelFormat(Buffer.from(' \n{ "learner": {} }'))).toBe('json');
    expect(modelFormat(readFileSync(path.join(MATRIX, LIBXGBOOST, 'model.ubj')))).toBe('ubj');
    expect(modelFormat(readFileSync(path.join(MATRIX, '1.7.6', 'model.bin')))).toBe('legacy-binary');
    // Without its "binf" tag, as older writers left it, the layout still identifies it.
    expect(modelFormat(readFileSync(path.join(MATRIX, '1.7.6', 'model.bin')).subarray(4))).toBe('legacy-binary');
    expect(modelFormat(Buffer.from('this is not an xgboost model'))).toBe('unknown');
    expect(modelFormat(Buffer.alloc(0))).toBe('unknown');
  });

  it('finds the version of every release in both formats, skipping typed arrays whole', () => {
    for (const release of RELEASES) {
      expect(savedByVersion(readFileSync(path.join(MATRIX, release, 'model.json')), 'json')).toBe(release);
      expect(savedByVersion(readFileSync(path.join(MATRIX, release, 'model.ubj')), 'ubj')).toBe(release);
    }
    // A typed, counted top-level object whose values are arrays.
    const doc = Buffer.from('{$[#i\x02i\x01a$d#i\x02\0\0\0\0\0\0\0\0i\x07version$U#i\x03\x01\x02\x03', 'latin1');
    expect(savedByVersion(doc, 'ubj')).toBe('1.2.3');
    // Counted containers have no closing marker; the top-level object here is closed by '}'.
    const plain = Buffer.from('{i\x01a[$d#i\x02\0\0\0\0\0\0\0\0i\x01bSi\x02hii\x07version[i\x01U\x02I\0\x03]}', 'latin1');
    expect(savedByVersion(plain, 'ubj')).toBe('1.2.3');
    expect(() => savedByVersion(plain.subarray(0, 20), 'ubj')).toThrow('UBJSON model is truncated');
  });
});
