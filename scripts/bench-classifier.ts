/**
 * Microseconds per row of the Classifier, sync and async, for single rows and batches of 1 to 4,096
 * rows, beside the same libxgboost calls made by a C program (native/bench/bench_predict.c) on the
 * same model, rows, nthread and libxgboost. Run through scripts/bench-classifier.sh.
 *
 * Both sides score the same rows in the same order (the test vectors, cycled), one call at a time:
 * the async figures are latency (submit, wait, repeat). One extra row shows single-row throughput
 * with IN_FLIGHT predictAsync calls outstanding, which is how a stream processor uses the pool.
 * C and Node runs alternate, REPEATS times, and the tables show medians. The C program also times
 * every split of a batch into libxgboost calls (one call through a DMatrix or in place, one call per
 * row either way); the Node rows are compared with the C split the Classifier takes for that size
 * (lib/classifier.ts, rowsPerCall).
 *
 * Options: see HELP (npm run bench:classifier -- --help).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Classifier } from '../lib';
import { rowsPerCall } from '../lib/classifier';
import { isMainScript, numberFlag, numberListFlag, readFlags, UsageError } from './options';

const ROOT = path.resolve(__dirname, '..');

interface Options {
  model: string;
  vectors: string;
  nthread: number;
  seconds: number;
  repeats: number;
  batches: number[];
}

const HELP = `Usage: npm run bench:classifier -- [options]

  --model <path>       model to score (default models/default/model.ubj)
  --vectors <dir>      test vectors whose rows are scored (default: test-vectors beside the model)
  --nthread <n>        xgboost threads per prediction call, 0 for all cores (default 1)
  --seconds <s>        length of each measurement (default 0.25)
  --repeats <n>        C and Node runs alternate this many times; the table shows medians (default 5)
  --batches <list>     batch sizes, comma-separated (default 1,2,4,...,4096)`;

const FLAGS = {
  help: { type: 'boolean', short: 'h' },
  model: { type: 'string' },
  vectors: { type: 'string' },
  nthread: { type: 'string' },
  seconds: { type: 'string' },
  repeats: { type: 'string' },
  batches: { type: 'string' },
} as const;

/** The command line; 'help' for -h. Throws UsageError naming a bad flag. */
export function parseBenchClassifierOptions(argv: readonly string[]): Options | 'help' {
  const flags = readFlags(argv, FLAGS);
  if (flags.help) return 'help';
  const model = path.resolve(flags.model ?? path.join(ROOT, 'models', 'default', 'model.ubj'));
  return {
    model,
    vectors: path.resolve(flags.vectors ?? path.join(path.dirname(model), 'test-vectors')),
    // The Classifier's own bounds, so that a bad value stops here and not after the C run.
    nthread: numberFlag('--nthread', flags.nthread, 1, { min: 0, max: 1024, integer: true }),
    seconds: numberFlag('--seconds', flags.seconds, 0.25, { min: 0, aboveMin: true }),
    repeats: numberFlag('--repeats', flags.repeats, 5, { min: 1, integer: true }),
    batches: numberListFlag('--batches', flags.batches, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
      { min: 1, integer: true }),
  };
}

/** The scheme bench_predict.c uses: call i of `batch` rows starts at row (i·batch) mod (pool − batch + 1). */
class RowPool {
  readonly rows: Float32Array;
  readonly count: number;
  constructor(features: Float32Array, readonly width: number, minRows: number) {
    const fileRows = features.length / width;
    this.count = Math.max(fileRows, minRows);
    this.rows = new Float32Array(this.count * width);
    for (let r = 0; r < this.count; r++) {
      this.rows.set(features.subarray((r % fileRows) * width, (r % fileRows + 1) * width), r * width);
    }
  }
  batch(call: number, size: number): Float32Array {
    const start = (call * size) % (this.count - size + 1);
    return this.rows.subarray(start * this.width, (start + size) * this.width);
  }
}

type Kind = 'predict' | 'predictBatch' | 'predictAsync' | 'predictBatchAsync';

const IN_FLIGHT = 64;

/** Microseconds of wall-clock time per row with IN_FLIGHT single-row predictAsync calls outstanding. */
async function measureInFlight(classifier: Classifier, pool: RowPool, seconds: number): Promise<PerRow> {
  let next = 0;
  let done = 0;
  const start = process.hrtime.bigint();
  const cpuStart = cpuMicros();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  const lane = async (): Promise<void> => {
    while (process.hrtime.bigint() < deadline) {
      await classifier.predictAsync(pool.batch(next++, 1));
      done++;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  return { wall: Number(process.hrtime.bigint() - start) / 1e3 / done, cpu: (cpuMicros() - cpuStart) / done };
}

/** Wall-clock and process CPU microseconds per row. CPU time (all threads, as the C side measures it)
 * still shows the cost of a call when other processes compete for the cores; wall-clock does not. */
interface PerRow { wall: number; cpu: number }

const cpuMicros = (): number => { const u = process.cpuUsage(); return u.user + u.system; };

/** Microseconds per row of one API for one batch size, after a short warm-up. */
async function measure(classifier: Classifier, pool: RowPool, kind: Kind, size: number, seconds: number): Promise<PerRow> {
  let sink = 0;
  const call = async (i: number): Promise<void> => {
    const rows = pool.batch(i, size);
    switch (kind) {
      case 'predict': sink += classifier.predict(rows); break;
      case 'predictBatch': sink += classifier.predictBatch(rows, size)[0]; break;
      case 'predictAsync': sink += await classifier.predictAsync(rows); break;
      case 'predictBatchAsync': sink += (await classifier.predictBatchAsync(rows, size))[0]; break;
    }
  };
  const sync = kind === 'predict' || kind === 'predictBatch';
  for (let i = 0; i < 3; i++) await call(i);
  let calls = 0;
  const start = process.hrtime.bigint();
  const cpuStart = cpuMicros();
  let elapsed = 0;
  do {
    if (sync) {
      // No await between sync calls: the loop must measure the calls, not the microtask queue.
      for (let k = 0; k < 16; k++, calls++) {
        const rows = pool.batch(calls, size);
        sink += kind === 'predict' ? classifier.predict(rows) : classifier.predictBatch(rows, size)[0];
      }
    } else {
      for (let k = 0; k < 16; k++, calls++) await call(calls);
    }
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  } while (elapsed < seconds);
  const cpu = cpuMicros() - cpuStart;
  if (sink === 12345) process.stdout.write('');
  return { wall: (elapsed * 1e6) / (calls * size), cpu: cpu / (calls * size) };
}

/** The ways bench_predict splits a batch into calls, as it names them. */
const SPLITS = ['dmatrix', 'inplace', 'dmatrix-rows', 'inplace-rows'] as const;
type Split = typeof SPLITS[number];

/** The C split that matches the Classifier's for a batch of `size` rows. */
const classifierSplit = (size: number): Split => (size === 1 ? 'inplace' : rowsPerCall(size) === 1 ? 'inplace-rows' : 'inplace');

function runC(opts: Options, numFeatures: number): Map<string, PerRow> {
  const exe = path.join(ROOT, 'build', 'bench', 'bench_predict');
  if (!existsSync(exe)) throw new Error(`${exe} is missing: run scripts/bench-classifier.sh, which builds it`);
  const out = execFileSync(exe, [opts.model, path.join(opts.vectors, 'features.f32'), String(numFeatures),
    String(opts.nthread), String(opts.seconds), '1', ...opts.batches.map(String)],
  { encoding: 'utf8', env: { ...process.env, XGB_BENCH_SPLITS: '1' } });
  const result = new Map<string, PerRow>();
  for (const line of out.trim().split('\n')) {
    const { path: p, batch, usPerRow, cpuUsPerRow } = JSON.parse(line);
    result.set(`${p}:${batch}`, { wall: usPerRow, cpu: cpuUsPerRow });
  }
  // One row is the same call whichever way a batch is split.
  for (const p of ['dmatrix', 'inplace'] as const) {
    const one = result.get(`${p}:1`);
    if (one) result.set(`${p}-rows:1`, one);
  }
  return result;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main(): Promise<number> {
  let parsed: Options | 'help';
  try {
    parsed = parseBenchClassifierOptions(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench-classifier: ${err.message}\n`);
    return 2;
  }
  if (parsed === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const opts = parsed;
  const index = JSON.parse(readFileSync(path.join(opts.vectors, 'index.json'), 'utf8'));
  const bytes = readFileSync(path.join(opts.vectors, index.features));
  const features = new Float32Array(bytes.length / 4);
  new Uint8Array(features.buffer).set(bytes);

  const classifier = Classifier.load(opts.model, { nthread: opts.nthread });
  const pool = new RowPool(features, classifier.numFeatures, Math.max(...opts.batches));

  const c = new Map<string, PerRow[]>();
  const js = new Map<string, PerRow[]>();
  const add = <K>(m: Map<K, PerRow[]>, k: K, v: PerRow): void => { m.set(k, [...(m.get(k) ?? []), v]); };

  process.stderr.write(`bench: ${opts.repeats} repeats × ${opts.batches.length} batch sizes, ` +
    `${opts.seconds} s per measurement; C and Node alternate\n`);
  for (let r = 0; r < opts.repeats; r++) {
    for (const [key, us] of runC(opts, classifier.numFeatures)) add(c, key, us);
    for (const batch of opts.batches) {
      if (batch === 1) {
        add(js, 'predict:1', await measure(classifier, pool, 'predict', 1, opts.seconds));
        add(js, 'predictAsync:1', await measure(classifier, pool, 'predictAsync', 1, opts.seconds));
        add(js, 'inFlight:1', await measureInFlight(classifier, pool, opts.seconds));
      }
      add(js, `predictBatch:${batch}`, await measure(classifier, pool, 'predictBatch', batch, opts.seconds));
      add(js, `predictBatchAsync:${batch}`, await measure(classifier, pool, 'predictBatchAsync', batch, opts.seconds));
    }
    process.stderr.write(`bench: repeat ${r + 1}/${opts.repeats} done\n`);
  }
  classifier.close();

  const fmt = (x: number): string => x.toFixed(2);
  const ratio = (x: number, base: number): string => `${(x / base).toFixed(3)}`;
  const lines = [
    `model ${path.relative(ROOT, opts.model)}, ${classifier.numFeatures} features; libxgboost ${classifier.xgboostVersion}; ` +
      `nthread ${opts.nthread}; UV_THREADPOOL_SIZE ${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}; ` +
      `${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; ` +
      `Node ${process.version}; medians of ${opts.repeats}`,
  ];
  for (const clock of ['wall', 'cpu'] as const) {
    const m = (xs: PerRow[] | undefined): number => median((xs ?? []).map((x) => x[clock]));
    lines.push('', clock === 'wall'
      ? 'Wall-clock µs per row (latency: what a caller waits):'
      : 'CPU µs per row (process CPU time, all threads: robust to other load on the machine):');
    lines.push('', '| rows/call | Node API | C µs/row | Node sync µs/row | sync ÷ C | Node async µs/row | async ÷ C |',
      '|---:|---|---:|---:|---:|---:|---:|');
    for (const batch of opts.batches) {
      const base = m(c.get(`${classifierSplit(batch)}:${batch}`));
      if (batch === 1) {
        const s = m(js.get('predict:1'));
        const a = m(js.get('predictAsync:1'));
        lines.push(`| 1 | predict / predictAsync | ${fmt(base)} | ${fmt(s)} | ${ratio(s, base)} | ${fmt(a)} | ${ratio(a, base)} |`);
        const t = m(js.get('inFlight:1'));
        lines.push(`| 1 | predictAsync, ${IN_FLIGHT} in flight (throughput) | ${fmt(base)} | | | ${fmt(t)} | ${ratio(t, base)} |`);
      }
      const s = m(js.get(`predictBatch:${batch}`));
      const a = m(js.get(`predictBatchAsync:${batch}`));
      lines.push(`| ${batch} | predictBatch / predictBatchAsync | ${fmt(base)} | ${fmt(s)} | ${ratio(s, base)} | ${fmt(a)} | ${ratio(a, base)} |`);
    }
    lines.push('', `Splits of a batch into libxgboost calls, C, ${clock} µs per row (the Classifier's: *):`, '',
      '| rows/call | one call, DMatrix | one call, in place | row by row, DMatrix | row by row, in place |',
      '|---:|---:|---:|---:|---:|');
    for (const batch of opts.batches) {
      const cells = SPLITS.map((p) => `${fmt(m(c.get(`${p}:${batch}`)))}${p === classifierSplit(batch) ? ' *' : ''}`);
      lines.push(`| ${batch} | ${cells.join(' | ')} |`);
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

if (isMainScript(__filename)) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`bench-classifier: ${(err as Error).stack ?? err}\n`);
      process.exit(1);
    },
  );
}
